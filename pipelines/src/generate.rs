//! Seeded event generators for the example pipelines (`smack generate
//! fraud|ad-tech`): keyed, realistic, deterministic streams of JSON records
//! matching the sources of `examples/fraud-detection` and `examples/ad-tech`.
//!
//! A [`Generator`] is an iterator of [`GeneratedEvent`]s: the source (topic)
//! an event belongs to, its Kafka record key (the stage key: `card_id`,
//! `campaign_id`), its payload, and what it is (normal, part of a fraud
//! burst, late, beyond the watermark, malformed). The same [`Options`] — above
//! all the same seed — give the same events, byte for byte, so a test can
//! produce a dataset into Kafka and compute the expected answer from the very
//! same events. [`Summary`] counts what was generated; [`AvroPayloads`]
//! writes events as Avro of a pipeline source's writer schema.
//!
//! Event time starts at [`Options::start_ms`] (or an instant derived from the
//! seed) and advances by about [`Options::rate`] events per second of event
//! time. Events come out in event-time order except for the shares asked
//! for: *late* ones are a few seconds behind, within the watermark's
//! out-of-orderness; *beyond-watermark* ones are a minute or two behind.
//! Wall-clock pacing is the caller's business (the CLI does it).
//!
//! Determinism: one `SmallRng` (rand 0.9, Xoshiro256++ on 64-bit targets)
//! seeded from the seed drives every draw; per-key properties are hashes of
//! the seed and the key. Output is stable for a given build; a rand upgrade
//! that changes `SmallRng` would change it (the golden test says so).

mod adtech;
mod dist;
mod engine;
mod fraud;
mod json;
mod payload;
mod time;

#[cfg(test)]
mod tests;

pub use adtech::AdTechGenerator;
pub use fraud::FraudGenerator;
pub use payload::{AvroPayloads, LineSink, PayloadError, WireFormat, AD_TECH_PIPELINE, FRAUD_PIPELINE};
pub use time::{format_rfc3339_ms, parse_rfc3339_ms};

use serde::Serialize;
use std::collections::BTreeMap;

/// One generated record, ready to be produced to Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedEvent {
    /// The pipeline source (and Kafka topic) it belongs to: `transactions`,
    /// `impressions`, `clicks`.
    pub source: &'static str,
    /// The Kafka record key: the stage key of the example (`card_id` for
    /// fraud, `campaign_id` for ad-tech), so keyed state lines up with
    /// partitions. Always set, malformed records included.
    pub key: String,
    /// The record value: one JSON object (no trailing newline), or for a
    /// malformed record something that does not decode against the schema.
    pub payload: Vec<u8>,
    /// True when the payload does not decode against the source's schema.
    pub malformed: bool,
    /// The event time in epoch milliseconds: the payload's `ts`. For a
    /// malformed record, the time it would have had.
    pub event_time_ms: i64,
    /// What the event is.
    pub kind: EventKind,
}

/// What a generated event is; every event is exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An ordinary event, in event-time order.
    Normal,
    /// One event of a fraud burst (numbered from 0 in order of first event).
    Fraud { burst: u64 },
    /// Behind the newest event time so far by `delay_ms`, less than the
    /// out-of-orderness: the watermark still admits it.
    Late { delay_ms: i64 },
    /// Behind by more than the out-of-orderness plus a minute: the watermark
    /// has passed it.
    BeyondWatermark { delay_ms: i64 },
    /// Does not decode against the schema.
    Malformed(MalformedKind),
}

/// How a malformed record is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MalformedKind {
    /// Not JSON at all: a record cut short.
    BadJson,
    /// A field of the wrong type: a number that is text, a time that is not
    /// a time.
    WrongType,
    /// The event-time field is missing.
    MissingField,
}

/// Which example a generator feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorKind {
    /// Card transactions for `examples/fraud-detection` (source `transactions`).
    Fraud,
    /// Impressions and clicks for `examples/ad-tech`.
    AdTech,
}

impl GeneratorKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GeneratorKind::Fraud => "fraud",
            GeneratorKind::AdTech => "ad-tech",
        }
    }

    /// The sources (topics) its events belong to.
    pub fn sources(self) -> &'static [&'static str] {
        match self {
            GeneratorKind::Fraud => fraud::SOURCES,
            GeneratorKind::AdTech => adtech::SOURCES,
        }
    }

    /// The key population when [`Options::keys`] is not set: cards enough
    /// that a legitimate card rarely pays twice in a minute at this rate;
    /// campaigns a fixed few hundred.
    pub fn default_keys(self, rate: f64) -> u64 {
        match self {
            GeneratorKind::Fraud => (rate * 100.0).clamp(100_000.0, 10_000_000.0) as u64,
            GeneratorKind::AdTech => 200,
        }
    }
}

impl std::str::FromStr for GeneratorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fraud" => Ok(GeneratorKind::Fraud),
            "ad-tech" => Ok(GeneratorKind::AdTech),
            _ => Err(format!("unknown generator `{s}`, expected `fraud` or `ad-tech`")),
        }
    }
}

/// What to generate. [`Options::default`] gives the defaults of the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The seed: the same seed and options give the same events.
    pub seed: u64,
    /// Events per second of event time (all sources together), > 0.
    pub rate: f64,
    /// Event time of the first event, epoch ms. Default: midnight UTC of a
    /// day in 2024 derived from the seed (so minute windows align).
    pub start_ms: Option<i64>,
    /// How many events in all; `None` for an endless stream.
    pub count: Option<u64>,
    /// Key population: cards (fraud) or campaigns (ad-tech). Default:
    /// [`GeneratorKind::default_keys`].
    pub keys: Option<u64>,
    /// Share of events that belong to fraud bursts (0 to 0.5).
    pub fraud_share: f64,
    /// Share of malformed records.
    pub malformed_share: f64,
    /// Share of events a few seconds late, within the watermark.
    pub late_share: f64,
    /// Share of events beyond the watermark.
    pub beyond_watermark_share: f64,
    /// The sources' watermark out-of-orderness (the examples say 5s): late
    /// events stay within it, beyond-watermark ones go past it by a minute.
    pub max_out_of_orderness_ms: i64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seed: 1,
            rate: 1000.0,
            start_ms: None,
            count: None,
            keys: None,
            fraud_share: 0.01,
            malformed_share: 0.001,
            late_share: 0.02,
            beyond_watermark_share: 0.0,
            max_out_of_orderness_ms: 5_000,
        }
    }
}

/// The highest event-time rate, events per second (the fraud bursts in
/// flight grow with it).
pub const MAX_RATE: f64 = 10_000_000.0;

/// Options that cannot generate anything sensible.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    /// A share is not a number between 0 and its bound.
    #[error("--{name}: {value} is not a share between 0 and {max}")]
    Share { name: &'static str, value: f64, max: f64 },
    /// The shares add up to more than 1.
    #[error(
        "--fraud-share, --malformed-share, --late-share and --beyond-watermark-share add up to {0}, expected at most 1"
    )]
    SharesSum(f64),
    /// The rate is not positive, or more than [`MAX_RATE`].
    #[error("--rate: {0} events per second of event time, expected more than 0 and at most 10000000")]
    Rate(f64),
    /// The key population is empty.
    #[error("--keys: 0, expected at least 1 key")]
    Keys,
    /// The out-of-orderness is too small to fit late events in.
    #[error("--max-out-of-orderness: {0} ms, expected at least 5ms")]
    OutOfOrderness(i64),
}

impl Options {
    /// Checks the options; the error names the flag and what was expected.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(OptionsError::Rate(self.rate));
        }
        for (name, value, max) in [
            ("fraud-share", self.fraud_share, 0.5),
            ("malformed-share", self.malformed_share, 1.0),
            ("late-share", self.late_share, 1.0),
            ("beyond-watermark-share", self.beyond_watermark_share, 1.0),
        ] {
            if !(0.0..=max).contains(&value) {
                return Err(OptionsError::Share { name, value, max });
            }
        }
        let sum = self.fraud_share + self.malformed_share + self.late_share + self.beyond_watermark_share;
        if sum > 1.0 + 1e-9 {
            return Err(OptionsError::SharesSum(sum));
        }
        if self.keys == Some(0) {
            return Err(OptionsError::Keys);
        }
        if self.max_out_of_orderness_ms < 5 {
            return Err(OptionsError::OutOfOrderness(self.max_out_of_orderness_ms));
        }
        Ok(())
    }

    /// The event time of the first event.
    pub fn start(&self) -> i64 {
        self.start_ms.unwrap_or_else(|| {
            const JAN_1_2024_MS: i64 = 1_704_067_200_000;
            JAN_1_2024_MS + (dist::mix(self.seed) % 365) as i64 * 86_400_000
        })
    }
}

/// Counts of what a generator has produced so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `fraud` or `ad-tech`.
    pub generator: &'static str,
    pub seed: u64,
    /// Event time the stream started at (RFC 3339).
    pub start: String,
    /// Events generated, all sources.
    pub total: u64,
    /// Events per source.
    pub by_source: BTreeMap<&'static str, u64>,
    /// Records that do not decode against the schema.
    pub malformed: u64,
    pub malformed_bad_json: u64,
    pub malformed_wrong_type: u64,
    pub malformed_missing_field: u64,
    /// Fraud bursts begun (at least one event generated).
    pub fraud_bursts: u64,
    /// Events belonging to fraud bursts.
    pub fraud_events: u64,
    /// Events late within the watermark.
    pub late: u64,
    /// Events beyond the watermark.
    pub beyond_watermark: u64,
    /// The smallest and largest event time generated, epoch ms.
    pub min_event_time_ms: Option<i64>,
    pub max_event_time_ms: Option<i64>,
}

impl Summary {
    fn count(&mut self, ev: &GeneratedEvent) {
        self.total += 1;
        *self.by_source.entry(ev.source).or_insert(0) += 1;
        match ev.kind {
            EventKind::Normal => {}
            EventKind::Fraud { .. } => self.fraud_events += 1,
            EventKind::Late { .. } => self.late += 1,
            EventKind::BeyondWatermark { .. } => self.beyond_watermark += 1,
            EventKind::Malformed(m) => {
                self.malformed += 1;
                match m {
                    MalformedKind::BadJson => self.malformed_bad_json += 1,
                    MalformedKind::WrongType => self.malformed_wrong_type += 1,
                    MalformedKind::MissingField => self.malformed_missing_field += 1,
                }
            }
        }
        let t = ev.event_time_ms;
        self.min_event_time_ms = Some(self.min_event_time_ms.map_or(t, |m| m.min(t)));
        self.max_event_time_ms = Some(self.max_event_time_ms.map_or(t, |m| m.max(t)));
    }

    /// One line for a terminal: what was generated.
    pub fn line(&self) -> String {
        let sources: Vec<String> = self.by_source.iter().map(|(s, n)| format!("{s} {n}")).collect();
        format!(
            "generated {} {} events ({}) from seed {}: {} malformed, {} fraud bursts ({} events), {} late, {} beyond the watermark",
            self.total,
            self.generator,
            sources.join(", "),
            self.seed,
            self.malformed,
            self.fraud_bursts,
            self.fraud_events,
            self.late,
            self.beyond_watermark
        )
    }
}

/// A generator of either example's events.
#[derive(Debug)]
pub enum Generator {
    Fraud(FraudGenerator),
    AdTech(AdTechGenerator),
}

impl Generator {
    /// A generator of `kind` events; refuses options that make no sense.
    pub fn new(kind: GeneratorKind, options: &Options) -> Result<Generator, OptionsError> {
        Ok(match kind {
            GeneratorKind::Fraud => Generator::Fraud(FraudGenerator::new(options)?),
            GeneratorKind::AdTech => Generator::AdTech(AdTechGenerator::new(options)?),
        })
    }

    /// What has been generated so far.
    pub fn summary(&self) -> &Summary {
        match self {
            Generator::Fraud(g) => g.summary(),
            Generator::AdTech(g) => g.summary(),
        }
    }
}

impl Iterator for Generator {
    type Item = GeneratedEvent;
    fn next(&mut self) -> Option<GeneratedEvent> {
        match self {
            Generator::Fraud(g) => g.next(),
            Generator::AdTech(g) => g.next(),
        }
    }
}
