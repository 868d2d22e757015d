//! Building plans: the deploy plan of a service, and any plan from phases,
//! validated (unique names, dependencies that exist and form no cycle).

use std::collections::{BTreeMap, HashMap};

use super::{BackoffPolicy, Phase, Plan, PlanError, Status, Step, Strategy};

impl Plan {
    /// A plan of `phases` ordered by `strategy`, checked: phase names unique
    /// in the plan, step names unique in their phase, every dependency names
    /// a sibling, and no dependency cycle.
    pub fn from_phases(name: impl Into<String>, strategy: Strategy, phases: Vec<Phase>) -> Result<Plan, PlanError> {
        let name = name.into();
        let phase_deps: Vec<(&str, &[String])> =
            phases.iter().map(|p| (p.name.as_str(), p.dependencies.as_slice())).collect();
        check_siblings(&format!("plan {name}"), &phase_deps)?;
        for phase in &phases {
            let step_deps: Vec<(&str, &[String])> =
                phase.steps.iter().map(|s| (s.name.as_str(), s.dependencies.as_slice())).collect();
            check_siblings(&format!("phase {}", phase.name), &step_deps)?;
        }
        let mut plan = Plan {
            name,
            strategy,
            phases,
            status: Status::Pending,
            errors: Vec::new(),
            interrupted: false,
            canary_resumed: false,
            parameters: BTreeMap::new(),
            backoff_policy: BackoffPolicy::default(),
        };
        plan.refresh();
        Ok(plan)
    }

    /// The `deploy` plan of a service: one phase per pod type, in the order
    /// given (the plan runs them serially: brokers before the stages that read
    /// them), each with steps `TYPE-i:[task,…]` for i in 0..count run by
    /// `strategy`.
    pub fn deploy_for(pods: &[(&str, usize, &[&str])], strategy: Strategy) -> Result<Plan, PlanError> {
        let phases = pods
            .iter()
            .map(|(pod_type, count, tasks)| {
                let steps = (0..*count).map(|i| Step::new(&format!("{pod_type}-{i}"), tasks.iter().copied())).collect();
                Phase::new(*pod_type, strategy, steps)
            })
            .collect();
        Plan::from_phases("deploy", Strategy::Serial, phases)
    }

    /// The same plan with another backoff policy.
    pub fn with_backoff_policy(mut self, policy: BackoffPolicy) -> Plan {
        self.backoff_policy = policy;
        self
    }
}

/// Checks one level of siblings: unique names, known dependencies, no cycle.
fn check_siblings(scope: &str, children: &[(&str, &[String])]) -> Result<(), PlanError> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, (name, _)) in children.iter().enumerate() {
        if index.insert(name, i).is_some() {
            return Err(PlanError::DuplicateName { scope: scope.to_string(), name: name.to_string() });
        }
    }
    for (name, deps) in children {
        for dep in deps.iter() {
            if !index.contains_key(dep.as_str()) {
                return Err(PlanError::UnknownDependency {
                    scope: scope.to_string(),
                    name: name.to_string(),
                    dependency: dep.clone(),
                    valid: children.iter().map(|(n, _)| n.to_string()).collect(),
                });
            }
        }
    }
    // Depth-first search; 0 = unvisited, 1 = on the path, 2 = done.
    let mut mark = vec![0u8; children.len()];
    let mut path = Vec::new();
    for start in 0..children.len() {
        if let Some(cycle) = visit(start, children, &index, &mut mark, &mut path) {
            return Err(PlanError::DependencyCycle { scope: scope.to_string(), cycle });
        }
    }
    Ok(())
}

fn visit(
    i: usize,
    children: &[(&str, &[String])],
    index: &HashMap<&str, usize>,
    mark: &mut [u8],
    path: &mut Vec<usize>,
) -> Option<Vec<String>> {
    match mark[i] {
        2 => return None,
        1 => {
            let from = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut cycle: Vec<String> = path[from..].iter().map(|&p| children[p].0.to_string()).collect();
            cycle.push(children[i].0.to_string());
            return Some(cycle);
        }
        _ => {}
    }
    mark[i] = 1;
    path.push(i);
    for dep in children[i].1 {
        if let Some(cycle) = visit(index[dep.as_str()], children, index, mark, path) {
            return Some(cycle);
        }
    }
    path.pop();
    mark[i] = 2;
    None
}
