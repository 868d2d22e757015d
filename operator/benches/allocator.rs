//! Benchmark of one DRF allocation cycle on a simulated cluster of 10,000
//! agents and 1,000 frameworks (200 roles, weights, reservations, suppressed
//! frameworks and declined-offer filters), the scale Mesos's allocator
//! benchmarks use. Each iteration allocates on a fresh clone of the state.
//!
//! Run: `cargo bench -p smack-operator --bench allocator`

#[path = "common/rng.rs"]
mod rng;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rng::Rng;
use smack_operator::master::allocator::{Allocator, AllocatorConfig};
use smack_operator::resources::{Attributes, PortRange, PortSet, Reservation, ReservedOffer, Resources};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const AGENTS: usize = 10_000;
const FRAMEWORKS: usize = 1_000;
const ROLES: usize = 200;
const GIB: u64 = 1024;
/// The time the cycle runs at; filters are set around it.
const NOW_MS: u64 = 1_000_000;

/// The simulated cluster: agents of 32 cpus / 128 GiB / 1 TiB with ports,
/// each partly used; one in five carries one or two reservations; frameworks
/// hold allocations, one in ten has weight 2, one in twenty is suppressed,
/// and each has declined `filters_per_framework` agents (three quarters of
/// the filters still active at `NOW_MS`, the rest expired).
fn cluster(filters_per_framework: usize) -> Allocator {
    let mut rng = Rng(42);
    let mut al = Allocator::new(AllocatorConfig { seed: 1, ..AllocatorConfig::default() });
    let ports = PortSet::from_ranges([PortRange::new(31000, 32000)]);
    for i in 0..AGENTS {
        let mut attributes = Attributes::new();
        attributes.insert("zone".into(), format!("zone-{}", i % 3));
        let mut total = Resources::new(32.0, 128 * GIB, 1024 * GIB).with_ports(ports.clone());
        if i % 4 == 0 {
            total = total.with_mount("/mnt/disk0", 2048 * GIB);
        }
        let id = format!("agent-{i:05}");
        al.add_agent(id.clone(), total.clone(), attributes);
        let used_cpus = rng.below(24) as f64;
        let used_mem = rng.below(96) * GIB;
        let mut free = Resources::new(32.0 - used_cpus, 128 * GIB - used_mem, 512 * GIB)
            .with_ports(PortSet::from_ranges([PortRange::new(31000 + rng.below(500) as u16, 32000)]));
        if i % 4 == 0 && rng.below(2) == 0 {
            free = free.with_mount("/mnt/disk0", 2048 * GIB);
        }
        let mut reserved = Vec::new();
        if i % 5 == 0 {
            for k in 0..1 + rng.below(2) {
                let role = format!("role-{:03}", rng.below(ROLES as u64));
                let r = Resources::new(2.0, 8 * GIB, 64 * GIB);
                let bundle = ReservedOffer {
                    reservation: Reservation {
                        id: format!("{id}-res-{k}"),
                        role: role.clone(),
                        resources: r.clone(),
                        labels: BTreeMap::new(),
                        volumes: Vec::new(),
                    },
                    free: r,
                };
                reserved.push((role, bundle));
            }
        }
        al.update_agent(&id, free, reserved);
    }
    for f in 0..FRAMEWORKS {
        let id = format!("framework-{f:04}");
        let weight = if f % 10 == 0 { 2.0 } else { 1.0 };
        al.add_framework(id.clone(), format!("role-{:03}", f % ROLES), weight);
        let held = Resources::new(rng.below(200) as f64, rng.below(800) * GIB, rng.below(4000) * GIB);
        al.add_allocation(&id, &held);
        if f % 20 == 0 {
            al.suppress(&id);
        }
        for _ in 0..filters_per_framework {
            let agent = format!("agent-{:05}", rng.below(AGENTS as u64));
            let since = NOW_MS - rng.below(20_000);
            al.decline(&id, &agent, Some(5_000 + rng.below(15_000) * 3 / 2), since);
        }
    }
    al
}

fn bench_cycle(c: &mut Criterion, name: &str, filters_per_framework: usize) {
    let state = cluster(filters_per_framework);
    let offers = state.clone().allocate(NOW_MS).len();
    let mut group = c.benchmark_group("allocator");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.bench_function(name, |b| {
        b.iter_batched(|| state.clone(), |mut al| black_box(al.allocate(black_box(NOW_MS))), BatchSize::LargeInput)
    });
    group.finish();

    // Offers per second, from plain timings of the same cycle.
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let mut al = state.clone();
            let start = Instant::now();
            black_box(al.allocate(NOW_MS));
            start.elapsed()
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "{name}: {AGENTS} agents, {FRAMEWORKS} frameworks, {} filters set: \
         median cycle {:.2} ms, {offers} offers, {:.0} offers/s \
         (Mesos 1.8: ~1.1 s per cycle; goal < 100 ms)",
        FRAMEWORKS * filters_per_framework,
        median.as_secs_f64() * 1e3,
        offers as f64 / median.as_secs_f64(),
    );
}

fn allocation_cycle(c: &mut Criterion) {
    bench_cycle(c, "cycle_10k_agents_1k_frameworks", 20);
    bench_cycle(c, "cycle_10k_agents_1k_frameworks_heavy_filters", 500);
}

criterion_group!(benches, allocation_cycle);
criterion_main!(benches);
