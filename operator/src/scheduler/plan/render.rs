//! The tree `smack plan show` prints: plan, phases, steps, each with its
//! strategy and status, and under each the reason it waits or failed.

use std::fmt::Write;

use super::strategy::unmet;
use super::{Phase, Plan, Step, StepState, Strategy};

/// Renders `plan` as a tree, e.g.
///
/// ```text
/// deploy (serial strategy) (IN_PROGRESS)
/// ├─ broker (serial strategy) (IN_PROGRESS)
/// │  ├─ broker-0:[broker] (COMPLETE)
/// │  └─ broker-1:[broker] (STARTING)
/// └─ db (serial strategy) (PENDING)
///    └─ db-0:[node] (PENDING)
/// ```
///
/// Lines under an element say why it waits or failed: plan errors, pauses,
/// canary gates, unmet dependencies, crash-loop backoff, step messages.
pub fn render_tree(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({} strategy) ({})", plan.name, plan.strategy, plan.derive_status());
    let below = if plan.phases.is_empty() { "   " } else { "│  " };
    for line in plan_notes(plan) {
        let _ = writeln!(out, "{below}{line}");
    }
    let phase_views = plan.phase_views();
    for (p, phase) in plan.phases.iter().enumerate() {
        let last_phase = p + 1 == plan.phases.len();
        let (branch, indent) = if last_phase { ("└─ ", "   ") } else { ("├─ ", "│  ") };
        let _ = writeln!(out, "{branch}{} ({} strategy) ({})", phase.name, phase.strategy, phase.derive_status());
        let mut notes = phase_notes(plan, phase);
        if plan.strategy == Strategy::Dependency && !phase_views[p].complete {
            notes.extend(waits_for(&unmet(&phase_views, p)));
        }
        let below = if phase.steps.is_empty() { "   " } else { "│  " };
        for line in notes {
            let _ = writeln!(out, "{indent}{below}{line}");
        }
        let step_views = phase.step_views();
        for (s, step) in phase.steps.iter().enumerate() {
            let last_step = s + 1 == phase.steps.len();
            let (branch, under) = if last_step { ("└─ ", "   ") } else { ("├─ ", "│  ") };
            let _ = writeln!(out, "{indent}{branch}{} ({})", step.name, step.state);
            let mut notes = step_notes(step);
            if phase.strategy == Strategy::Dependency && !step_views[s].complete {
                notes.extend(waits_for(&unmet(&step_views, s)));
            }
            for line in notes {
                let _ = writeln!(out, "{indent}{under}{line}");
            }
        }
    }
    out
}

fn plan_notes(plan: &Plan) -> Vec<String> {
    let mut notes: Vec<String> = plan.errors.iter().map(|e| format!("error: {e}")).collect();
    if !plan.parameters.is_empty() {
        let params: Vec<String> = plan.parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        notes.push(format!("parameters: {}", params.join(", ")));
    }
    if plan.interrupted {
        notes.push(format!("paused: `smack plan resume {}` continues it", plan.name));
    }
    if plan.awaiting_resume() {
        notes.push(format!(
            "canary: {} is done; `smack plan resume {}` rolls out the rest",
            plan.phases[0].name, plan.name
        ));
    }
    notes
}

fn phase_notes(plan: &Plan, phase: &Phase) -> Vec<String> {
    let mut notes = Vec::new();
    if phase.interrupted && !plan.interrupted {
        notes.push(format!("paused: `smack plan resume {} {}` continues it", plan.name, phase.name));
    }
    if phase.awaiting_resume() {
        notes.push(format!(
            "canary: {} is done; `smack plan resume {} {}` rolls out the rest",
            phase.steps[0].name, plan.name, phase.name
        ));
    }
    notes
}

fn step_notes(step: &Step) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(message) = &step.message {
        let prefix = if step.state == StepState::Error { "error: " } else { "" };
        notes.push(format!("{prefix}{message}"));
    }
    if let (StepState::Delayed, Some(b)) = (step.state, step.backoff) {
        let failures = if b.attempts == 1 { "1 failure".to_string() } else { format!("{} failures", b.attempts) };
        notes.push(format!("crash-loop backoff: {failures}, retry {} after the last", duration(b.delay_ms)));
    }
    notes
}

fn waits_for(names: &[&str]) -> Option<String> {
    (!names.is_empty()).then(|| format!("waits for: {}", names.join(", ")))
}

/// `500ms`, `4s`, `1.5s`, `2m`.
fn duration(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{:.1}s", ms as f64 / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_short() {
        assert_eq!(duration(500), "500ms");
        assert_eq!(duration(4_000), "4s");
        assert_eq!(duration(1_500), "1.5s");
        assert_eq!(duration(60_000), "1m");
    }
}
