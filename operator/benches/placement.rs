//! Benchmark of the offer evaluator with placement rules: 100,000 pods
//! (1,000 pod types × 100 instances) placed on 10,000 simulated agents in 5
//! zones, one core. Every pod type has `unique: hostname` and
//! `max-per: {zone: 20}` (exactly 100 over 5 zones, so the last pods of a
//! type must find the one zone with room); every odd pod type also has
//! `colocate-with` the type before it. Each pod is evaluated against offers until one matches;
//! the match's RESERVE is applied to the simulated agent and the pod enters
//! the placement view, as the scheduler would do.
//!
//! Offers arrive from random agents (a fixed seed, so every run does the
//! same work); a colocated pod is offered the agents its partner type runs
//! on, which the view lists without a scan.
//!
//! Run: `cargo bench -p smack-operator --bench placement`

#[path = "common/rng.rs"]
mod rng;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rng::Rng;
use smack_operator::resources::{Attributes, Offer, Operation, PortRange, PortSet, Resources};
use smack_operator::scheduler::evaluator::{evaluate, PodRequirement, VolumeKind};
use smack_operator::scheduler::placement::{PlacementRule, PlacementView};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const AGENTS: usize = 10_000;
const ZONES: usize = 5;
const POD_TYPES: usize = 1_000;
const INSTANCES: usize = 100;
const MAX_PER_ZONE: usize = 20;
const GIB: u64 = 1024;

/// One offer per agent: 32 cpus, 128 GiB, 1 TiB ROOT disk, 2,000 ports;
/// attributes hostname, zone (5) and rack (20 per zone).
fn agents() -> Vec<Offer> {
    (0..AGENTS)
        .map(|i| {
            let hostname = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            let mut attributes = Attributes::new();
            attributes.insert("hostname".into(), hostname.clone());
            attributes.insert("zone".into(), format!("zone-{}", i % ZONES));
            attributes.insert("rack".into(), format!("rack-{}-{}", i % ZONES, (i / ZONES) % 20));
            Offer {
                id: format!("offer-{i:05}"),
                framework_id: "bench".into(),
                agent_id: format!("agent-{i:05}"),
                hostname,
                attributes,
                unreserved: Resources::new(32.0, 128 * GIB, 1024 * GIB)
                    .with_ports(PortSet::from_ranges([PortRange::new(31000, 32999)])),
                reserved: Vec::new(),
            }
        })
        .collect()
}

fn pod_type(t: usize) -> String {
    format!("svc{t:04}")
}

/// What one pod needs: a quarter cpu, 512 MiB, a dynamic port, a 1 GiB
/// ROOT volume, and the rules.
fn requirement(t: usize, index: usize) -> PodRequirement {
    let name = pod_type(t);
    let mut req = PodRequirement::new(&name, index, format!("bench-{name}-{index}-r0"), 0.25, 512)
        .port("http", 0)
        .volume("data", GIB, VolumeKind::Root)
        .rule(PlacementRule::unique("hostname"))
        .rule(PlacementRule::max_per("zone", MAX_PER_ZONE));
    if t % 2 == 1 {
        req = req.rule(PlacementRule::colocate_with(pod_type(t - 1)));
    }
    req
}

/// What one run measured.
struct Run {
    elapsed: Duration,
    placed: usize,
    evaluations: usize,
    /// Nanoseconds of each evaluation, when recorded.
    eval_ns: Vec<u64>,
}

/// Places every pod; with `record`, times each evaluation on its own.
/// Returns the run's figures and the final placement view.
fn simulate(mut offers: Vec<Offer>, record: bool) -> (Run, PlacementView) {
    let index: HashMap<String, usize> = offers.iter().enumerate().map(|(i, o)| (o.agent_id.clone(), i)).collect();
    let mut view = PlacementView::new();
    let mut rng = Rng(7);
    let mut evaluations = 0;
    let mut placed = 0;
    let mut eval_ns = Vec::with_capacity(if record { 2 * POD_TYPES * INSTANCES } else { 0 });
    let start = Instant::now();
    for t in 0..POD_TYPES {
        // Colocated pods are offered the agents their partner runs on.
        let partners: Option<Vec<usize>> =
            (t % 2 == 1).then(|| view.agents_running(&pod_type(t - 1)).map(|a| index[a]).collect());
        for i in 0..INSTANCES {
            let req = requirement(t, i);
            let mut attempt = 0;
            loop {
                let k = match &partners {
                    Some(p) => p[(i + attempt) % p.len()],
                    None => rng.below(AGENTS as u64) as usize,
                };
                let e = if record {
                    let t0 = Instant::now();
                    let e = evaluate(&req, &offers[k], &view);
                    eval_ns.push(t0.elapsed().as_nanos() as u64);
                    e
                } else {
                    evaluate(&req, &offers[k], &view)
                };
                evaluations += 1;
                if let Some(m) = e.matched {
                    if let Some(Operation::Reserve { resources, .. }) = m.operations.first() {
                        offers[k].unreserved.subtract(resources);
                    }
                    let o = &offers[k];
                    view.insert(&req.pod_type, req.index, &o.agent_id, &o.attributes);
                    placed += 1;
                    break;
                }
                attempt += 1;
                assert!(attempt < 10 * AGENTS, "{} found no agent: {:?}", req.name(), e.outcomes);
            }
        }
    }
    let run = Run { elapsed: start.elapsed(), placed, evaluations, eval_ns };
    (run, view)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn placement(c: &mut Criterion) {
    let offers = agents();
    let mut group = c.benchmark_group("placement");
    group.sample_size(10).measurement_time(Duration::from_secs(15));
    group.bench_function("place_100k_pods_on_10k_agents", |b| {
        b.iter_batched(|| offers.clone(), |o| black_box(simulate(o, false).0.placed), BatchSize::LargeInput)
    });

    // One evaluation against a full view (100,000 pods): a new pod of a
    // colocated type, against offers from random agents.
    let (done, view) = simulate(offers.clone(), false);
    assert_eq!(done.placed, POD_TYPES * INSTANCES);
    let extra = requirement(POD_TYPES - 1, INSTANCES);
    let mut rng = Rng(11);
    group.bench_function("evaluate_one_offer_view_100k_pods", |b| {
        b.iter(|| {
            let k = rng.below(AGENTS as u64) as usize;
            black_box(evaluate(black_box(&extra), &offers[k], &view))
        })
    });
    group.finish();

    // Plain timings: placements/s from three untimed-inside runs, and the
    // distribution of single evaluations from a run timing each one.
    let mut runs: Vec<Duration> = (0..3).map(|_| simulate(offers.clone(), false).0.elapsed).collect();
    runs.sort();
    let median = runs[1];
    let (full, _) = simulate(offers.clone(), true);
    let mut ns = full.eval_ns;
    ns.sort_unstable();
    let placed = POD_TYPES * INSTANCES;
    println!(
        "placement: {AGENTS} agents in {ZONES} zones, {placed} pods ({POD_TYPES} types x {INSTANCES}), \
         rules unique hostname + max-per zone={MAX_PER_ZONE} (+ colocate-with on odd types), one core"
    );
    println!(
        "  whole run: median of 3 {:.3} s -> {:.0} placements/s; {} evaluations ({:.2} per placement, {:.0} evaluations/s)",
        median.as_secs_f64(),
        placed as f64 / median.as_secs_f64(),
        full.evaluations,
        full.evaluations as f64 / placed as f64,
        full.evaluations as f64 / median.as_secs_f64(),
    );
    println!(
        "  one evaluation (Instant around each of {}): p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us",
        ns.len(),
        percentile(&ns, 0.50) as f64 / 1e3,
        percentile(&ns, 0.99) as f64 / 1e3,
        percentile(&ns, 0.999) as f64 / 1e3,
        *ns.last().unwrap_or(&0) as f64 / 1e3,
    );
    println!(
        "  (kube-scheduler CI minimum at 5,000 nodes: 680-810 pods/s plain, 60 pods/s with required anti-affinity; \
         Nomad C2M: ~1,500 containers/s; goal > 10,000 placements/s)"
    );
}

criterion_group!(benches, placement);
criterion_main!(benches);
