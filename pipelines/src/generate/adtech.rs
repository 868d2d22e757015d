//! Impressions and clicks for `examples/ad-tech` (sources `impressions`:
//! `impression_id`, `campaign_id`, `cost`, `ts`; and `clicks`: `click_id`,
//! `impression_id`, `campaign_id`, `ts`), both keyed by `campaign_id`.
//!
//! Campaigns have Zipf-ish popularity (s = 1.1), a price per impression
//! (log-normal around a $2 CPM, each impression's cost varying around it)
//! and a click-through rate (log-normal around 1.5%). A clicked impression
//! is followed by its click a few seconds later (log-normal, median 3 s, at
//! most a minute), so clicks follow their impressions in the stream.
//!
//! Fraud bursts are click spam: 15 to 40 clicks on one impression within a
//! minute of it. The stream starts in its steady state: spam begun in the
//! minute before the start shows its later clicks.

use super::dist::{between, log_normal, mix, Shuffle, Zipf};
use super::engine::{order_by_fields, write_ts, Encoding, Engine, Treatment};
use super::json::{push_fixed, push_hex, push_padded, Obj};
use super::{GeneratedEvent, GeneratorKind, Options, OptionsError, Summary};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub(crate) const SOURCES: &[&str] = &["impressions", "clicks"];
const IMPRESSIONS: &str = "impressions";
const CLICKS: &str = "clicks";

const BURST_LEN: (u32, u32) = (15, 40);
const BURST_SPAN_MS: (i64, i64) = (20_000, 55_000);
const SALT_CAMPAIGNS: u64 = 0x6361_6d70;
const SALT_SHUFFLE: u64 = 0x7368_7566;
const SALT_TAG: u64 = 0x7461_6773;

#[derive(Debug, Clone, Copy)]
struct Campaign {
    /// Median price of one impression, micro-dollars.
    cost_micros: f64,
    /// Chance that an impression is clicked.
    ctr: f64,
}

/// A click still to come.
#[derive(Debug)]
struct Pending {
    at: i64,
    seq: u64,
    impression: u64,
    campaign: u64,
    burst: Option<u64>,
    first_of_burst: bool,
}

order_by_fields!(Pending, at, seq);

/// Impressions and clicks; see the module doc.
#[derive(Debug)]
pub struct AdTechGenerator {
    e: Engine,
    campaigns: Vec<Campaign>,
    width: usize,
    zipf: Zipf,
    shuffle: Shuffle,
    /// Set in every impression and click id, so two seeds' ids never meet.
    tag: u64,
    impressions: u64,
    clicks: u64,
    seq: u64,
    slot: u64,
    slot_ms: f64,
    next_slot_ms: i64,
    burst_p: f64,
    pending: BinaryHeap<Reverse<Pending>>,
}

impl AdTechGenerator {
    pub fn new(o: &Options) -> Result<AdTechGenerator, OptionsError> {
        let e = Engine::new(GeneratorKind::AdTech, o)?;
        let n = o.keys.unwrap_or_else(|| GeneratorKind::AdTech.default_keys(o.rate));
        let mut table_rng = SmallRng::seed_from_u64(mix(o.seed ^ SALT_CAMPAIGNS));
        let campaigns: Vec<Campaign> = (0..n)
            .map(|_| Campaign {
                cost_micros: log_normal(&mut table_rng, 2_000.0, 0.6, 200.0, 20_000.0),
                ctr: log_normal(&mut table_rng, 0.015, 0.5, 0.002, 0.08),
            })
            .collect();
        let zipf = Zipf::new(n, 1.1);
        let shuffle = Shuffle::new(n, o.seed ^ SALT_SHUFFLE);
        let mean_ctr: f64 = (0..n).map(|r| zipf.probability(r) * campaigns[shuffle.apply(r) as usize].ctr).sum();
        let f = o.fraud_share;
        let mean_len = f64::from(BURST_LEN.0 + BURST_LEN.1) / 2.0;
        // Impressions are what is left of the rate once clicks and click
        // spam are counted.
        let impression_rate = o.rate * (1.0 - f) / (1.0 + mean_ctr);
        let mut g = AdTechGenerator {
            campaigns,
            width: n.to_string().len().max(4),
            zipf,
            shuffle,
            tag: mix(o.seed ^ SALT_TAG) & 0xff_ffff,
            impressions: 0,
            clicks: 0,
            seq: 0,
            slot: 0,
            slot_ms: 1000.0 / impression_rate,
            next_slot_ms: e.start_ms,
            burst_p: f * (1.0 + mean_ctr) / ((1.0 - f) * mean_len),
            pending: BinaryHeap::new(),
            e,
        };
        g.warm_up();
        Ok(g)
    }

    /// What has been generated so far.
    pub fn summary(&self) -> &Summary {
        &self.e.summary
    }

    /// The id of campaign `index`, e.g. `camp-0042`.
    pub fn campaign_id(&self, index: u64) -> String {
        let mut out = Vec::with_capacity(5 + self.width);
        out.extend_from_slice(b"camp-");
        push_padded(&mut out, index, self.width);
        String::from_utf8(out).unwrap_or_default() // ASCII digits: always UTF-8
    }

    /// How many campaigns there are.
    pub fn campaign_count(&self) -> u64 {
        self.campaigns.len() as u64
    }

    fn schedule(&mut self, at: i64, impression: u64, campaign: u64, burst: Option<u64>, first_of_burst: bool) {
        self.seq += 1;
        let p = Pending { at, seq: self.seq, impression, campaign, burst, first_of_burst };
        self.pending.push(Reverse(p));
    }

    /// Click spam on an impression shown at `t`: its clicks from the start on.
    fn begin_spam(&mut self, t: i64, impression: u64, campaign: u64) {
        let rng = &mut self.e.rng;
        let n = rng.random_range(BURST_LEN.0..=BURST_LEN.1);
        let first = t + between(rng, 500, 3_000);
        let span = between(rng, BURST_SPAN_MS.0, BURST_SPAN_MS.1);
        let mut times: Vec<i64> = (0..n).map(|i| first + if i == 0 { 0 } else { between(rng, 0, span) }).collect();
        times.sort_unstable();
        let start = self.e.start_ms;
        times.retain(|&at| at >= start);
        if times.is_empty() {
            return;
        }
        let id = self.e.next_burst;
        self.e.next_burst += 1;
        for (i, at) in times.into_iter().enumerate() {
            self.schedule(at, impression, campaign, Some(id), i == 0);
        }
    }

    /// Begins the click spam of the minute before the start, on impressions
    /// the stream does not hold (their ids count down from `ffffffffffffffff`),
    /// so that the stream is in its steady state from its first event.
    fn warm_up(&mut self) {
        if self.burst_p <= 0.0 {
            return;
        }
        let slots_before = (60_000.0 / self.slot_ms).ceil() as u64;
        let ln_miss = (1.0 - self.burst_p).ln();
        let mut slot = 0u64;
        let mut impression = u64::MAX;
        loop {
            // Slots to the next burst: geometric, one draw per burst.
            let u: f64 = self.e.rng.random();
            slot += ((1.0 - u).ln() / ln_miss).floor() as u64 + 1;
            if slot > slots_before {
                break;
            }
            let t = self.e.start_ms - ((slots_before - slot + 1) as f64 * self.slot_ms) as i64;
            let campaign = self.shuffle.apply(self.zipf.sample(&mut self.e.rng));
            self.begin_spam(t, impression, campaign);
            impression -= 1;
        }
    }

    fn impression_event(&mut self) -> GeneratedEvent {
        let t = self.next_slot_ms;
        self.slot += 1;
        self.next_slot_ms = self.e.start_ms + (self.slot as f64 * self.slot_ms) as i64;
        let rng = &mut self.e.rng;
        let campaign = self.shuffle.apply(self.zipf.sample(rng));
        let c = self.campaigns[campaign as usize];
        let cost = (c.cost_micros * log_normal(rng, 1.0, 0.25, 0.2, 5.0)).round() as i64;
        let impression = self.impressions;
        self.impressions += 1;
        if rng.random_bool(c.ctr) {
            let delay = log_normal(rng, 3_000.0, 0.8, 200.0, 60_000.0) as i64;
            self.schedule(t + delay, impression, campaign, None, false);
        }
        if self.e.rng.random::<f64>() < self.burst_p {
            self.begin_spam(t, impression, campaign);
        }
        let treatment = self.e.treatment();
        let key = self.campaign_id(campaign);
        let tag = self.tag;
        self.e.finish(IMPRESSIONS, key, t, treatment, None, |out, key, ts, enc| {
            let mut o = Obj::new(out);
            let id = o.key("impression_id");
            push_id(id, b"imp-", tag, impression);
            o.str("campaign_id", key);
            match enc {
                // A price with its currency: text where a double belongs.
                Encoding::WrongType(v) if v % 2 == 0 => {
                    let out = o.key("cost");
                    out.push(b'"');
                    push_fixed(out, cost, 6);
                    out.extend_from_slice(b" USD\"");
                }
                _ => o.fixed("cost", cost, 6),
            }
            write_ts(&mut o, ts, enc);
            o.end();
        })
    }

    fn click_event(&mut self) -> Option<GeneratedEvent> {
        let Reverse(p) = self.pending.pop()?;
        let click = self.clicks;
        self.clicks += 1;
        let treatment = if p.burst.is_some() { Treatment::OnTime } else { self.e.treatment() };
        if p.first_of_burst {
            self.e.summary.fraud_bursts += 1;
        }
        let key = self.campaign_id(p.campaign);
        let tag = self.tag;
        Some(self.e.finish(CLICKS, key, p.at, treatment, p.burst, |out, key, ts, enc| {
            let mut o = Obj::new(out);
            push_id(o.key("click_id"), b"clk-", tag, click);
            push_id(o.key("impression_id"), b"imp-", tag, p.impression);
            o.str("campaign_id", key);
            // The only field that is not text is the time.
            let enc = if let Encoding::WrongType(v) = enc { Encoding::WrongType(v | 1) } else { enc };
            write_ts(&mut o, ts, enc);
            o.end();
        }))
    }
}

/// `"imp-<tag>-<n>"`, both in hex.
fn push_id(out: &mut Vec<u8>, prefix: &[u8], tag: u64, n: u64) {
    out.push(b'"');
    out.extend_from_slice(prefix);
    push_hex(out, tag);
    out.push(b'-');
    push_hex(out, n);
    out.push(b'"');
}

impl Iterator for AdTechGenerator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        if self.e.done() {
            return None;
        }
        match self.pending.peek() {
            Some(Reverse(p)) if p.at <= self.next_slot_ms => self.click_event(),
            _ => Some(self.impression_event()),
        }
    }
}
