//! The control plane at scale, on paper: a simulated cluster of agents (in
//! this process, no task processes) and services deploying their pods
//! through the real master (registry, DRF allocator, ledger, offers, its
//! file store's durable writes) and the real scheduler decisions
//! (`decide::on_offers`, `on_status`), each service's state written to its
//! store before its accepts go out, as the scheduler's driver does. Prints
//! pods placed per second end to end and where the time went.
//!
//! Run: `cargo bench -p smack-operator --bench control_plane -- --agents 10000 --services 1000 --pods 100`
//! (defaults: 10,000 agents, 1,000 services of 100 pods; `--store memory`
//! drops the durable writes to show what they cost).

use smack_operator::master::{Master, MasterConfig};
use smack_operator::protocol::{AgentEvent, Decline, FrameworkEvent, RegisterAgent, Subscribe};
use smack_operator::resources::{now_ms, Attributes, Operation, PortRange, PortSet, Resources, TaskState, TaskStatus};
use smack_operator::scheduler::service::decide::{self, OfferCall, OfferFlow, SeqIds};
use smack_operator::scheduler::service::{commands, SchedulerState};
use smack_operator::scheduler::spec::ServiceSpec;
use smack_operator::state::{FileStore, MemoryStore, StateStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

struct Args {
    agents: usize,
    services: usize,
    pods: usize,
    memory: bool,
}

fn args() -> Args {
    let mut a = Args { agents: 10_000, services: 1_000, pods: 100, memory: false };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = |i: usize| v.get(i + 1).and_then(|s| s.parse::<usize>().ok());
        match v[i].as_str() {
            "--agents" => a.agents = next(i).expect("--agents N"),
            "--services" => a.services = next(i).expect("--services N"),
            "--pods" => a.pods = next(i).expect("--pods N"),
            "--store" => a.memory = v.get(i + 1).map(String::as_str) == Some("memory"),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// A service of `pods` one-task pods, each with a ROOT volume and a port,
/// at most one per host.
fn spec_yaml(name: &str, pods: usize) -> String {
    format!(
        "name: {name}
pods:
  node:
    count: {pods}
    resources:
      cpus: 0.1
      mem: 64
      ports:
        api: 0
    volumes:
      - path: data
        type: ROOT
        size: 16
    placement:
      - unique: hostname
    tasks:
      server:
        cmd: sleep 3600
        goal: RUNNING
"
    )
}

struct Service {
    spec: ServiceSpec,
    state: SchedulerState,
    framework_id: String,
    events: UnboundedReceiver<FrameworkEvent>,
    flow: OfferFlow,
    ids: SeqIds,
    key: String,
    running: usize,
}

#[derive(Default)]
struct Spent {
    allocate: Duration,
    decide: Duration,
    persist: Duration,
    accept: Duration,
    status: Duration,
    persists: u64,
    accepts: u64,
    cycles: u64,
}

fn persist(store: &dyn StateStore, s: &Service, spent: &mut Spent) {
    let t = Instant::now();
    let bytes = serde_json::to_vec(&s.state).expect("state encodes");
    store.put(&s.key, &bytes).expect("scheduler state written");
    spent.persist += t.elapsed();
    spent.persists += 1;
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let (master_store, sched_store): (Arc<dyn StateStore>, Arc<dyn StateStore>) = if a.memory {
        (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()))
    } else {
        (
            Arc::new(FileStore::open(dir.path().join("master")).expect("master store")),
            Arc::new(FileStore::open(dir.path().join("scheduler")).expect("scheduler store")),
        )
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = rt.enter();
    let config = MasterConfig {
        // Nothing heartbeats here: no agent may be found silent.
        agent_timeout: Duration::from_secs(86_400),
        ..MasterConfig::default()
    };
    let master = Master::open(master_store, config, "bench".into()).expect("master");

    let setup = Instant::now();
    let mut agents = Vec::with_capacity(a.agents);
    for i in 0..a.agents {
        let host = format!("h{i:05}");
        let attributes: Attributes =
            [("hostname".to_string(), host.clone()), ("zone".to_string(), format!("zone-{}", i % 3))].into();
        let total =
            Resources::new(32.0, 131_072, 1_048_576).with_ports(PortSet::from_ranges([PortRange::new(20_000, 20_999)]));
        let reg = master
            .register_agent(RegisterAgent {
                agent_id: None,
                hostname: host,
                attributes,
                total,
                reservations: Vec::new(),
                tasks: Vec::new(),
                endpoint: None,
            })
            .expect("agent registers");
        let sub = master.agent_events(&reg.agent_id).expect("agent stream");
        agents.push((reg.agent_id, sub));
    }
    let mut services = Vec::with_capacity(a.services);
    for i in 0..a.services {
        let name = format!("svc-{i:04}");
        let (spec, mut state) = commands::open(None, &spec_yaml(&name, a.pods), "bench.yaml").expect("spec");
        let sub = master
            .subscribe(Subscribe {
                framework_id: None,
                name: name.clone(),
                role: spec.role.clone(),
                weight: 1.0,
                api_url: None,
            })
            .expect("framework subscribes");
        let mut flow = OfferFlow::default();
        decide::on_subscribed(&mut state, &sub.framework_id, &mut flow);
        let key = format!("services/{name}/state");
        services.push((
            Service {
                spec,
                state,
                framework_id: sub.framework_id.clone(),
                events: sub.events,
                flow,
                ids: SeqIds::default(),
                key,
                running: 0,
            },
            sub.guard,
        ));
    }
    let total_pods = a.services * a.pods;
    println!(
        "control plane: {} agents, {} services x {} pods = {total_pods} pods, {} store; set up in {:.1}s",
        a.agents,
        a.services,
        a.pods,
        if a.memory { "memory" } else { "file (fsync per write)" },
        setup.elapsed().as_secs_f64()
    );

    let mut spent = Spent::default();
    let started = Instant::now();
    let mut placed = 0usize;
    let mut last_report = Instant::now();
    while placed < total_pods {
        spent.cycles += 1;
        let t = Instant::now();
        master.tick();
        spent.allocate += t.elapsed();
        let mut progressed = false;
        for (s, _) in services.iter_mut() {
            while let Ok(ev) = s.events.try_recv() {
                match ev {
                    FrameworkEvent::Offers { offers } => {
                        let t = Instant::now();
                        let d = decide::on_offers(&mut s.state, &s.spec, &offers, now_ms(), &mut s.ids);
                        spent.decide += t.elapsed();
                        if d.persist {
                            persist(sched_store.as_ref(), s, &mut spent);
                        }
                        let t = Instant::now();
                        for acc in d.accepts {
                            master.accept(&s.framework_id, acc).expect("the master applies the accept");
                            spent.accepts += 1;
                            progressed = true;
                        }
                        if !d.declines.is_empty() {
                            let _ = master.decline(
                                &s.framework_id,
                                Decline { offer_ids: d.declines, filter_ms: Some(decide::DECLINE_FILTER_MS) },
                            );
                        }
                        spent.accept += t.elapsed();
                        match d.offer_call {
                            Some(OfferCall::Suppress) => master.suppress(&s.framework_id).expect("suppress"),
                            Some(OfferCall::Revive) => master.revive(&s.framework_id).expect("revive"),
                            None => {}
                        }
                    }
                    FrameworkEvent::Update { status } => {
                        let t = Instant::now();
                        s.flow.on_status(&status);
                        let d = decide::on_status(&mut s.state, &s.spec, &status, now_ms());
                        spent.decide += t.elapsed();
                        if d.persist {
                            persist(sched_store.as_ref(), s, &mut spent);
                        }
                        if let Some(ack) = d.acknowledge {
                            master.acknowledge(&s.framework_id, ack).expect("ack");
                        }
                        if status.state == TaskState::Running {
                            s.running += 1;
                            placed += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        // The simulated agents: every launch starts at once and is ready.
        let t = Instant::now();
        for (agent_id, sub) in agents.iter_mut() {
            while let Ok(ev) = sub.events.try_recv() {
                if let AgentEvent::Apply { framework_id, operations, .. } = ev {
                    for op in operations {
                        if let Operation::Launch { task } = op {
                            let status = TaskStatus {
                                uuid: format!("{}-running", task.id),
                                task_id: task.id.clone(),
                                framework_id: framework_id.clone(),
                                agent_id: agent_id.clone(),
                                state: TaskState::Running,
                                message: "launched".into(),
                                ready: Some(true),
                                healthy: None,
                                timestamp_ms: now_ms(),
                            };
                            master.status_update(agent_id, status).expect("status update");
                        }
                    }
                }
            }
        }
        spent.status += t.elapsed();
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {placed}/{total_pods} pods running after {:.0}s ({} allocation cycles)",
                started.elapsed().as_secs_f64(),
                spent.cycles
            );
        }
        if !progressed && placed < total_pods && spent.cycles > 20 * total_pods as u64 {
            panic!("no progress: {placed}/{total_pods} pods placed after {} cycles", spent.cycles);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let sum = (spent.allocate + spent.decide + spent.persist + spent.accept + spent.status).as_secs_f64();
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / sum.max(1e-9);
    println!(
        "control plane, {} agents, {} services, {total_pods} pods: {:.0} pods/s end to end ({wall:.1}s, {} allocation cycles, {} accepts, {} scheduler state writes)",
        a.agents,
        a.services,
        total_pods as f64 / wall,
        spent.cycles,
        spent.accepts,
        spent.persists
    );
    println!(
        "  where the time went: allocator {:.1}s ({:.0}%), scheduler decisions {:.1}s ({:.0}%), scheduler state writes {:.1}s ({:.0}%), master accepts and declines (ledger writes) {:.1}s ({:.0}%), agents' status updates (ledger writes) {:.1}s ({:.0}%)",
        spent.allocate.as_secs_f64(),
        pct(spent.allocate),
        spent.decide.as_secs_f64(),
        pct(spent.decide),
        spent.persist.as_secs_f64(),
        pct(spent.persist),
        spent.accept.as_secs_f64(),
        pct(spent.accept),
        spent.status.as_secs_f64(),
        pct(spent.status),
    );
    let unplaced: usize = services.iter().map(|(s, _)| a.pods - s.running.min(a.pods)).sum();
    assert_eq!(unplaced, 0, "every pod runs");
}
