//! Cross-reference checks on a decoded spec: names that must be unique
//! within a pod, ports and pod types that must exist, plans that must name
//! real pods and tasks, and dependency graphs without cycles.

use super::yaml::Cx;
use super::*;
use std::collections::{BTreeSet, HashMap};

pub(super) fn validate(cx: &mut Cx, spec: &ServiceSpec) {
    let pod_names: Vec<&str> = spec.pods.iter().map(|p| p.name.as_str()).collect();
    for pod in &spec.pods {
        validate_pod(cx, pod, &pod_names);
    }
    for plan in &spec.plans {
        validate_plan(cx, spec, plan);
    }
}

fn validate_pod(cx: &mut Cx, pod: &PodSpec, pod_names: &[&str]) {
    let path = format!("pods.{}", pod.name);

    // Ports: env names and fixed port numbers unique within the pod.
    let mut envs: HashMap<String, &PortSpec> = HashMap::new();
    let mut fixed: HashMap<u16, &PortSpec> = HashMap::new();
    for port in &pod.resources.ports {
        let p = format!("{path}.resources.ports.{}", port.name);
        let env = port.env_name();
        if let Some(first) = envs.get(&env) {
            cx.err(
                port.pos,
                &p,
                format!("port `{}` is injected as {env}, like port `{}` (at {})", port.name, first.name, first.pos),
            )
            .hint = Some("give one of them another name, or set `env:`".into());
        } else {
            envs.insert(env, port);
        }
        if port.port != 0 {
            if let Some(first) = fixed.get(&port.port) {
                cx.err(
                    port.port_pos,
                    &format!("{p}.port"),
                    format!(
                        "port {} is already used by port `{}` of this pod (at {})",
                        port.port, first.name, first.port_pos
                    ),
                )
                .hint = Some("fixed ports must differ within a pod; use `port: 0` for a dynamic one".into());
            } else {
                fixed.insert(port.port, port);
            }
        }
    }

    // Volumes: paths and names unique.
    let mut paths: HashMap<&str, &VolumeSpec> = HashMap::new();
    let mut names: HashMap<String, &VolumeSpec> = HashMap::new();
    for (i, v) in pod.volumes.iter().enumerate() {
        let p = format!("{path}.volumes[{i}]");
        if v.path.is_empty() {
            continue;
        }
        let norm = v.path.trim_end_matches('/').trim_start_matches("./");
        if let Some(first) = paths.get(norm) {
            cx.err(
                v.pos,
                &format!("{p}.path"),
                format!("volume path `{}` is already used by another volume of this pod (at {})", v.path, first.pos),
            );
            continue;
        }
        paths.insert(norm, v);
        if let Some(first) = names.get(&v.env_name()) {
            cx.err(
                v.pos,
                &format!("{p}.name"),
                format!(
                    "volume `{}` is injected as {}, like volume `{}` (at {})",
                    v.name,
                    v.env_name(),
                    first.name,
                    first.pos
                ),
            )
            .hint = Some("give one of them a distinct `name:`".into());
        } else {
            names.insert(v.env_name(), v);
        }
    }

    // Checks name declared ports.
    for t in &pod.tasks {
        for (field, check) in [("health-check", &t.health_check), ("readiness-check", &t.readiness_check)] {
            let Some(check) = check else { continue };
            let Some(port) = check.kind.port() else {
                continue;
            };
            if pod.port(port).is_none() {
                let declared: Vec<&str> = pod.resources.ports.iter().map(|p| p.name.as_str()).collect();
                let e = cx.err(
                    check.port_pos,
                    &format!("{path}.tasks.{}.{field}", t.name),
                    format!("port `{port}` is not declared in this pod's resources"),
                );
                e.hint = Some(if declared.is_empty() {
                    format!("declare it under `resources: ports: {port}: {{port: 0}}`")
                } else {
                    format!("declared ports: {}", declared.join(", "))
                });
            }
        }
    }

    // Placement: pod types named must exist.
    for (i, pl) in pod.placement.iter().enumerate() {
        let p = format!("{path}.placement[{i}].{}", pl.rule.keyword());
        let other = match &pl.rule {
            PlacementRule::ColocateWith { pod } | PlacementRule::Avoid { pod } => pod,
            _ => continue,
        };
        if !pod_names.contains(&other.as_str()) {
            cx.err(pl.pos, &p, format!("no pod type `{other}` in this service")).hint =
                Some(format!("pod types: {}", pod_names.join(", ")));
        } else if other == &pod.name && matches!(pl.rule, PlacementRule::ColocateWith { .. }) {
            cx.err(pl.pos, &p, format!("pod type `{other}` cannot be colocated with itself")).hint =
                Some("to pack pods of one type together use `group-by`; to spread them use `unique: hostname`".into());
        }
    }
}

fn validate_plan(cx: &mut Cx, spec: &ServiceSpec, plan: &PlanSpec) {
    let path = format!("plans.{}", plan.name);
    let mut seen: HashMap<&str, &PhaseSpec> = HashMap::new();
    for (i, ph) in plan.phases.iter().enumerate() {
        let p = format!("{path}.phases[{i}]");
        if !ph.name.is_empty() {
            if let Some(first) = seen.get(ph.name.as_str()) {
                cx.err(
                    ph.at.name,
                    &format!("{p}.name"),
                    format!("phase `{}` is already declared in this plan (at {})", ph.name, first.at.name),
                );
            } else {
                seen.insert(&ph.name, ph);
            }
        }
        if ph.strategy == Strategy::Dependency {
            cx.err(
                ph.at.name,
                &format!("{p}.strategy"),
                "a phase's steps have no dependencies; `dependency` orders the phases of a plan",
            )
            .hint = Some("set `strategy: dependency` on the plan and `depends-on:` on its phases".into());
        }
        if !ph.depends_on.is_empty() && plan.strategy != Strategy::Dependency {
            cx.err(
                ph.at.depends_on[0],
                &format!("{p}.depends-on"),
                format!("`depends-on` needs the plan's strategy to be `dependency`, not `{}`", plan.strategy),
            )
            .hint = Some("set `strategy: dependency` on the plan".into());
        }
        if ph.pod.is_empty() {
            continue;
        }
        let Some(pod) = spec.pod(&ph.pod) else {
            let names: Vec<&str> = spec.pods.iter().map(|p| p.name.as_str()).collect();
            cx.err(ph.at.pod, &format!("{p}.pod"), format!("no pod type `{}` in this service", ph.pod)).hint =
                Some(format!("pod types: {}", names.join(", ")));
            continue;
        };
        if let Some(tasks) = &ph.tasks {
            for (j, (t, at)) in tasks.iter().zip(&ph.at.tasks).enumerate() {
                if pod.task(t).is_none() {
                    let names: Vec<&str> = pod.tasks.iter().map(|t| t.name.as_str()).collect();
                    cx.err(*at, &format!("{p}.tasks[{j}]"), format!("pod type `{}` has no task `{t}`", pod.name))
                        .hint = Some(format!("its tasks: {}", names.join(", ")));
                }
            }
        }
        if let Some(steps) = &ph.steps {
            let mut indices = BTreeSet::new();
            for (j, (s, at)) in steps.iter().zip(&ph.at.steps).enumerate() {
                if *s >= pod.count {
                    cx.err(
                        *at,
                        &format!("{p}.steps[{j}]"),
                        format!("pod `{}` has no index {s}: its count is {}", pod.name, pod.count),
                    );
                } else if !indices.insert(*s) {
                    cx.err(*at, &format!("{p}.steps[{j}]"), format!("index {s} is listed twice"));
                }
            }
        }
    }

    // depends-on: existing phases, not itself, no cycles.
    for (i, ph) in plan.phases.iter().enumerate() {
        for (j, (d, at)) in ph.depends_on.iter().zip(&ph.at.depends_on).enumerate() {
            let p = format!("{path}.phases[{i}].depends-on[{j}]");
            if d == &ph.name {
                cx.err(*at, &p, format!("phase `{d}` cannot depend on itself"));
            } else if !seen.contains_key(d.as_str()) {
                cx.err(*at, &p, format!("no phase `{d}` in plan `{}`", plan.name)).hint = Some(format!(
                    "phases: {}",
                    plan.phases.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(plan) {
        let first = &plan.phases.iter().find(|p| p.name == cycle[0]).expect("phase of the cycle");
        let k = first.depends_on.iter().position(|d| *d == cycle[1]).unwrap_or(0);
        let at = first.at.depends_on.get(k).copied().unwrap_or(first.at.name);
        cx.err(
            at,
            &format!("{path}.phases"),
            format!("the phases' dependencies form a cycle: {}", cycle.join(" → ")),
        )
        .hint = Some("remove one of these `depends-on` entries".into());
    }
}

/// A dependency cycle among the plan's phases, as phase names from a phase
/// back to itself (`a → b → a`), if there is one. Self-dependencies are
/// reported on their own and skipped here.
fn find_cycle(plan: &PlanSpec) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = plan.phases.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
    let edges: Vec<Vec<usize>> = plan
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| p.depends_on.iter().filter_map(|d| index.get(d.as_str()).copied()).filter(|&j| j != i).collect())
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; edges.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(v: usize, edges: &[Vec<usize>], state: &mut [u8], stack: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[v] = 1;
        stack.push(v);
        for &w in &edges[v] {
            if state[w] == 1 {
                let start = stack.iter().position(|&x| x == w).expect("on the stack");
                let mut cycle = stack[start..].to_vec();
                cycle.push(w);
                return Some(cycle);
            }
            if state[w] == 0 {
                if let Some(c) = visit(w, edges, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state[v] = 2;
        None
    }
    for v in 0..edges.len() {
        if state[v] == 0 {
            if let Some(c) = visit(v, &edges, &mut state, &mut stack) {
                return Some(c.into_iter().map(|i| plan.phases[i].name.clone()).collect());
            }
        }
    }
    None
}
