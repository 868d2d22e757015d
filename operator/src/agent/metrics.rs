//! The agents' metric families: tasks by state, launches, kills, health
//! check failures and volume usage (`smack_agent_*`), one set shared by
//! every agent of a process, told apart by the `agent` label.

use crate::metrics::{encode_counts, Labels};
use crate::resources::TaskState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What one agent's gauges show, read on each scrape.
#[derive(Debug, Clone, Default)]
pub struct AgentSnapshot {
    pub hostname: String,
    /// Tasks the agent checkpoints, by state.
    pub tasks: BTreeMap<TaskState, u64>,
    /// Bytes used on each persistent volume, by volume id.
    pub volumes: BTreeMap<String, u64>,
}

const TASK_STATES: [TaskState; 7] = [
    TaskState::Staging,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Finished,
    TaskState::Failed,
    TaskState::Killed,
    TaskState::Lost,
];

type AgentSource = Box<dyn Fn() -> Option<AgentSnapshot> + Send + Sync>;

struct AgentGauges(Arc<Mutex<Vec<AgentSource>>>);

impl std::fmt::Debug for AgentGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentGauges")
    }
}

impl Collector for AgentGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots: Vec<AgentSnapshot> = {
            let sources = self.0.lock().unwrap_or_else(|p| p.into_inner());
            sources.iter().filter_map(|f| f()).collect()
        };
        let agent = |s: &AgentSnapshot| ("agent", s.hostname.clone());
        encode_counts(
            &mut encoder,
            "smack_agent_tasks",
            "Tasks an agent runs or has yet to report, by state.",
            snapshots.iter().flat_map(|s| {
                TASK_STATES.iter().map(move |st| {
                    (vec![agent(s), ("state", st.as_str().to_string())], s.tasks.get(st).copied().unwrap_or(0))
                })
            }),
        )?;
        encode_counts(
            &mut encoder,
            "smack_agent_volume_used_bytes",
            "Bytes used on each persistent volume of an agent.",
            snapshots
                .iter()
                .flat_map(|s| s.volumes.iter().map(move |(v, bytes)| (vec![agent(s), ("volume", v.clone())], *bytes))),
        )
    }
}

/// The agents' families. One set serves every agent of a process (each
/// sample carries its agent's host name), so `smack up` registers it once.
#[derive(Default)]
pub struct AgentMetrics {
    launches: Family<Labels, Counter>,
    kills: Family<Labels, Counter>,
    health_check_failures: Family<Labels, Counter>,
    sources: Arc<Mutex<Vec<AgentSource>>>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics")
            .field("launches", &self.launches)
            .field("kills", &self.kills)
            .field("health_check_failures", &self.health_check_failures)
            .finish_non_exhaustive()
    }
}

impl AgentMetrics {
    pub fn new() -> Arc<AgentMetrics> {
        Arc::new(AgentMetrics::default())
    }

    /// Registers the agent families in `registry` (once per registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("smack_agent_launches", "Task processes an agent started", self.launches.clone());
        registry.register(
            "smack_agent_kills",
            "Kills an agent was asked for (by a framework, or on shutdown)",
            self.kills.clone(),
        );
        registry.register(
            "smack_agent_health_check_failures",
            "Failed health checks of an agent's tasks",
            self.health_check_failures.clone(),
        );
        registry.register_collector(Box::new(AgentGauges(self.sources.clone())));
    }

    /// Adds an agent: its counters start at zero, and its gauges are read by
    /// `snapshot` on each scrape (None: the agent is gone, no gauges).
    pub fn add_agent(&self, agent: &str, snapshot: impl Fn() -> Option<AgentSnapshot> + Send + Sync + 'static) {
        let labels = Self::labels(agent);
        for family in [&self.launches, &self.kills, &self.health_check_failures] {
            drop(family.get_or_create(&labels));
        }
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(snapshot));
    }

    fn labels(agent: &str) -> Labels {
        vec![("agent", agent.to_string())]
    }

    pub fn launched(&self, agent: &str) {
        self.launches.get_or_create(&Self::labels(agent)).inc();
    }

    pub fn killed(&self, agent: &str) {
        self.kills.get_or_create(&Self::labels(agent)).inc();
    }

    pub fn health_checks_failed(&self, agent: &str, n: u64) {
        self.health_check_failures.get_or_create(&Self::labels(agent)).inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{encode, new_registry};

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn agents_share_one_set_of_families() {
        let reg = new_registry();
        let m = AgentMetrics::new();
        m.register(&mut reg.write().unwrap());
        for host in ["127.0.1.1", "127.0.1.2"] {
            let h = host.to_string();
            m.add_agent(host, move || {
                Some(AgentSnapshot {
                    hostname: h.clone(),
                    tasks: [(TaskState::Running, 1)].into(),
                    volumes: [("v1".to_string(), 123)].into(),
                })
            });
        }
        m.add_agent("127.0.1.3", || None);
        m.launched("127.0.1.1");
        m.killed("127.0.1.2");
        m.health_checks_failed("127.0.1.2", 1);
        let text = encode(&reg);
        assert_eq!(text.matches("# TYPE smack_agent_tasks gauge").count(), 1, "{text}");
        assert!(line(&text, "smack_agent_launches_total{agent=\"127.0.1.1\"} 1").is_some(), "{text}");
        assert!(line(&text, "smack_agent_kills_total{agent=\"127.0.1.2\"} 1").is_some(), "{text}");
        assert!(line(&text, "smack_agent_health_check_failures_total{agent=\"127.0.1.2\"} 1").is_some(), "{text}");
        assert!(line(&text, "smack_agent_tasks{agent=\"127.0.1.2\",state=\"RUNNING\"} 1").is_some(), "{text}");
        assert!(line(&text, "smack_agent_tasks{agent=\"127.0.1.1\",state=\"LOST\"} 0").is_some(), "{text}");
        assert!(line(&text, "smack_agent_kills_total{agent=\"127.0.1.3\"} 0").is_some(), "{text}");
        assert!(!text.contains("smack_agent_tasks{agent=\"127.0.1.3\""), "{text}");
        assert!(!text.contains(".."), "{text}");
        assert!(
            line(&text, "smack_agent_volume_used_bytes{agent=\"127.0.1.1\",volume=\"v1\"} 123").is_some(),
            "{text}"
        );
    }
}
