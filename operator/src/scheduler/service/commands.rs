//! Operator commands on a service's state: open or resume it, act on a
//! plan, apply or diff a changed spec, `service delete`, and `pod pause`,
//! `restart`, `replace`. Pure: each changes the state it is given and
//! returns the tasks to kill; the driver persists, then kills.

use super::plans::{
    add_custom_plans, apply_update_plans, check_update, decommission_all_plan, ensure_recovery_step, initial_state,
    push_history, resume_state, update_plans,
};
use super::state::{SchedulerState, SpecDiff};
use crate::resources::TaskId;
use crate::scheduler::plan::{Plan, PlanKind};
use crate::scheduler::spec::{self, ServiceSpec};
use crate::{Error, Result};

/// Opens a service: `saved` resumed under the spec of `yaml` (a changed
/// spec refused if unsafe, else its update plans started), or a fresh
/// deploy; custom plans added, stopped, either way.
pub fn open(saved: Option<SchedulerState>, yaml: &str, file: &str) -> Result<(ServiceSpec, SchedulerState)> {
    let spec = ServiceSpec::from_yaml(yaml, file)?;
    let mut state = match saved {
        Some(st) => resume_state(st, &spec, yaml, file)?,
        None => initial_state(&spec, yaml, file)?,
    };
    add_custom_plans(&spec, &mut state)?;
    Ok((spec, state))
}

/// Applies `f` to the plan named `plan`, then refreshes its status.
pub fn with_plan<T>(st: &mut SchedulerState, plan: &str, f: impl FnOnce(&mut Plan) -> Result<T>) -> Result<T> {
    let names: Vec<String> = st.plans.keys().cloned().collect();
    let p =
        st.plans.get_mut(plan).ok_or_else(|| Error::Unknown { what: "plan", name: plan.into(), known: Some(names) })?;
    let out = f(p)?;
    p.refresh();
    Ok(out)
}

/// Makes the spec of `yaml` the target: refused with the reasons (the old
/// target kept) when unsafe or while a replace or decommission runs;
/// otherwise returns the plans it started (none when nothing changed).
pub fn update_spec(
    st: &mut SchedulerState,
    spec: &mut ServiceSpec,
    yaml: &str,
    file: &str,
    now: u64,
) -> Result<Vec<String>> {
    let new = ServiceSpec::from_yaml(yaml, file)?;
    check_update(spec, &new)?;
    if *spec == new {
        return Ok(Vec::new());
    }
    if let Some(why) = st.destructive_in_flight() {
        return Err(Error::Conflict(format!("change refused while {why}; apply it again once that completes")));
    }
    push_history(st, now);
    let plans = update_plans(spec, &new, st)?;
    let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    *spec = new;
    st.spec_yaml = yaml.to_string();
    st.spec_file = file.to_string();
    apply_update_plans(st, plans);
    add_custom_plans(spec, st)?;
    Ok(names)
}

/// `service delete`: every other plan paused, and a `decommission` plan
/// for every pod (tasks killed, volumes destroyed, reservations released).
pub fn delete_all(st: &mut SchedulerState, spec: &ServiceSpec) -> Result<()> {
    if let Some(why) = st.destructive_in_flight() {
        return Err(Error::Conflict(format!("delete refused while {why}")));
    }
    let plan = decommission_all_plan(spec, st)?;
    // Nothing else may start work on these pods any more.
    for p in st.plans.values_mut() {
        let _ = p.pause(None);
    }
    if let Some(plan) = plan {
        st.plans.insert(PlanKind::Decommission.to_string(), plan);
    }
    Ok(())
}

/// What making `yaml` the target would change, changing nothing.
pub fn diff_spec(st: &SchedulerState, spec: &ServiceSpec, yaml: &str, file: &str) -> Result<SpecDiff> {
    let new = ServiceSpec::from_yaml(yaml, file)?;
    let mut d = SpecDiff {
        refused: spec::validate_update(spec, &new).iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    };
    if let Some(why) = st.destructive_in_flight() {
        d.refused.push(format!("{why}: a change now would be refused"));
    }
    let changed = spec::changed_pods(spec, &new);
    for pod in &new.pods {
        let old_count = spec.pod(&pod.name).map(|p| p.count).unwrap_or(0);
        for i in old_count..pod.count {
            d.added.push(pod.instance_name(i));
        }
        for i in pod.count..old_count {
            d.removed.push(pod.instance_name(i));
        }
        if changed.contains(&pod.name) {
            for i in 0..pod.count.min(old_count) {
                let name = pod.instance_name(i);
                let paused = st.pods.get(&name).is_some_and(|p| p.paused);
                if !paused {
                    d.restarted.push((name, format!("the `{}` pod's config changed", pod.name)));
                }
            }
        }
    }
    Ok(d)
}

/// `pod pause` / `pod resume`: marks the pod; true when that changed
/// anything (the caller then restarts it, so it comes back in the new mode).
pub fn set_paused(st: &mut SchedulerState, pod: &str, paused: bool) -> Result<bool> {
    let rec = st.pods.get_mut(pod).ok_or_else(|| Error::Unknown { what: "pod", name: pod.into(), known: None })?;
    if rec.paused == paused {
        return Ok(false);
    }
    rec.paused = paused;
    Ok(true)
}

/// `pod restart`: the pod's live tasks, to kill (they come back in place);
/// an error when there is no such pod or no framework id yet.
pub fn pod_tasks(st: &SchedulerState, pod: &str) -> Result<(String, Vec<TaskId>)> {
    if !st.pods.contains_key(pod) {
        let known = Some(st.pods.keys().cloned().collect());
        return Err(Error::Unknown { what: "pod", name: pod.into(), known });
    }
    let fw = st.framework_id.clone().ok_or(Error::NotSubscribed)?;
    Ok((fw, st.live_tasks(pod)))
}

/// `pod replace` (and a LOST pod past the permanent-failure timeout): the
/// pod forgets its placement (its reservation becomes an orphan, destroyed
/// when next offered) and its recovery step starts over, to place it anew
/// away from its old host. Returns the framework id and the tasks to kill.
pub fn replace_pod(st: &mut SchedulerState, spec: &ServiceSpec, pod: &str) -> Result<(String, Vec<TaskId>)> {
    let (fw, tasks) = pod_tasks(st, pod)?;
    let rec = st.pods.get_mut(pod).expect("checked by pod_tasks");
    rec.replace = true;
    rec.lost_since_ms = None;
    let old = rec.reservation_id.take();
    rec.agent_id = None;
    rec.replaced_from = Some(std::mem::take(&mut rec.hostname)).filter(|h| !h.is_empty());
    rec.attributes.clear();
    rec.volume_ids.clear();
    rec.ports.clear();
    if let Some(old) = old {
        st.orphans.insert(old);
    }
    ensure_recovery_step(st, pod, spec);
    if let Some(p) = st.plans.get_mut(PlanKind::Recovery.as_str()) {
        if let Ok(r) = p.step_ref("recover", pod) {
            let _ = p.reset_backoff(r);
            if let Some(s) = p.phases.get_mut(r.phase).and_then(|ph| ph.steps.get_mut(r.step)) {
                s.restart();
            }
            p.refresh();
        }
    }
    Ok((fw, tasks))
}
