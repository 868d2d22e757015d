//! The random shapes the generators draw from: Zipf-ish popularity over a
//! key population (no tables, O(1) per draw), a shuffle of ranks onto keys,
//! log-normal amounts, and a stateless hash for per-key properties.

use rand::rngs::SmallRng;
use rand::Rng;

/// A well-mixed 64-bit hash of `x` (SplitMix64's finaliser): per-key
/// properties (a card's home country) come from `mix(seed ^ key)`, so they
/// do not depend on the order events were drawn in.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform number in [0, 1) from a hash.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Zipf-ish ranks in `0..n`: rank r (1-based) is drawn with probability
/// proportional to the integral of x^-s over [r, r+1), the continuous
/// power law, which is close to Zipf's r^-s and needs no table.
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    n: u64,
    /// 1 - s, or 0 for s = 1 (logarithmic case).
    a: f64,
    /// (n+1)^(1-s) - 1, or ln(n+1) for s = 1.
    span: f64,
}

impl Zipf {
    pub(crate) fn new(n: u64, s: f64) -> Zipf {
        let n = n.max(1);
        let a = 1.0 - s;
        let top = (n + 1) as f64;
        if a.abs() < 1e-9 {
            Zipf { n, a: 0.0, span: top.ln() }
        } else {
            Zipf { n, a, span: top.powf(a) - 1.0 }
        }
    }

    /// The rank (0-based) for a uniform `u` in [0, 1).
    pub(crate) fn rank(&self, u: f64) -> u64 {
        let x = if self.a == 0.0 { (u * self.span).exp() } else { (1.0 + u * self.span).powf(1.0 / self.a) };
        ((x as u64).saturating_sub(1)).min(self.n - 1)
    }

    pub(crate) fn sample(&self, rng: &mut SmallRng) -> u64 {
        self.rank(rng.random::<f64>())
    }

    /// The probability of rank `r` (0-based).
    pub(crate) fn probability(&self, r: u64) -> f64 {
        let (lo, hi) = ((r + 1) as f64, (r + 2) as f64);
        if self.a == 0.0 {
            (hi.ln() - lo.ln()) / self.span
        } else {
            (hi.powf(self.a) - lo.powf(self.a)) / self.span
        }
    }
}

/// A fixed shuffle of `0..n` (r ↦ (r·a + b) mod n with a coprime to n), so
/// that the most popular keys are spread over the id space, and so over
/// Kafka partitions, instead of being `card-0000001`, `card-0000002`, ….
#[derive(Debug, Clone)]
pub(crate) struct Shuffle {
    n: u64,
    a: u64,
    b: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Shuffle {
    pub(crate) fn new(n: u64, seed: u64) -> Shuffle {
        let n = n.max(1);
        let mut a = (mix(seed) % n) | 1;
        while gcd(a, n) != 1 {
            a = ((a + 2) % n) | 1;
        }
        Shuffle { n, a, b: mix(seed ^ 0x5bd1_e995) % n }
    }

    pub(crate) fn apply(&self, r: u64) -> u64 {
        ((u128::from(r) * u128::from(self.a) + u128::from(self.b)) % u128::from(self.n)) as u64
    }
}

/// A standard normal draw (Box–Muller; one of the pair is used).
pub(crate) fn normal(rng: &mut SmallRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal draw with the given median and shape, clamped to [lo, hi].
pub(crate) fn log_normal(rng: &mut SmallRng, median: f64, sigma: f64, lo: f64, hi: f64) -> f64 {
    (median * (sigma * normal(rng)).exp()).clamp(lo, hi)
}

/// A uniform integer in [lo, hi] (inclusive).
pub(crate) fn between(rng: &mut SmallRng, lo: i64, hi: i64) -> i64 {
    rng.random_range(lo..=hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zipf_ranks_stay_in_range_and_favour_the_top() {
        for s in [0.8, 1.0, 1.2] {
            let z = Zipf::new(1000, s);
            assert_eq!(z.rank(0.0), 0);
            assert_eq!(z.rank(0.999_999_999), 999);
            let mut rng = SmallRng::seed_from_u64(7);
            let mut hits = vec![0u32; 1000];
            for _ in 0..200_000 {
                hits[z.sample(&mut rng) as usize] += 1;
            }
            assert!(hits[0] > hits[9] && hits[9] > hits[99] && hits[99] > hits[999], "s={s}: {hits:?}");
            let expected = z.probability(0) * 200_000.0;
            assert!((f64::from(hits[0]) - expected).abs() < expected * 0.05, "s={s}: {} vs {expected}", hits[0]);
            let total: f64 = (0..1000).map(|r| z.probability(r)).sum();
            assert!((total - 1.0).abs() < 1e-9, "{total}");
        }
    }

    #[test]
    fn a_shuffle_is_a_permutation() {
        for n in [1, 2, 10, 97, 1000, 4096] {
            let sh = Shuffle::new(n, 42);
            let mut seen = vec![false; n as usize];
            for r in 0..n {
                let k = sh.apply(r) as usize;
                assert!(!seen[k], "n={n}: {k} twice");
                seen[k] = true;
            }
        }
    }

    #[test]
    fn log_normal_median_is_close() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut v: Vec<f64> = (0..20_001).map(|_| log_normal(&mut rng, 40.0, 0.8, 0.5, 1e9)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[10_000];
        assert!((median - 40.0).abs() < 2.0, "{median}");
    }
}
