//! What both generators share: the seeded RNG, the count limit, the choice
//! of what happens to an ordinary event (late, beyond the watermark,
//! malformed, or nothing) and the encoding of that choice, the summary, and
//! the order of their queue entries (`order_by_fields!`).

use super::dist::between;
use super::json::Obj;
use super::{EventKind, GeneratedEvent, GeneratorKind, MalformedKind, Options, OptionsError, Summary};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// `Eq` and `Ord` for a queue entry type, comparing the tuple of the named
/// fields alone (the other fields take no part).
macro_rules! order_by_fields {
    ($t:ty, $($f:ident),+) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == std::cmp::Ordering::Equal
            }
        }
        impl Eq for $t {}
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                ($(self.$f,)+).cmp(&($(other.$f,)+))
            }
        }
    };
}
pub(crate) use order_by_fields;

/// What happens to an ordinary event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Treatment {
    OnTime,
    Late(i64),
    Beyond(i64),
    Malformed(MalformedKind),
}

/// How a record writer encodes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Every field, well typed.
    Valid,
    /// One field of the wrong type; the variant picks which (writers
    /// take it modulo their number of choices).
    WrongType(u32),
    /// Without the event-time field.
    MissingTs,
}

pub(crate) struct Engine {
    pub(crate) rng: SmallRng,
    pub(crate) start_ms: i64,
    count: Option<u64>,
    /// Cumulative thresholds on one uniform draw for an ordinary event:
    /// below the first it is malformed, then late, then beyond the watermark.
    malformed_below: f64,
    late_below: f64,
    beyond_below: f64,
    ooo_ms: i64,
    pub(crate) summary: Summary,
    /// Fraud bursts numbered in the order they were begun.
    pub(crate) next_burst: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("summary", &self.summary).finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(kind: GeneratorKind, o: &Options) -> Result<Engine, OptionsError> {
        o.validate()?;
        // Ordinary events are the share that is not fraud; the other shares
        // are of all events, so they are scaled up to apply to ordinary ones.
        let ordinary = 1.0 - o.fraud_share;
        let malformed_below = o.malformed_share / ordinary;
        let late_below = malformed_below + o.late_share / ordinary;
        let beyond_below = late_below + o.beyond_watermark_share / ordinary;
        let start_ms = o.start();
        Ok(Engine {
            rng: SmallRng::seed_from_u64(o.seed),
            start_ms,
            count: o.count,
            malformed_below,
            late_below,
            beyond_below,
            ooo_ms: o.max_out_of_orderness_ms,
            summary: Summary {
                generator: kind.name(),
                seed: o.seed,
                start: super::format_rfc3339_ms(start_ms),
                ..Summary::default()
            },
            next_burst: 0,
        })
    }

    /// True once `count` events have been generated.
    pub(crate) fn done(&self) -> bool {
        self.count.is_some_and(|c| self.summary.total >= c)
    }

    /// Draws what happens to an ordinary event.
    pub(crate) fn treatment(&mut self) -> Treatment {
        let u = self.rng.random::<f64>();
        if u < self.malformed_below {
            Treatment::Malformed(match self.rng.random_range(0..3u8) {
                0 => MalformedKind::BadJson,
                1 => MalformedKind::WrongType,
                _ => MalformedKind::MissingField,
            })
        } else if u < self.late_below {
            // A few seconds: a fifth to four fifths of the out-of-orderness.
            Treatment::Late(between(&mut self.rng, self.ooo_ms / 5, self.ooo_ms * 4 / 5))
        } else if u < self.beyond_below {
            Treatment::Beyond(between(&mut self.rng, self.ooo_ms + 60_000, self.ooo_ms + 120_000))
        } else {
            Treatment::OnTime
        }
    }

    /// Builds, counts and returns one event due at `t`. `write` encodes the
    /// record with the given key, event time and encoding into the buffer.
    pub(crate) fn finish(
        &mut self,
        source: &'static str,
        key: String,
        t: i64,
        treatment: Treatment,
        fraud_burst: Option<u64>,
        write: impl FnOnce(&mut Vec<u8>, &str, i64, Encoding),
    ) -> GeneratedEvent {
        let mut payload = Vec::with_capacity(128);
        let (ts, kind, malformed) = match (fraud_burst, treatment) {
            (Some(burst), _) => (t, EventKind::Fraud { burst }, false),
            (None, Treatment::OnTime) => (t, EventKind::Normal, false),
            (None, Treatment::Late(d)) => (t - d, EventKind::Late { delay_ms: d }, false),
            (None, Treatment::Beyond(d)) => (t - d, EventKind::BeyondWatermark { delay_ms: d }, false),
            (None, Treatment::Malformed(m)) => (t, EventKind::Malformed(m), true),
        };
        match kind {
            EventKind::Malformed(MalformedKind::BadJson) => {
                write(&mut payload, &key, ts, Encoding::Valid);
                // Cut short, somewhere in its middle: never valid JSON, as
                // the closing brace is gone.
                let len = payload.len();
                let cut = self.rng.random_range(len / 3..=len * 2 / 3);
                payload.truncate(cut);
            }
            EventKind::Malformed(MalformedKind::WrongType) => {
                let variant = self.rng.random::<u32>();
                write(&mut payload, &key, ts, Encoding::WrongType(variant));
            }
            EventKind::Malformed(MalformedKind::MissingField) => write(&mut payload, &key, ts, Encoding::MissingTs),
            _ => write(&mut payload, &key, ts, Encoding::Valid),
        }
        let ev = GeneratedEvent { source, key, payload, malformed, event_time_ms: ts, kind };
        self.summary.count(&ev);
        ev
    }
}

/// What a wrong-typed `ts` holds: a boolean, or text that is no time.
const NOT_A_TIME: [&str; 2] = ["true", "\"yesterday\""];

/// The `ts` field as the encoding wants it: missing, not a time (odd
/// wrong-type variants), or the time.
pub(crate) fn write_ts(o: &mut Obj<'_>, ts: i64, enc: Encoding) {
    match enc {
        Encoding::MissingTs => {}
        Encoding::WrongType(v) if v % 2 == 1 => o.raw("ts", NOT_A_TIME[(v / 2 % 2) as usize]),
        _ => o.ts("ts", ts),
    }
}
