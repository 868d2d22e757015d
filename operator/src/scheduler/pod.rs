//! Pod identity and phase: a [`PodInstance`] is a pod type and its index,
//! named `<type>-<index>` (`broker-0`, `my-db-12`); a [`PodPhase`] is where
//! a pod is in its life, as the API, `pod list` and the metrics show it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One instance of a pod type: `broker-2` is index 2 of type `broker`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodInstance {
    pub pod_type: String,
    pub index: u32,
}

impl PodInstance {
    pub fn new(pod_type: impl Into<String>, index: u32) -> PodInstance {
        PodInstance { pod_type: pod_type.into(), index }
    }

    /// Reads `<type>-<index>`; `None` when the name does not end in `-N`.
    pub fn parse(name: &str) -> Option<PodInstance> {
        let (pod_type, index) = name.rsplit_once('-')?;
        if pod_type.is_empty() || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(PodInstance { pod_type: pod_type.to_string(), index: index.parse().ok()? })
    }

    /// The pod type of an instance name; the whole name when it has no index.
    pub fn type_of(name: &str) -> String {
        PodInstance::parse(name).map(|p| p.pod_type).unwrap_or_else(|| name.to_string())
    }

    /// `<type>-<index>`.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for PodInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.pod_type, self.index)
    }
}

/// Where a pod is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PodPhase {
    /// Every current task runs.
    Running,
    /// Launched, not every task running yet (or some ended, some not).
    Starting,
    /// No placement yet, or waiting for an offer.
    #[default]
    Waiting,
    /// In maintenance (`pod pause`).
    Paused,
    /// Its agent is unreachable: its task was reported LOST.
    Lost,
    /// Every current task ended.
    Stopped,
}

impl PodPhase {
    /// Every phase, in the order the metrics list them.
    pub const ALL: [PodPhase; 6] =
        [PodPhase::Running, PodPhase::Starting, PodPhase::Waiting, PodPhase::Paused, PodPhase::Lost, PodPhase::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Running => "RUNNING",
            PodPhase::Starting => "STARTING",
            PodPhase::Waiting => "WAITING",
            PodPhase::Paused => "PAUSED",
            PodPhase::Lost => "LOST",
            PodPhase::Stopped => "STOPPED",
        }
    }
}

impl fmt::Display for PodPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_read_and_print_type_dash_index() {
        assert_eq!(PodInstance::parse("broker-0"), Some(PodInstance::new("broker", 0)));
        assert_eq!(PodInstance::parse("my-db-12"), Some(PodInstance::new("my-db", 12)));
        assert_eq!(PodInstance::parse("db"), None);
        assert_eq!(PodInstance::parse("db-"), None);
        assert_eq!(PodInstance::parse("db-x"), None);
        assert_eq!(PodInstance::parse("-3"), None);
        assert_eq!(PodInstance::new("my-db", 12).to_string(), "my-db-12");
        assert_eq!(PodInstance::type_of("my-db-12"), "my-db");
        assert_eq!(PodInstance::type_of("db"), "db");
    }

    #[test]
    fn phases_serialize_as_the_metrics_spell_them() {
        for p in PodPhase::ALL {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
    }
}
