//! Measuring: process CPU time, timed phases with their events/s, push
//! times of the in-memory runtime, nearest-rank percentiles.

use crate::BenchError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Process CPU time (user + system), from `/proc/self/stat`.
pub(crate) fn cpu_time() -> Duration {
    std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_cpu_time(&s)).unwrap_or(Duration::ZERO)
}

/// User + system time from the text of a `/proc/PID/stat` file (fields 14
/// and 15, in ticks of 1/100 s); None when the text does not have them.
pub(crate) fn stat_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces: count from the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// One measured phase.
pub(crate) struct Phase {
    pub(crate) name: String,
    pub(crate) events: u64,
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
    pub(crate) rows_out: u64,
}

impl Phase {
    pub(crate) fn line(&self) -> String {
        let per_s = self.events as f64 / self.wall.as_secs_f64();
        let per_cpu = if self.cpu.is_zero() { f64::NAN } else { self.events as f64 / self.cpu.as_secs_f64() };
        format!(
            "{:<44} {:>10} events {:>8.3} s wall {:>8.3} s cpu {:>12.0} events/s {:>12.0} events/cpu-s {:>8} rows out",
            self.name,
            self.events,
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            per_s,
            per_cpu,
            self.rows_out
        )
    }
    pub(crate) fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
}

/// How long each push of the in-memory runtime phase took: a push that
/// closes windows carries the close (the final query over every key of the
/// window) and stalls the task for that long.
#[derive(Default)]
pub(crate) struct PushTimes {
    /// Per push: milliseconds, rows emitted.
    pub(crate) pushes: Vec<(f64, u64)>,
    /// One checkpoint of the state half-way: how long, how many bytes.
    pub(crate) checkpoint: Option<(Duration, usize)>,
}

impl PushTimes {
    pub(crate) fn note(&mut self, took: Duration, rows: u64) {
        self.pushes.push((took.as_secs_f64() * 1000.0, rows));
    }

    pub(crate) fn report(&self) -> String {
        let mut ms: Vec<f64> = self.pushes.iter().map(|p| p.0).collect();
        ms.sort_by(f64::total_cmp);
        let closing: Vec<&(f64, u64)> = self.pushes.iter().filter(|p| p.1 > 0).collect();
        let worst_close = closing.iter().map(|p| p.0).fold(0.0, f64::max);
        let mut out = format!(
            "  pushes: {} of them, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} emitted rows (slowest of those {:.1} ms)",
            ms.len(),
            percentile(&ms, 0.50),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(0.0),
            closing.len(),
            worst_close
        );
        if let Some((took, bytes)) = self.checkpoint {
            out.push_str(&format!(
                "\n  checkpoint state half-way: {:.1} MB in {:.1} ms",
                bytes as f64 / 1e6,
                took.as_secs_f64() * 1000.0
            ));
        }
        out
    }
}

/// Times `f`, wall and process CPU.
pub(crate) async fn timed<F, Fut>(name: &str, f: F) -> Result<Phase, BenchError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(u64, u64), BenchError>>,
{
    let (w, c) = (Instant::now(), cpu_time());
    let (events, rows_out) = f().await?;
    Ok(Phase { name: name.to_string(), events, wall: w.elapsed(), cpu: cpu_time().saturating_sub(c), rows_out })
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The nearest-rank percentile `q` (0..=1) of sorted `v`.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_time_sums_user_and_system_ticks() {
        let stat = "4242 (smack (x) y) R 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 3 0 100";
        assert_eq!(stat_cpu_time(stat), Some(Duration::from_millis(1750)));
    }

    #[test]
    fn stat_cpu_time_refuses_short_or_garbled_text() {
        assert_eq!(stat_cpu_time("4242 (smack) R 1 2"), None);
        assert_eq!(stat_cpu_time("no parenthesis at all"), None);
        assert_eq!(stat_cpu_time("1 (a) R 1 2 3 4 5 6 7 8 9 10 x 25"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
