//! What a pod instance asks of an offer ([`requirement`]): its resources,
//! ports, volumes and placement rules from the spec, and its existing
//! reservation when it goes back to its own disk. Pure.

use super::decide::Ids;
use super::state::SchedulerState;
use crate::resources::Offer;
use crate::scheduler::evaluator::{ExistingPlacement, PodRequirement, VolumeKind};
use crate::scheduler::placement::{PlacementRule as Rule, Preference};
use crate::scheduler::pod::PodInstance;
use crate::scheduler::spec::{self, PodSpec, ServiceSpec, VolumeType};

/// A placed pod with no live task whose agent offers without its
/// reservation: the reservation never came to be (an accept lost in a
/// scheduler crash) or is gone, so the pod is placed afresh.
pub fn forget_lost_reservation(st: &mut SchedulerState, pod: &str, offers: &[Offer]) {
    if !st.live_tasks(pod).is_empty() {
        return;
    }
    let Some(rec) = st.pods.get_mut(pod) else { return };
    let (Some(agent), Some(rid)) = (rec.agent_id.clone(), rec.reservation_id.clone()) else { return };
    let seen_without = offers.iter().any(|o| o.agent_id == agent && o.reservation(&rid).is_none());
    if seen_without {
        tracing::warn!(pod = %pod, reservation = %rid, "the pod's reservation is not on its agent: placing it anew");
        rec.agent_id = None;
        rec.reservation_id = None;
        rec.volume_ids.clear();
        rec.ports.clear();
        rec.hostname.clear();
        rec.attributes.clear();
    }
}

fn to_rule(r: &spec::PlacementRule) -> Rule {
    match r {
        spec::PlacementRule::Unique { attribute } => Rule::unique(attribute),
        spec::PlacementRule::MaxPer { attribute, max } => Rule::max_per(attribute, *max as usize),
        spec::PlacementRule::GroupBy { attribute, count } => {
            Rule::GroupBy { attribute: attribute.clone(), count: count.map(|c| c as usize) }
        }
        spec::PlacementRule::Like { attribute, pattern } => Rule::like(attribute, pattern),
        spec::PlacementRule::Unlike { attribute, pattern } => Rule::unlike(attribute, pattern),
        spec::PlacementRule::ColocateWith { pod } => Rule::colocate_with(pod),
        spec::PlacementRule::Avoid { pod } => Rule::avoid(pod),
    }
}

/// What a pod instance needs from an offer: fresh, or back on its own disk.
pub fn requirement(spec: &ServiceSpec, st: &SchedulerState, pod: &str, ids: &mut dyn Ids) -> Option<PodRequirement> {
    let PodInstance { pod_type, index } = PodInstance::parse(pod)?;
    let index = index as usize;
    let ps: &PodSpec = spec.pod(&pod_type)?;
    let rid = format!("{}-{pod}-{}", spec.name, ids.next_id());
    let mut req = PodRequirement::new(&pod_type, index, rid, ps.resources.cpus, ps.resources.mem);
    for p in &ps.resources.ports {
        req = req.port(&p.name, p.port);
    }
    for v in &ps.volumes {
        let kind = match v.kind {
            VolumeType::Root => VolumeKind::Root,
            VolumeType::Mount => VolumeKind::Mount,
        };
        req = req.volume(&v.path, v.size, kind);
    }
    for r in ps.rules() {
        req = req.rule(to_rule(r));
    }
    if let Some(p) = ps.preference(index as u32) {
        req = req.prefer(Preference { hostname: p.hostname.clone(), zone: p.zone.clone() });
    }
    if let Some(rec) = st.pods.get(pod) {
        if let (true, Some(old)) = (rec.replace, &rec.replaced_from) {
            req = req.rule(Rule::unlike("hostname", old));
        }
        if let (Some(agent), Some(res)) = (&rec.agent_id, &rec.reservation_id) {
            if !rec.replace {
                req = req.existing(ExistingPlacement {
                    agent_id: agent.clone(),
                    reservation_id: res.clone(),
                    volume_ids: rec.volume_ids.clone(),
                    ports: rec.ports.clone(),
                });
            }
        }
    }
    Some(req)
}
