//! Placement scenarios: `prefer:` waits a few rounds for its host, then
//! takes the best other fit; zone limits hold.

use super::sim;
use crate::scheduler::evaluator::PREFER_WAIT_ROUNDS;
use crate::scheduler::sim::launches;

fn preferring(host: &str) -> String {
    format!(
        "name: hello
pods:
  hello:
    count: 1
    resources: {{ cpus: 1, mem: 256 }}
    prefer:
      - {{ hostname: {host}, zone: z2 }}
    tasks:
      server: {{ cmd: ./server }}
"
    )
}

#[test]
fn sim_a_preference_takes_its_host_among_several_fits() {
    let mut s = sim(&preferring("a3"));
    let d = s.offer_all();
    assert_eq!(launches(&d).len(), 1);
    assert_eq!(s.pod("hello-0").agent_id.as_deref(), Some("a3"));
}

#[test]
fn sim_a_preference_waits_for_its_host_then_gives_up() {
    let mut s = sim(&preferring("a3"));
    for round in 1..=PREFER_WAIT_ROUNDS {
        let d = s.offer(&["a1", "a2"]);
        assert!(d.accepts.is_empty(), "round {round} waits for a3");
        assert_eq!(s.pod("hello-0").prefer_waits, round);
        assert!(s.pod("hello-0").waiting.as_ref().unwrap().contains("preferred agent a3"));
    }
    let d = s.offer(&["a1", "a2"]);
    assert_eq!(launches(&d).len(), 1);
    assert_eq!(s.pod("hello-0").agent_id.as_deref(), Some("a2"), "the preferred zone next");
    assert_eq!(s.pod("hello-0").prefer_waits, 0);
}

#[test]
fn sim_zone_limits_hold_across_offers() {
    let yaml = "name: hello
pods:
  hello:
    count: 3
    resources: { cpus: 1, mem: 256 }
    placement:
      - max-per: { zone: 1 }
    tasks:
      server: { cmd: ./server }
";
    let mut s = sim(yaml);
    s.add_agent("a4", "z1");
    s.settle(20);
    let mut zones: Vec<String> =
        s.state.pods.values().map(|p| p.attributes.get("zone").cloned().unwrap_or_default()).collect();
    zones.sort();
    assert_eq!(zones, ["z1", "z2", "z3"]);
}
