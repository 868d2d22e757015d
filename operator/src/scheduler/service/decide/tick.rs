//! Decisions that come with time and the subscription rather than with an
//! offer or a status: the reconcile after subscribing, pods LOST past the
//! permanent-failure timeout, step backoffs ending, and whether offers are
//! suppressed or revived.

use super::{Decisions, OfferCall};
use crate::resources::TaskStatus;
use crate::scheduler::service::commands::replace_pod;
use crate::scheduler::service::state::SchedulerState;
use crate::scheduler::spec::ServiceSpec;

/// The session's offer flow: whether offers are suppressed now, and
/// whether something happened that wants them revived at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfferFlow {
    pub suppressed: bool,
    pub want_revive: bool,
}

impl OfferFlow {
    /// A task that became ready or ended may free the next step: revive,
    /// so offers declined while waiting come back now rather than when
    /// their filters expire.
    pub fn on_status(&mut self, status: &TaskStatus) {
        self.want_revive |= status.ready == Some(true) || status.state.is_terminal();
    }
}

/// Subscribed as `framework_id`: recorded, and every task we think is alive
/// asked for (one the master does not know, an accept lost in a crash,
/// comes back LOST and its step is retried). A new subscription starts
/// unsuppressed.
pub fn on_subscribed(st: &mut SchedulerState, framework_id: &str, flow: &mut OfferFlow) -> Decisions {
    st.framework_id = Some(framework_id.to_string());
    flow.suppressed = false;
    Decisions { persist: true, reconcile: st.unended_tasks(), ..Default::default() }
}

/// Pods whose task has been LOST for `permanent_failure_ms` or longer.
pub fn expired_lost_pods(st: &SchedulerState, now: u64, permanent_failure_ms: u64) -> Vec<String> {
    st.pods
        .values()
        .filter(|p| p.lost_since_ms.is_some_and(|t| now.saturating_sub(t) >= permanent_failure_ms))
        .map(|p| p.name.clone())
        .collect()
}

/// Replaces every pod LOST past the timeout (placed anew, its old tasks
/// killed); `replace` lists them.
pub fn replace_expired(st: &mut SchedulerState, spec: &ServiceSpec, now: u64, permanent_failure_ms: u64) -> Decisions {
    let mut out = Decisions::default();
    for pod in expired_lost_pods(st, now, permanent_failure_ms) {
        tracing::warn!(pod = %pod, "task LOST past the permanent-failure timeout: replacing the pod");
        if let Ok((_, kills)) = replace_pod(st, spec, &pod) {
            out.kills.extend(kills);
            out.persist = true;
            out.replace.push(pod);
        }
    }
    out
}

/// A step whose backoff ended becomes a candidate again; then offers are
/// revived when there is work and they are suppressed (or a revive is
/// wanted), and suppressed when there is none.
pub fn on_tick(st: &mut SchedulerState, now: u64, flow: &mut OfferFlow) -> Decisions {
    let mut out = Decisions::default();
    let mut moved = 0;
    for p in st.plans.values_mut() {
        moved += p.tick(now);
    }
    // A step whose backoff just ended wants offers at once; those declined
    // while it waited still carry their filters.
    flow.want_revive |= moved > 0;
    if st.framework_id.is_none() {
        return out;
    }
    let work = st.has_work();
    if work && (flow.suppressed || flow.want_revive) {
        out.offer_call = Some(OfferCall::Revive);
        flow.suppressed = false;
        flow.want_revive = false;
    } else if !work && !flow.suppressed {
        out.offer_call = Some(OfferCall::Suppress);
        flow.suppressed = true;
    }
    out
}
