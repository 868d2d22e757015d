//! Which steps may do work now: the strategies, then pauses, backoff, and
//! pods already in work ("dirty assets").

use std::collections::{BTreeMap, BTreeSet};

use super::{Plan, StepRef};

impl Plan {
    /// The steps the scheduler may work on at `now_ms`, in plan order.
    ///
    /// A step is a candidate when the plan's strategy lets its phase work and
    /// the phase's strategy lets the step work; neither the plan, its phase
    /// nor the step is paused; the phase does not wait for its step order
    /// ([`super::Phase::awaiting_order`]); the plan carries no errors; the step is
    /// PENDING, PREPARED, or DELAYED with its backoff elapsed; and no other
    /// step is working on its pod instance (each pod appears at most once).
    pub fn candidates(&self, now_ms: u64) -> Vec<StepRef> {
        self.candidates_excluding(now_ms, &BTreeSet::new())
    }

    /// As [`Plan::candidates`], also skipping pod instances that other plans
    /// are working on (gather them with [`Plan::pods_in_work`]).
    pub fn candidates_excluding(&self, now_ms: u64, busy_pods: &BTreeSet<String>) -> Vec<StepRef> {
        if self.interrupted || !self.errors.is_empty() {
            return Vec::new();
        }
        let holders = self.pod_holders();
        let mut taken: BTreeSet<&str> = BTreeSet::new();
        let mut out = Vec::new();
        for p in self.strategy.eligible(&self.phase_views(), self.canary_resumed) {
            let phase = &self.phases[p];
            if phase.interrupted || phase.awaiting_order {
                continue;
            }
            for s in phase.eligible_steps() {
                let step = &phase.steps[s];
                let here = StepRef { phase: p, step: s };
                let pod = step.pod_instance.as_str();
                let held_by_other = holders.get(pod).is_some_and(|h| !h.contains(&here));
                if step.interrupted
                    || !step.is_ready_for_work(now_ms)
                    || held_by_other
                    || busy_pods.contains(pod)
                    || !taken.insert(pod)
                {
                    continue;
                }
                out.push(here);
            }
        }
        out
    }

    /// The phases whose turn it is (by the plan's strategy) and that wait
    /// for their step order ([`super::Phase::awaiting_order`]); none while
    /// the plan is paused or carries errors.
    pub fn phases_awaiting_order(&self) -> Vec<usize> {
        if self.interrupted || !self.errors.is_empty() {
            return Vec::new();
        }
        self.strategy
            .eligible(&self.phase_views(), self.canary_resumed)
            .into_iter()
            .filter(|&p| self.phases[p].awaiting_order && !self.phases[p].interrupted)
            .collect()
    }

    /// The pod instances this plan's steps are working on right now
    /// (PREPARED, STARTING, STARTED or DELAYED): other plans must leave them.
    pub fn pods_in_work(&self) -> BTreeSet<String> {
        self.pod_holders().into_keys().map(str::to_string).collect()
    }

    fn pod_holders(&self) -> BTreeMap<&str, Vec<StepRef>> {
        let mut holders: BTreeMap<&str, Vec<StepRef>> = BTreeMap::new();
        for (r, step) in self.steps() {
            if step.state.holds_pod() {
                holders.entry(step.pod_instance.as_str()).or_default().push(r);
            }
        }
        holders
    }
}
