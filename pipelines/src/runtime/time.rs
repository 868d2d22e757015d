//! Event time: per-partition bounded-out-of-orderness watermarks, and the
//! assignment of event times to tumbling, hopping and session windows.
//!
//! All times are epoch milliseconds (`i64`). A watermark `W` says "records
//! with an event time below `W` are behind": a source's watermark is, over
//! the partitions a task owns, the minimum of `max event time seen in the
//! partition − max-out-of-orderness`. A partition that has not produced a
//! record yet holds the watermark at [`MIN_WATERMARK`]; an idle partition
//! (marked by the task loop) does not hold it back. [`MAX_WATERMARK`] means
//! "the input is over": every window closes.
//!
//! Windows are half-open, `[start, end)`. A window is *closed* (its result
//! emitted, its state dropped) once `end + allowed_lateness <= W`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The watermark before any record: nothing is complete.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark at the end of the input: everything is complete.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// What a task knows of one partition's event time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionClock {
    /// The largest event time seen, if any.
    pub max_event_time: Option<i64>,
    /// Marked idle by the task loop: not holding the watermark back.
    pub idle: bool,
}

/// A source's watermark over the partitions one task owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceWatermark {
    /// `max-out-of-orderness`, in milliseconds.
    pub bound_ms: i64,
    /// Per partition.
    pub partitions: BTreeMap<i32, PartitionClock>,
}

impl SourceWatermark {
    /// A watermark trailing the newest event time by `bound_ms`.
    pub fn new(bound_ms: i64) -> SourceWatermark {
        SourceWatermark { bound_ms, partitions: BTreeMap::new() }
    }

    /// Declares the partitions the task owns: each holds the watermark back
    /// until it produces a record (or is marked idle).
    pub fn assign(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.entry(*p).or_default();
        }
    }

    /// Records that `partition` produced event times up to `max_event_time`;
    /// it is no longer idle.
    pub fn observe(&mut self, partition: i32, max_event_time: Option<i64>) {
        let clock = self.partitions.entry(partition).or_default();
        clock.idle = false;
        if let Some(t) = max_event_time {
            clock.max_event_time = Some(clock.max_event_time.map_or(t, |m| m.max(t)));
        }
    }

    /// Marks a partition idle (or active again).
    pub fn set_idle(&mut self, partition: i32, idle: bool) {
        self.partitions.entry(partition).or_default().idle = idle;
    }

    /// The current watermark: the minimum over active partitions of
    /// `max event time − bound`; [`MIN_WATERMARK`] before any record. When
    /// every partition is idle, the minimum over all of them.
    pub fn current(&self) -> i64 {
        let of = |c: &PartitionClock| c.max_event_time.map_or(MIN_WATERMARK, |t| t.saturating_sub(self.bound_ms));
        let active = self.partitions.values().filter(|c| !c.idle).map(of).min();
        match active {
            Some(w) => w,
            None => self.partitions.values().map(of).min().unwrap_or(MIN_WATERMARK),
        }
    }
}

/// An event-time window function, sizes in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowFn {
    /// `TUMBLE(ts, size)`: back-to-back windows of `size`.
    Tumble { size: i64 },
    /// `HOP(ts, slide, size)`: windows of `size` starting every `slide`.
    Hop { slide: i64, size: i64 },
    /// `SESSION(ts, gap)`: per key, records closer than `gap` share a window
    /// `[first, last + gap)`.
    Session { gap: i64 },
}

impl WindowFn {
    /// The fixed windows (`[start, end)`) that contain `t`, earliest first;
    /// nothing for a session window (see [`WindowFn::session_of`]).
    pub fn assign(&self, t: i64, out: &mut Vec<(i64, i64)>) {
        out.clear();
        match *self {
            WindowFn::Tumble { size } => {
                let start = t - t.rem_euclid(size);
                out.push((start, start.saturating_add(size)));
            }
            WindowFn::Hop { slide, size } => {
                let last = t - t.rem_euclid(slide);
                let mut start = last;
                while start > t.saturating_sub(size) {
                    start -= slide;
                }
                // `start` is now the first start that is too early.
                let mut s = start + slide;
                while s <= last {
                    out.push((s, s.saturating_add(size)));
                    s += slide;
                }
            }
            WindowFn::Session { .. } => {}
        }
    }

    /// The window a single record at `t` opens in a session window.
    pub fn session_of(&self, t: i64) -> Option<(i64, i64)> {
        match *self {
            WindowFn::Session { gap } => Some((t, t.saturating_add(gap))),
            _ => None,
        }
    }
}

/// Whether a window ending at `end` is closed at watermark `w`.
pub fn closed(end: i64, allowed_lateness: i64, w: i64) -> bool {
    end.saturating_add(allowed_lateness) <= w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(f: WindowFn, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        f.assign(t, &mut out);
        out
    }

    #[test]
    fn tumbling_windows_are_half_open_and_handle_negative_times() {
        let f = WindowFn::Tumble { size: 60_000 };
        assert_eq!(windows(f, 0), vec![(0, 60_000)]);
        assert_eq!(windows(f, 59_999), vec![(0, 60_000)]);
        assert_eq!(windows(f, 60_000), vec![(60_000, 120_000)]);
        assert_eq!(windows(f, -1), vec![(-60_000, 0)]);
    }

    #[test]
    fn hopping_windows_cover_every_start_within_size() {
        let f = WindowFn::Hop { slide: 30_000, size: 60_000 };
        assert_eq!(windows(f, 5_000), vec![(-30_000, 30_000), (0, 60_000)]);
        assert_eq!(windows(f, 30_000), vec![(0, 60_000), (30_000, 90_000)]);
        // Size not a multiple of the slide.
        let f = WindowFn::Hop { slide: 20_000, size: 50_000 };
        assert_eq!(windows(f, 45_000), vec![(0, 50_000), (20_000, 70_000), (40_000, 90_000)]);
        // Slide larger than size: some times fall in no window.
        let f = WindowFn::Hop { slide: 60_000, size: 10_000 };
        assert_eq!(windows(f, 5_000), vec![(0, 10_000)]);
        assert_eq!(windows(f, 15_000), vec![]);
    }

    #[test]
    fn sessions_open_a_gap_long_window() {
        assert_eq!(WindowFn::Session { gap: 10 }.session_of(5), Some((5, 15)));
        assert_eq!(WindowFn::Tumble { size: 10 }.session_of(5), None);
    }

    #[test]
    fn the_watermark_is_the_minimum_over_partitions_minus_the_bound() {
        let mut w = SourceWatermark::new(5_000);
        assert_eq!(w.current(), MIN_WATERMARK);
        w.assign(&[0, 1]);
        w.observe(0, Some(100_000));
        assert_eq!(w.current(), MIN_WATERMARK, "partition 1 has produced nothing yet");
        w.observe(1, Some(50_000));
        assert_eq!(w.current(), 45_000);
        w.observe(1, Some(40_000));
        assert_eq!(w.current(), 45_000, "a watermark never goes back");
        w.set_idle(1, true);
        assert_eq!(w.current(), 95_000, "an idle partition does not hold it back");
        w.observe(1, None);
        assert_eq!(w.current(), 45_000, "a record makes the partition active again");
        w.set_idle(0, true);
        w.set_idle(1, true);
        assert_eq!(w.current(), 45_000);
    }

    #[test]
    fn a_window_closes_once_the_watermark_passes_end_plus_lateness() {
        assert!(!closed(60_000, 10_000, 69_999));
        assert!(closed(60_000, 10_000, 70_000));
        assert!(closed(i64::MAX - 5, 10, MAX_WATERMARK));
        assert!(!closed(0, 0, MIN_WATERMARK));
    }
}
