//! Scheduler scenarios on the simulation: each sends offers and statuses
//! and checks the decisions and the state. Neutral services only: `hello`
//! (one task with a readiness check), `db` (an essential node and a
//! non-essential sidecar) and `broker` (a decommission hook).

mod decommission;
mod deploy;
mod operator;
mod placement;
mod recovery;

use super::Sim;

/// Two `hello` pods, one per host, each with a port and a ROOT volume and
/// a readiness check.
pub const HELLO: &str = r#"name: hello
pods:
  hello:
    count: 2
    resources:
      cpus: 1
      mem: 512
      ports:
        http: { port: 0 }
    volumes:
      - { path: data, type: ROOT, size: 1024 }
    placement:
      - unique: hostname
    tasks:
      server:
        cmd: ./server --port $PORT_HTTP
        readiness-check: { http: { port: http, path: /ready } }
        health-check: { tcp: http }
"#;

/// One `db` pod: an essential node and a non-essential sidecar.
pub const DB: &str = r#"name: db
pods:
  db:
    count: 1
    resources:
      cpus: 2
      mem: 1024
      ports:
        client: { port: 0 }
    volumes:
      - { path: data, type: ROOT, size: 2048 }
    tasks:
      node: { cmd: ./node }
      sidecar: { cmd: ./exporter, essential: false }
"#;

/// Three `broker` pods that may be decommissioned, with a drain hook.
pub const BROKER: &str = r#"name: broker
pods:
  broker:
    count: 3
    allow-decommission: true
    resources:
      cpus: 1
      mem: 1024
      ports:
        client: { port: 0 }
    volumes:
      - { path: log, type: ROOT, size: 1024 }
    placement:
      - unique: hostname
    hooks:
      decommission: { cmd: ./drain.sh, cpus: 0.5, mem: 128 }
    tasks:
      broker: { cmd: ./broker }
"#;

/// A sim of `yaml` with agents `a1`, `a2`, `a3` in zones z1, z2, z3.
pub fn sim(yaml: &str) -> Sim {
    let mut s = Sim::new(yaml).unwrap_or_else(|e| panic!("the spec should open: {e}"));
    s.add_agent("a1", "z1").add_agent("a2", "z2").add_agent("a3", "z3");
    s
}

/// A sim of `yaml` with its deploy plan complete.
pub fn deployed(yaml: &str) -> Sim {
    let mut s = sim(yaml);
    s.settle(20);
    assert!(s.plan("deploy").is_complete(), "deploy should complete: {:#?}", s.plan("deploy"));
    s
}
