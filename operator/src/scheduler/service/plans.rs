//! Plan building: the `deploy` plan and custom plans from a spec, the
//! `update` and `decommission` plans a spec change yields, the plan that
//! `service delete` runs, and the `recovery` plan's steps. Pure.

use super::state::{pod_type_of, PodRecord, SchedulerState, SpecVersion};
use crate::scheduler::plan::{Phase, Plan, PlanKind, Step, StepState, Strategy};
use crate::scheduler::spec::{self, Goal, ServiceSpec};
use crate::{Error, Result};

pub fn check_update(old: &ServiceSpec, new: &ServiceSpec) -> Result<()> {
    let refusals = spec::validate_update(old, new);
    if refusals.is_empty() {
        return Ok(());
    }
    let msgs: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
    Err(Error::Conflict(format!("unsafe change refused; the running target is kept:\n  {}", msgs.join("\n  "))))
}

/// The plans a spec change yields: `update` (pods whose config changed, one
/// at a time, each waiting for readiness; and new pods of a higher count),
/// and `decommission` (pods beyond a lowered count).
pub fn update_plans(old: &ServiceSpec, new: &ServiceSpec, st: &SchedulerState) -> Result<Vec<Plan>> {
    let changed = spec::changed_pods(old, new);
    let mut update_phases = Vec::new();
    let mut decommission_phases = Vec::new();
    for pod in &new.pods {
        let tasks: Vec<String> = pod.tasks.iter().map(|t| t.name.clone()).collect();
        let old_count = old.pod(&pod.name).map(|p| p.count).unwrap_or(0);
        let mut steps = Vec::new();
        if changed.contains(&pod.name) {
            for i in 0..pod.count.min(old_count) {
                if st.pods.get(&pod.instance_name(i)).is_some_and(|p| !p.paused) {
                    steps.push(Step::new(&pod.instance_name(i), tasks.clone()));
                }
            }
        }
        for i in old_count..pod.count {
            steps.push(Step::new(&pod.instance_name(i), tasks.clone()));
        }
        if !steps.is_empty() {
            // Restarts of running pods wait for the pod type's update-order hook.
            let ordered = changed.contains(&pod.name) && pod.hooks.update_order.is_some() && old_count > 0;
            update_phases.push(Phase::new(pod.name.clone(), Strategy::Serial, steps).awaiting_order(ordered));
        }
        if pod.count < old_count {
            let steps: Vec<Step> = (pod.count..old_count)
                .rev()
                .map(|i| pod.instance_name(i))
                .filter(|n| st.pods.contains_key(n))
                .map(|n| Step::new(&n, tasks.clone()))
                .collect();
            if !steps.is_empty() {
                decommission_phases.push(Phase::new(pod.name.clone(), Strategy::Serial, steps));
            }
        }
    }
    let mut plans = Vec::new();
    if !update_phases.is_empty() {
        plans.push(Plan::from_phases(PlanKind::Update.as_str(), Strategy::Serial, update_phases)?);
    }
    if !decommission_phases.is_empty() {
        plans.push(Plan::from_phases(PlanKind::Decommission.as_str(), Strategy::Serial, decommission_phases)?);
    }
    Ok(plans)
}

/// Custom plans declared in the spec, stopped until `plan start`.
pub fn add_custom_plans(spec: &ServiceSpec, st: &mut SchedulerState) -> Result<()> {
    for ps in spec.plans.iter().filter(|p| p.is_custom()) {
        // A running custom plan keeps its steps; a stopped one follows the spec.
        if st.plans.get(&ps.name).is_some_and(|p| !p.interrupted) {
            continue;
        }
        let mut plan = plan_from_spec(spec, ps)?;
        plan.stop();
        plan.parameters = ps.parameters.clone();
        st.plans.insert(ps.name.clone(), plan);
    }
    Ok(())
}

pub fn apply_update_plans(st: &mut SchedulerState, plans: Vec<Plan>) {
    // A newer change supersedes an unfinished update.
    st.plans.remove(PlanKind::Update.as_str());
    for p in plans {
        st.plans.insert(p.name.clone(), p);
    }
}

fn strategy_of(s: spec::Strategy) -> Strategy {
    match s {
        spec::Strategy::Serial => Strategy::Serial,
        spec::Strategy::Parallel => Strategy::Parallel,
        spec::Strategy::Canary => Strategy::Canary,
        spec::Strategy::Dependency => Strategy::Dependency,
    }
}

/// The deploy plan of a spec: its declared plan, or a serial phase per pod.
pub fn deploy_plan(spec: &ServiceSpec) -> Result<Plan> {
    plan_from_spec(spec, &spec.deploy_plan())
}

pub fn plan_from_spec(spec: &ServiceSpec, ps: &spec::PlanSpec) -> Result<Plan> {
    let mut phases = Vec::new();
    for ph in &ps.phases {
        let Some(pod) = spec.pod(&ph.pod) else { continue };
        let tasks: Vec<String> = match &ph.tasks {
            Some(t) => t.clone(),
            None => pod.tasks.iter().map(|t| t.name.clone()).collect(),
        };
        let indices: Vec<u32> = match &ph.steps {
            Some(s) => s.clone(),
            None => (0..pod.count).collect(),
        };
        let steps = indices.iter().map(|i| Step::new(&pod.instance_name(*i), tasks.clone())).collect();
        phases.push(Phase::new(ph.name.clone(), strategy_of(ph.strategy), steps));
    }
    Ok(Plan::from_phases(ps.name.clone(), strategy_of(ps.strategy), phases)?)
}

pub fn ensure_recovery_step(st: &mut SchedulerState, pod: &str, spec: &ServiceSpec) {
    let tasks: Vec<String> = spec
        .pod(&pod_type_of(pod))
        .map(|p| p.tasks.iter().filter(|t| t.goal == Goal::Running).map(|t| t.name.clone()).collect())
        .unwrap_or_default();
    let recovery = PlanKind::Recovery.as_str();
    let plan = st.plans.entry(recovery.to_string()).or_insert_with(|| {
        Plan::from_phases(recovery, Strategy::Parallel, vec![Phase::new("recover", Strategy::Parallel, vec![])])
            .expect("an empty recovery plan is valid")
    });
    if plan.step_ref("recover", pod).is_err() {
        let mut step = Step::new(pod, tasks);
        step.state = StepState::Complete;
        plan.phases[0].steps.push(step);
    }
    plan.refresh();
}

/// A fresh service's state: its spec and the `deploy` plan.
pub fn initial_state(spec: &ServiceSpec, yaml: &str, file: &str) -> Result<SchedulerState> {
    Ok(SchedulerState {
        spec_yaml: yaml.to_string(),
        spec_file: file.to_string(),
        plans: [(PlanKind::Deploy.to_string(), deploy_plan(spec)?)].into(),
        ..Default::default()
    })
}

/// A persisted state resumed under `spec`: a changed spec, when safe, starts
/// its `update`/`decommission` plans; an unsafe one is refused.
pub fn resume_state(mut st: SchedulerState, spec: &ServiceSpec, yaml: &str, file: &str) -> Result<SchedulerState> {
    let old = ServiceSpec::from_yaml(&st.spec_yaml, &st.spec_file)?;
    check_update(&old, spec)?;
    if old != *spec {
        let plans = update_plans(&old, spec, &st)?;
        st.spec_yaml = yaml.to_string();
        st.spec_file = file.to_string();
        apply_update_plans(&mut st, plans);
    }
    Ok(st)
}

/// Records the spec being replaced in the state's history (the last 10).
pub fn push_history(st: &mut SchedulerState, now: u64) {
    let old = SpecVersion {
        yaml: std::mem::take(&mut st.spec_yaml),
        file: std::mem::take(&mut st.spec_file),
        replaced_ms: now,
    };
    st.spec_history.push(old);
    let excess = st.spec_history.len().saturating_sub(10);
    st.spec_history.drain(..excess);
}

/// The plan of `service delete`: every pod decommissioned, highest index
/// first, one pod type after another; `None` when no pod is left.
pub fn decommission_all_plan(spec: &ServiceSpec, st: &SchedulerState) -> Result<Option<Plan>> {
    let mut phases = Vec::new();
    for pod in &spec.pods {
        let tasks: Vec<String> = pod.tasks.iter().map(|t| t.name.clone()).collect();
        let mut names: Vec<&PodRecord> = st.pods.values().filter(|p| p.pod_type == pod.name).collect();
        names.sort_by_key(|p| std::cmp::Reverse(p.index));
        let steps: Vec<Step> = names.iter().map(|p| Step::new(&p.name, tasks.clone())).collect();
        if !steps.is_empty() {
            phases.push(Phase::new(pod.name.clone(), Strategy::Serial, steps));
        }
    }
    if phases.is_empty() {
        return Ok(None);
    }
    Ok(Some(Plan::from_phases(PlanKind::Decommission.as_str(), Strategy::Serial, phases)?))
}
