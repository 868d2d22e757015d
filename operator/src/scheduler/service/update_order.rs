//! The `update-order` hook: a pod type may name the order in which an
//! update plan restarts its existing pods (a quorum's leader last, say)
//! with a command whose stdout lists them.
//!
//! How it fits the plan engine: [`super::plans::update_plans`] marks an update
//! phase that restarts pods of a type with `hooks: update-order:` as
//! [`Phase::awaiting_order`](crate::scheduler::plan::Phase::awaiting_order);
//! such a phase hands out no step. Once the plan's strategy reaches it
//! ([`Plan::phases_awaiting_order`]), the scheduler's loop runs the hook —
//! in the scheduler's own process, with `sh -c`, since the answer is needed
//! before any pod of the phase stops and no agent task can return output —
//! then reorders the phase's pending steps by the pods it printed
//! ([`Phase::apply_order`](crate::scheduler::plan::Phase::apply_order)) and
//! lets the phase go. The order is taken right before the phase starts,
//! so a leader elected during earlier phases is seen.
//!
//! The hook's env: its own `env:`, `SERVICE_NAME`, `POD_TYPE`,
//! `UPDATE_PLAN`, `UPDATE_PODS` (the phase's pods in plan order, space
//! separated), `SMACK_PODS` (every placed pod, as tasks see it) and
//! `SMACK_BIN` (this binary, unless the env names one). Its stdout is pod
//! instance names of the pod type, separated by whitespace or commas.
//! A hook that fails, times out ([`HOOK_TIMEOUT`]) or prints something
//! else leaves the plan order, with the reason on the phase's steps and
//! in the log: the order is an optimisation of a roll that readiness
//! already keeps safe, and must never stall it.

use super::state::{pod_type_of, SchedulerState};
use super::task_env::{placed_pods, PodAddress, PODS_ENV};
use super::ServiceScheduler;
use crate::scheduler::plan::Plan;
use crate::scheduler::spec::{HookSpec, ServiceSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long an `update-order` hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// One hook to run: for phase `phase` of plan `plan`.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub plan: String,
    pub phase: usize,
    /// The phase's pods, in plan order (to recognise the phase afterwards).
    pub pods: Vec<String>,
    /// `plan/phase`: one run at a time per phase.
    pub key: String,
    pub hook: HookSpec,
    pub env: BTreeMap<String, String>,
}

/// The `update-order` hooks to start now: one per phase whose turn it is,
/// that waits for its order and whose hook is not `running` (by key); a
/// phase whose pod type has no such hook (any more) is let go in plan
/// order at once. Pure but for `smack_bin`, the `SMACK_BIN` to give the
/// hook when its env names none. Returns whether a phase was let go (the
/// state changed) and the hooks to run.
pub fn due_hooks(
    st: &mut SchedulerState,
    spec: &ServiceSpec,
    running: &BTreeSet<String>,
    smack_bin: Option<&str>,
) -> (bool, Vec<Due>) {
    let mut due = Vec::new();
    let mut released = false;
    let placed: Vec<PodAddress> = placed_pods(st);
    for (name, plan) in st.plans.iter_mut() {
        let mut here = false;
        for p in plan.phases_awaiting_order() {
            let pods: Vec<String> = plan.phases[p].steps.iter().map(|s| s.pod_instance.clone()).collect();
            let pod_type = pods.first().map(|n| pod_type_of(n)).unwrap_or_default();
            let hook = spec.pod(&pod_type).and_then(|s| s.hooks.update_order.clone());
            let Some(hook) = hook else {
                plan.phases[p].apply_order(&[]);
                here = true;
                continue;
            };
            let key = format!("{name}/{}", plan.phases[p].name);
            if running.contains(&key) {
                continue;
            }
            let mut env = hook.env.clone();
            env.insert("SERVICE_NAME".into(), spec.name.clone());
            env.insert("POD_TYPE".into(), pod_type.clone());
            env.insert("UPDATE_PLAN".into(), name.clone());
            env.insert("UPDATE_PODS".into(), pods.join(" "));
            env.insert(PODS_ENV.into(), serde_json::to_string(&placed).unwrap_or_default());
            if let (false, Some(bin)) = (env.contains_key("SMACK_BIN"), smack_bin) {
                env.insert("SMACK_BIN".into(), bin.to_string());
            }
            for s in &mut plan.phases[p].steps {
                s.message = Some("waiting for the pod type's update-order hook".into());
            }
            due.push(Due { plan: name.clone(), phase: p, pods, key, hook, env });
        }
        if here {
            plan.refresh();
            released = true;
        }
    }
    (released, due)
}

/// Applies a hook's answer (the pods in the order it printed, or why it
/// failed) to its phase, if the phase still waits for it (a newer spec may
/// have replaced the plan meanwhile): its pending steps take that order, or
/// the plan order when the hook failed, and the phase goes. Returns whether
/// the state changed.
pub fn apply_hook_result(st: &mut SchedulerState, d: &Due, result: Result<Vec<String>, String>) -> bool {
    let Some(plan) = st.plans.get_mut(&d.plan) else { return false };
    let same = plan.phases.get(d.phase).is_some_and(|ph| {
        ph.awaiting_order && ph.steps.iter().map(|s| s.pod_instance.as_str()).eq(d.pods.iter().map(String::as_str))
    });
    if !same {
        tracing::info!(plan = %d.plan, "the update-order hook answered for a phase that changed meanwhile");
        return false;
    }
    let phase = &mut plan.phases[d.phase];
    let note = match result {
        Ok(order) => {
            let now = phase.apply_order(&order);
            tracing::info!(plan = %d.plan, phase = %phase.name, order = ?now, "update order from the hook");
            format!("update order from the update-order hook: {}", now.join(", "))
        }
        Err(why) => {
            let now = phase.apply_order(&[]);
            tracing::warn!(plan = %d.plan, phase = %phase.name, error = %why, "update-order hook: plan order kept");
            format!("the update-order hook failed ({why}); rolling in plan order: {}", now.join(", "))
        }
    };
    for s in &mut phase.steps {
        s.message = Some(note.clone());
    }
    Plan::refresh(plan);
    true
}

impl ServiceScheduler {
    /// Starts the `update-order` hook of every phase whose turn it is and
    /// that waits for its order, unless it already runs ([`due_hooks`]).
    pub(super) fn start_update_order_hooks(&self) {
        let due = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let running = self.order_hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let exe = std::env::current_exe().ok().map(|e| e.display().to_string());
            let (released, due) = due_hooks(&mut inner.state, &inner.spec, &running, exe.as_deref());
            if released {
                if let Err(e) = self.persist_locked(inner) {
                    tracing::warn!(error = %e, "persisting a released update phase");
                }
                self.wake.notify_one();
            }
            due
        };
        for d in due {
            self.order_hooks.lock().unwrap_or_else(|p| p.into_inner()).insert(d.key.clone());
            let me = self.clone();
            tokio::spawn(async move {
                tracing::info!(plan = %d.plan, pods = ?d.pods, cmd = %d.hook.cmd, "running the update-order hook");
                let result = run_hook(&d.hook.cmd, &d.env, HOOK_TIMEOUT).await.and_then(|out| {
                    let pod_type = d.pods.first().map(|n| pod_type_of(n)).unwrap_or_default();
                    parse_order(&out, &pod_type)
                });
                me.finish_update_order(&d, result);
                me.order_hooks.lock().unwrap_or_else(|p| p.into_inner()).remove(&d.key);
                me.wake.notify_one();
            });
        }
    }

    /// Applies a hook's answer ([`apply_hook_result`]) and persists it.
    fn finish_update_order(&self, d: &Due, result: Result<Vec<String>, String>) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if apply_hook_result(&mut inner.state, d, result) {
            if let Err(e) = self.persist_locked(inner) {
                tracing::warn!(error = %e, "persisting the update order");
            }
        }
    }
}

/// Runs `cmd` with `sh -c` and `env` (on top of this process's env), and
/// returns its stdout; an error with its exit and stderr's tail when it
/// fails, or when it is still running after `timeout` (it is killed).
async fn run_hook(cmd: &str, env: &BTreeMap<String, String>, timeout: Duration) -> Result<String, String> {
    let mut c = tokio::process::Command::new("/bin/sh");
    c.arg("-c").arg(cmd).envs(env).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, c.output()).await {
        Err(_) => return Err(format!("still running after {timeout:?}")),
        Ok(Err(e)) => return Err(format!("cannot run /bin/sh: {e}")),
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        return Err(format!("{}: {}", out.status, lines[lines.len().saturating_sub(3)..].join(" | ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pod instances a hook printed: names of pod type `pod_type`
/// (`broker-2`), separated by whitespace or commas, each once. Anything
/// else is an error naming it.
pub fn parse_order(out: &str, pod_type: &str) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for word in out.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()) {
        let index_ok = word
            .strip_prefix(pod_type)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
        if !index_ok {
            return Err(format!("it printed {word:?}, not a pod of type `{pod_type}` (expected e.g. `{pod_type}-0`)"));
        }
        if !seen.insert(word.to_string()) {
            return Err(format!("it printed {word} twice"));
        }
        order.push(word.to_string());
    }
    if order.is_empty() {
        return Err("it printed no pod".into());
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_pod_names_of_the_type() {
        assert_eq!(
            parse_order("broker-1\nbroker-2\nbroker-0\n", "broker").unwrap(),
            ["broker-1", "broker-2", "broker-0"]
        );
        assert_eq!(
            parse_order(" controller-2, controller-0 ", "controller").unwrap(),
            ["controller-2", "controller-0"]
        );
    }

    #[test]
    fn anything_else_is_refused_with_what_was_printed() {
        let e = parse_order("broker-1 db-2", "broker").unwrap_err();
        assert!(e.contains("\"db-2\", not a pod of type `broker`"), "{e}");
        assert!(parse_order("broker-", "broker").is_err());
        assert!(parse_order("broker-x", "broker").is_err());
        assert!(parse_order("brokera-1", "broker").is_err());
        assert!(parse_order("broker-1 broker-1", "broker").unwrap_err().contains("twice"));
        assert!(parse_order("\n", "broker").unwrap_err().contains("no pod"));
    }

    fn spec(hook: bool, threads: u32, count: u32) -> crate::scheduler::spec::ServiceSpec {
        let hook = if hook { "    hooks:\n      update-order: { cmd: echo q-1 }\n" } else { "" };
        let yaml = format!(
            "name: s\npods:\n  q:\n    count: {count}\n    resources: {{ cpus: 1, mem: 64 }}\n{hook}    tasks:\n      \
             main: {{ cmd: run, env: {{ THREADS: \"{threads}\" }} }}\n  w:\n    count: 1\n    resources: {{ cpus: 1, mem: 64 }}\n    \
             tasks:\n      main: {{ cmd: run, env: {{ THREADS: \"{threads}\" }} }}\n"
        );
        crate::scheduler::spec::ServiceSpec::from_yaml(&yaml, "s.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn placed(pods: &[&str]) -> super::super::SchedulerState {
        let mut st = super::super::SchedulerState::default();
        for p in pods {
            st.pods.insert(p.to_string(), super::super::PodRecord { name: p.to_string(), ..Default::default() });
        }
        st
    }

    #[test]
    fn an_update_of_a_pod_type_with_the_hook_waits_for_its_order() {
        let st = placed(&["q-0", "q-1", "w-0"]);
        let plans = super::super::plans::update_plans(&spec(true, 1, 2), &spec(true, 2, 2), &st).unwrap();
        let update = &plans[0];
        assert_eq!(update.name, "update");
        let flags: Vec<(&str, bool)> = update.phases.iter().map(|p| (p.name.as_str(), p.awaiting_order)).collect();
        assert_eq!(flags, [("q", true), ("w", false)]);
        assert_eq!(update.phases_awaiting_order(), [0]);
        assert!(update.candidates(0).is_empty());
        // Without the hook, or when only new pods are added, nothing waits.
        let plans = super::super::plans::update_plans(&spec(false, 1, 2), &spec(false, 2, 2), &st).unwrap();
        assert!(plans[0].phases.iter().all(|p| !p.awaiting_order));
        let plans = super::super::plans::update_plans(&spec(true, 1, 2), &spec(true, 1, 3), &st).unwrap();
        assert!(plans[0].phases.iter().all(|p| !p.awaiting_order), "scaling up restarts nothing");
    }

    #[tokio::test]
    async fn the_hook_runs_with_its_env_and_its_failures_say_why() {
        let env: BTreeMap<String, String> = [("UPDATE_PODS".to_string(), "a-0 a-1".to_string())].into();
        let out = run_hook("for p in $UPDATE_PODS; do echo $p; done | sort -r", &env, HOOK_TIMEOUT).await.unwrap();
        assert_eq!(parse_order(&out, "a").unwrap(), ["a-1", "a-0"]);
        let e = run_hook("echo one >&2; echo the reason >&2; exit 3", &env, HOOK_TIMEOUT).await.unwrap_err();
        assert!(e.contains("3") && e.contains("one | the reason"), "{e}");
        let e = run_hook("sleep 5", &env, Duration::from_millis(100)).await.unwrap_err();
        assert!(e.contains("still running"), "{e}");
    }
}
