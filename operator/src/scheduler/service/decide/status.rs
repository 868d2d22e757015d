//! Status decisions: what a task status changes. The task record takes the
//! new state (a late update never brings an ended task back); a decommission
//! hook's end says whether its pod may go (or when it retries); a LOST task
//! starts its pod's permanent-failure clock; the steps of every plan that
//! launched the task advance or back off; a RUNNING-goal task that ended
//! unasked gets a recovery step (its essential siblings killed so the pod
//! comes back whole); a stale copy of a task is killed; the status is
//! acknowledged.

use super::Decisions;
use crate::protocol::Acknowledge;
use crate::resources::{TaskState, TaskStatus};
use crate::scheduler::plan::{PlanKind, StepState};
use crate::scheduler::service::plans::ensure_recovery_step;
use crate::scheduler::service::state::{pod_type_of, SchedulerState, TaskRecord};
use crate::scheduler::spec::{Goal, ServiceSpec, TaskSpec};

/// A decommission hook's backoff after `failures` failed runs, in ms.
pub fn hook_backoff_ms(failures: u32) -> u64 {
    (1000u64 << failures.min(6)).min(60_000)
}

/// Decides what `status` changes: see the module doc.
pub fn on_status(st: &mut SchedulerState, spec: &ServiceSpec, status: &TaskStatus, now: u64) -> Decisions {
    let mut out = Decisions { persist: true, ..Default::default() };
    let stale = match st.tasks.get(&status.task_id) {
        None => true,
        Some(t) => {
            let pod = st.pods.get(&t.pod);
            pod.and_then(|p| p.tasks.get(&t.task)) != Some(&t.id)
                && pod.and_then(|p| p.hook.as_ref()).map(|h| &h.task_id) != Some(&t.id)
        }
    };
    on_hook_end(st, status, now);
    if stale && !status.state.is_terminal() {
        // A task of ours that is not its pod's current one (an agent came
        // back after its pod was replaced): a pod is never live on two
        // agents at once.
        tracing::warn!(task = %status.task_id, "killing a task that is no longer its pod's");
        out.kills.push(status.task_id.clone());
    }
    if let Some(t) = st.tasks.get(&status.task_id) {
        if let Some(p) = st.pods.get_mut(&t.pod) {
            if p.tasks.get(&t.task) == Some(&t.id) {
                p.lost_since_ms = match status.state {
                    TaskState::Lost => p.lost_since_ms.or(Some(now)),
                    _ => None,
                };
            }
        }
    }
    // A late update (e.g. a readiness result sent just before the task
    // died) never brings an ended task back.
    let late = |t: &TaskRecord| t.is_terminal() && !status.state.is_terminal();
    if let Some(t) = st.tasks.get_mut(&status.task_id).filter(|t| !late(t)) {
        let was_terminal = t.is_terminal();
        t.state = Some(status.state);
        t.message = status.message.clone();
        if let Some(r) = status.ready {
            t.ready = r;
        }
        // An ended task serves nothing, whatever it last reported.
        if status.state.is_terminal() {
            t.ready = false;
        }
        let t = t.clone();
        let current = st.pods.get(&t.pod).and_then(|p| p.tasks.get(&t.task)) == Some(&t.id);
        if current && !was_terminal {
            on_current_task(st, spec, &t, status.state, now, &mut out);
        }
        for p in st.plans.values_mut() {
            p.refresh();
        }
    }
    if !status.uuid.is_empty() && !status.agent_id.is_empty() {
        out.acknowledge = Some(Acknowledge {
            agent_id: status.agent_id.clone(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone(),
        });
    }
    out
}

/// A decommission hook's end decides whether its pod may go: done on
/// FINISHED, else a failure counted and its retry delayed.
fn on_hook_end(st: &mut SchedulerState, status: &TaskStatus, now: u64) {
    let Some(t) = st.tasks.get(&status.task_id) else { return };
    let Some(run) = st.pods.get_mut(&t.pod).and_then(|p| p.hook.as_mut()) else { return };
    if run.task_id != t.id || run.done || !status.state.is_terminal() {
        return;
    }
    if status.state == TaskState::Finished {
        run.done = true;
        tracing::info!(pod = %t.pod, "the decommission hook succeeded");
    } else if !t.is_terminal() {
        run.failures += 1;
        run.retry_at_ms = now + hook_backoff_ms(run.failures);
        run.message = format!("{}: {}", status.state, status.message);
        tracing::warn!(pod = %t.pod, failures = run.failures, message = %status.message, "the decommission hook failed");
    }
}

/// A status of a pod's current task that had not ended: its steps advance,
/// and an unasked end of a RUNNING-goal task is recovered.
fn on_current_task(
    st: &mut SchedulerState,
    spec: &ServiceSpec,
    t: &TaskRecord,
    state: TaskState,
    now: u64,
    out: &mut Decisions,
) {
    let spec_task: Option<&TaskSpec> = spec.pod(&pod_type_of(&t.pod)).and_then(|p| p.task(&t.task));
    let paused = st.pods.get(&t.pod).is_some_and(|p| p.paused);
    let has_readiness = !paused && spec_task.is_some_and(|s| s.readiness_check.is_some());
    let goal = spec_task.map(|s| s.goal).unwrap_or(Goal::Running);
    let on_purpose = state.is_terminal() && st.stopping.contains(&t.pod);
    for plan in st.plans.values_mut() {
        let recovery = plan.kind() == PlanKind::Recovery;
        if on_purpose && recovery {
            continue;
        }
        let Some(r) = plan.step_for_task(&t.pod, &t.task) else { continue };
        let Ok(step) = plan.get(r) else { continue };
        let in_flight = matches!(step.state, StepState::Starting | StepState::Started);
        let complete = step.state == StepState::Complete;
        match state {
            TaskState::Running if in_flight => {
                let _ = plan.on_task_running(r, &t.task);
                if !has_readiness || t.ready {
                    let _ = plan.on_task_ready(r, &t.task);
                }
            }
            TaskState::Finished if goal != Goal::Running && in_flight => {
                let _ = plan.on_task_finished(r, &t.task);
            }
            // A failure while launching backs the step off; a failure after
            // COMPLETE is the recovery plan's.
            s if s.is_terminal() && (in_flight || (complete && recovery)) => {
                let _ = plan.on_task_failed(r, now);
            }
            _ => {}
        }
    }
    // A RUNNING-goal task that ended gets a recovery step, unless the
    // scheduler stopped it on purpose.
    if on_purpose {
        st.stopping.remove(&t.pod);
    }
    if !state.is_terminal() || goal != Goal::Running || on_purpose {
        return;
    }
    // Unless another plan is working on the pod (and has just backed its
    // step off), recovery relaunches it.
    let handled_elsewhere = st.plans.values().filter(|p| p.kind() != PlanKind::Recovery).any(|p| {
        p.step_for_task(&t.pod, &t.task).and_then(|r| p.get(r).ok()).is_some_and(|s| {
            matches!(s.state, StepState::Prepared | StepState::Starting | StepState::Started | StepState::Delayed)
        })
    });
    if handled_elsewhere {
        return;
    }
    // An essential task brings its pod back whole: its other tasks stop
    // too. A non-essential one comes back alone.
    if spec_task.is_none_or(|s| s.essential) {
        out.kills.extend(st.live_tasks(&t.pod));
    }
    ensure_recovery_step(st, &t.pod, spec);
    if let Some(p) = st.plans.get_mut(PlanKind::Recovery.as_str()) {
        if let Ok(r) = p.step_ref("recover", &t.pod) {
            let s = p.get(r).map(|s| s.state).unwrap_or(StepState::Pending);
            if matches!(s, StepState::Complete | StepState::Starting | StepState::Started) {
                let _ = p.on_task_failed(r, now);
            }
        }
    }
}
