//! The master's metric families: agents, resources by role, offers,
//! operations and allocation cycles (`smack_master_*`).

use crate::metrics::{encode_counts, encode_gauges, Labels};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;
use std::collections::BTreeMap;
use std::time::Duration;

/// Resources as the metrics report them: cpus, mem (MiB), disk (MiB).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceSums {
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
}

impl ResourceSums {
    pub fn add(&mut self, r: &crate::resources::Resources) {
        self.cpus += r.cpus;
        self.mem += r.mem as f64;
        self.disk += r.total_disk() as f64;
    }

    fn labelled(&self, role: Option<&str>) -> [(Labels, f64); 3] {
        let l = |resource: &str| {
            let mut v = vec![("resource", resource.to_string())];
            if let Some(role) = role {
                v.push(("role", role.to_string()));
            }
            v
        };
        [(l("cpus"), self.cpus), (l("mem"), self.mem), (l("disk"), self.disk)]
    }
}

/// What the master's gauges show, read from its ledger on each scrape.
#[derive(Debug, Clone, Default)]
pub struct MasterSnapshot {
    pub agents_reachable: u64,
    pub agents_unreachable: u64,
    /// Total resources of the reachable agents.
    pub capacity: ResourceSums,
    /// Reserved on reachable agents, by role.
    pub reserved: BTreeMap<String, ResourceSums>,
    /// Used by live tasks on reachable agents, by the tasks' role.
    pub used: BTreeMap<String, ResourceSums>,
    pub frameworks_connected: u64,
}

type SnapshotFn = Box<dyn Fn() -> Option<MasterSnapshot> + Send + Sync>;

struct MasterGauges(SnapshotFn);

impl std::fmt::Debug for MasterGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterGauges")
    }
}

impl Collector for MasterGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = (self.0)() else { return Ok(()) };
        encode_counts(
            &mut encoder,
            "smack_master_agents",
            "Agents known to the master, by state.",
            [
                (vec![("state", "REACHABLE".to_string())], s.agents_reachable),
                (vec![("state", "UNREACHABLE".to_string())], s.agents_unreachable),
            ],
        )?;
        encode_gauges(
            &mut encoder,
            "smack_master_resources_capacity",
            "Total resources of the reachable agents (cpus in cores, mem and disk in MiB).",
            s.capacity.labelled(None),
        )?;
        encode_gauges(
            &mut encoder,
            "smack_master_resources_reserved",
            "Resources reserved on reachable agents, by role (cpus in cores, mem and disk in MiB).",
            s.reserved.iter().flat_map(|(role, r)| r.labelled(Some(role))),
        )?;
        encode_gauges(
            &mut encoder,
            "smack_master_resources_used",
            "Resources used by live tasks on reachable agents, by role (cpus in cores, mem and disk in MiB).",
            s.used.iter().flat_map(|(role, r)| r.labelled(Some(role))),
        )?;
        encode_counts(
            &mut encoder,
            "smack_master_frameworks_connected",
            "Frameworks with an open subscription stream.",
            [(Vec::new(), s.frameworks_connected)],
        )
    }
}

/// The master's counters and histogram; its gauges come from a snapshot
/// function given to [`MasterMetrics::register`].
#[derive(Debug)]
pub struct MasterMetrics {
    offers_made: Counter,
    offers_declined: Counter,
    offers_rescinded: Counter,
    allocation_cycle: Histogram,
    operations: Family<Labels, Counter>,
}

impl Default for MasterMetrics {
    fn default() -> Self {
        MasterMetrics {
            offers_made: Counter::default(),
            offers_declined: Counter::default(),
            offers_rescinded: Counter::default(),
            // 100µs … ~3.3s.
            allocation_cycle: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            operations: Family::default(),
        }
    }
}

impl MasterMetrics {
    /// Registers every master family in `registry`; `snapshot` is called on
    /// each scrape for the gauges (None: the master is gone, no gauges).
    pub fn register(
        &self,
        registry: &mut Registry,
        snapshot: impl Fn() -> Option<MasterSnapshot> + Send + Sync + 'static,
    ) {
        registry.register("smack_master_offers_made", "Offers sent to frameworks", self.offers_made.clone());
        registry.register(
            "smack_master_offers_declined",
            "Offers declined by frameworks",
            self.offers_declined.clone(),
        );
        registry.register(
            "smack_master_offers_rescinded",
            "Offers rescinded by the master (timeout, agent lost, framework gone, agent re-registered)",
            self.offers_rescinded.clone(),
        );
        registry.register(
            "smack_master_operations",
            "Operations in accepts, by type and result (an accept is all-or-nothing: a refused accept refuses each of its operations)",
            self.operations.clone(),
        );
        registry.register_with_unit(
            "smack_master_allocation_cycle",
            "Duration of one allocation cycle of the master (timeouts, rescinds, DRF allocation, offers sent)",
            Unit::Seconds,
            self.allocation_cycle.clone(),
        );
        registry.register_collector(Box::new(MasterGauges(Box::new(snapshot))));
    }

    pub fn offers_made(&self, n: u64) {
        self.offers_made.inc_by(n);
    }

    pub fn offer_declined(&self) {
        self.offers_declined.inc();
    }

    pub fn offer_rescinded(&self) {
        self.offers_rescinded.inc();
    }

    pub fn allocation_cycle(&self, took: Duration) {
        self.allocation_cycle.observe(took.as_secs_f64());
    }

    /// Counts one operation of an accept by its type (`RESERVE`, `LAUNCH`, …).
    pub fn operation(&self, kind: &str, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.operations.get_or_create(&vec![("type", kind.to_string()), ("result", result.to_string())]).inc();
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
    fn master_families_encode_as_openmetrics() {
        let reg = new_registry();
        let m = MasterMetrics::default();
        m.register(&mut reg.write().unwrap(), || {
            let mut s = MasterSnapshot { agents_reachable: 2, frameworks_connected: 1, ..Default::default() };
            s.capacity.cpus = 4.0;
            s.reserved.entry("store".into()).or_default().cpus = 0.5;
            Some(s)
        });
        m.offers_made(3);
        m.offer_declined();
        m.operation("RESERVE", true);
        m.operation("LAUNCH", false);
        m.allocation_cycle(Duration::from_millis(2));
        let text = encode(&reg);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            line(&text, "smack_master_agents{state=\"REACHABLE\"}"),
            Some("smack_master_agents{state=\"REACHABLE\"} 2")
        );
        assert!(line(&text, "smack_master_agents{state=\"UNREACHABLE\"} 0").is_some(), "{text}");
        assert!(line(&text, "smack_master_offers_made_total 3").is_some(), "{text}");
        assert!(line(&text, "smack_master_offers_declined_total 1").is_some(), "{text}");
        assert!(line(&text, "smack_master_offers_rescinded_total 0").is_some(), "{text}");
        assert!(
            line(&text, "smack_master_operations_total{type=\"RESERVE\",result=\"applied\"} 1").is_some(),
            "{text}"
        );
        assert!(line(&text, "smack_master_operations_total{type=\"LAUNCH\",result=\"refused\"} 1").is_some(), "{text}");
        assert!(
            line(&text, "smack_master_resources_reserved{resource=\"cpus\",role=\"store\"} 0.5").is_some(),
            "{text}"
        );
        assert!(line(&text, "smack_master_resources_capacity{resource=\"cpus\"} 4").is_some(), "{text}");
        assert!(line(&text, "smack_master_allocation_cycle_seconds_count 1").is_some(), "{text}");
        assert!(line(&text, "smack_master_frameworks_connected 1").is_some(), "{text}");
    }
}
