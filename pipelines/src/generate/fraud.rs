//! Card transactions for `examples/fraud-detection` (source `transactions`:
//! `card_id`, `amount`, `merchant`, `country`, `ts`), keyed by `card_id`.
//!
//! Ordinary traffic: cards drawn with Zipf-ish popularity (s = 0.8) from a
//! population whose ids are shuffled over the id space; a legitimate card
//! pays at most once per 20 seconds of event time when it can be helped (so
//! it stays well under five a minute); each card has a home country (a hash
//! of the seed and the card) where 97% of its payments happen; merchants
//! have categories with their own log-normal amounts.
//!
//! The cards and their home countries ([`FraudGenerator::cards`]) are the
//! reference rows of the example's `card_homes` lookup: `pipeline apply`
//! writes them (`task::fill_generated_lookups`) before the generator pod
//! produces its first transaction, from the same seed and rate.
//!
//! Fraud bursts: a card chosen at random makes 8 to 16 payments within 47
//! seconds at online merchants, in 70% of bursts across 2 to 4 countries,
//! in half of them with large amounts (median 900, below 5000 each). The
//! stream starts in its steady state: bursts begun in the minute before the
//! start show their later payments.

use super::dist::{between, log_normal, mix, unit, Shuffle, Zipf};
use super::engine::{order_by_fields, write_ts, Encoding, Engine, Treatment};
use super::json::{push_fixed, push_padded, Obj};
use super::{GeneratedEvent, GeneratorKind, Options, OptionsError, Summary};
use rand::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub(crate) const SOURCES: &[&str] = &["transactions"];
const SOURCE: &str = "transactions";

/// Countries and their weight (percent) as a card's home.
const COUNTRIES: [(&str, u64); 13] = [
    ("US", 30),
    ("GB", 10),
    ("DE", 10),
    ("FR", 9),
    ("ES", 6),
    ("IT", 6),
    ("NL", 4),
    ("BR", 5),
    ("IN", 5),
    ("JP", 5),
    ("CA", 4),
    ("AU", 3),
    ("MX", 3),
];

/// Merchant categories: name, weight (percent of merchants), median amount,
/// and whether fraud bursts use them (card-not-present merchants).
const CATEGORIES: [(&str, u64, f64, bool); 8] = [
    ("grocery", 25, 40.0, false),
    ("restaurant", 20, 35.0, false),
    ("fuel", 12, 50.0, false),
    ("online", 15, 60.0, true),
    ("apparel", 10, 70.0, false),
    ("pharmacy", 8, 20.0, false),
    ("electronics", 6, 250.0, true),
    ("travel", 4, 300.0, true),
];

const MERCHANTS: u64 = 2_000;
/// A legitimate card pays at most once in this much event time, when it can
/// be helped (see `pick_card`).
const LEGIT_GAP_SECS: u32 = 20;
const BURST_LEN: (u32, u32) = (8, 16);
const BURST_SPAN_MS: (i64, i64) = (10_000, 45_000);
/// Salts so that per-key hashes of the same seed are unrelated.
const SALT_HOME: u64 = 0x686f_6d65;
const SALT_MERCHANT: u64 = 0x6d65_7263;
const SALT_SHUFFLE: u64 = 0x7368_7566;

/// A fraud burst in progress.
#[derive(Debug)]
struct Burst {
    /// Event time of its next payment (the last of `times`).
    next: i64,
    id: u64,
    card: u64,
    /// Times of the payments still to come, latest first.
    times: Vec<i64>,
    countries: [u8; 4],
    n_countries: u8,
    large: bool,
    started: bool,
}

order_by_fields!(Burst, next, id);

/// Card transactions; see the module doc.
#[derive(Debug)]
pub struct FraudGenerator {
    e: Engine,
    seed: u64,
    cards: u64,
    card_width: usize,
    card_zipf: Zipf,
    card_shuffle: Shuffle,
    /// Per card: seconds since the start before which it should not pay again.
    next_free: Vec<u32>,
    merchant_names: Vec<String>,
    merchant_median: Vec<f64>,
    merchant_zipf: Zipf,
    burst_merchants: Vec<u32>,
    /// Ordinary events are due every `slot_ms` of event time.
    slot: u64,
    slot_ms: f64,
    next_slot_ms: i64,
    /// Chance that an ordinary event begins a burst.
    burst_p: f64,
    bursts: BinaryHeap<Reverse<Burst>>,
}

fn weighted<T>(table: &[T], weight: impl Fn(&T) -> u64, h: u64) -> usize {
    let total: u64 = table.iter().map(&weight).sum();
    let mut x = h % total;
    for (i, t) in table.iter().enumerate() {
        let w = weight(t);
        if x < w {
            return i;
        }
        x -= w;
    }
    table.len() - 1
}

impl FraudGenerator {
    pub fn new(o: &Options) -> Result<FraudGenerator, OptionsError> {
        let e = Engine::new(GeneratorKind::Fraud, o)?;
        let cards = o.keys.unwrap_or_else(|| GeneratorKind::Fraud.default_keys(o.rate));
        let card_width = cards.to_string().len().max(7);
        let mut merchant_names = Vec::with_capacity(MERCHANTS as usize);
        let mut merchant_median = Vec::with_capacity(MERCHANTS as usize);
        let mut burst_merchants = Vec::new();
        for m in 0..MERCHANTS {
            let c = weighted(&CATEGORIES, |c| c.1, mix(o.seed ^ SALT_MERCHANT ^ mix(m)));
            let (name, _, median, online) = CATEGORIES[c];
            merchant_names.push(format!("{name}-{m:04}"));
            merchant_median.push(median);
            if online {
                burst_merchants.push(m as u32);
            }
        }
        let f = o.fraud_share;
        let mean_len = f64::from(BURST_LEN.0 + BURST_LEN.1) / 2.0;
        let slot_ms = 1000.0 / (o.rate * (1.0 - f));
        let mut g = FraudGenerator {
            seed: o.seed,
            cards,
            card_width,
            card_zipf: Zipf::new(cards, 0.8),
            card_shuffle: Shuffle::new(cards, o.seed ^ SALT_SHUFFLE),
            next_free: vec![0; cards as usize],
            merchant_names,
            merchant_median,
            merchant_zipf: Zipf::new(MERCHANTS, 1.0),
            burst_merchants,
            slot: 0,
            slot_ms,
            next_slot_ms: e.start_ms,
            burst_p: f / ((1.0 - f) * mean_len),
            bursts: BinaryHeap::new(),
            e,
        };
        g.warm_up();
        Ok(g)
    }

    /// What has been generated so far.
    pub fn summary(&self) -> &Summary {
        &self.e.summary
    }

    /// How many cards there are.
    pub fn card_count(&self) -> u64 {
        self.cards
    }

    /// The id of card `index` (`0..card_count()`), e.g. `card-0001234`.
    pub fn card_id(&self, index: u64) -> String {
        let mut out = Vec::with_capacity(5 + self.card_width);
        out.extend_from_slice(b"card-");
        push_padded(&mut out, index, self.card_width);
        String::from_utf8(out).unwrap_or_default() // ASCII digits: always UTF-8
    }

    fn home(&self, index: u64) -> u8 {
        weighted(&COUNTRIES, |c| c.1, mix(self.seed ^ SALT_HOME ^ mix(index))) as u8
    }

    /// The home country of a card (`None` for an id this generator does
    /// not make): what a lookup table of cards would hold.
    pub fn home_country(&self, card_id: &str) -> Option<&'static str> {
        let index: u64 = card_id.strip_prefix("card-")?.parse().ok()?;
        (index < self.cards).then(|| COUNTRIES[self.home(index) as usize].0)
    }

    /// Every card with its home country, in id order.
    pub fn cards(&self) -> impl Iterator<Item = (String, &'static str)> + '_ {
        (0..self.cards).map(|i| (self.card_id(i), COUNTRIES[self.home(i) as usize].0))
    }

    /// A card for an ordinary payment at `t`: by popularity, else any card,
    /// preferring one that has not paid in the last `LEGIT_GAP_SECS`.
    fn pick_card(&mut self, t: i64) -> u64 {
        let now = ((t - self.e.start_ms).max(0) / 1000) as u32;
        let mut card = 0;
        for attempt in 0..6 {
            card = if attempt < 3 {
                self.card_shuffle.apply(self.card_zipf.sample(&mut self.e.rng))
            } else {
                self.e.rng.random_range(0..self.cards)
            };
            if self.next_free[card as usize] <= now {
                break;
            }
        }
        self.next_free[card as usize] = now + LEGIT_GAP_SECS;
        card
    }

    fn begin_burst(&mut self, after: i64) {
        let rng = &mut self.e.rng;
        let n = rng.random_range(BURST_LEN.0..=BURST_LEN.1);
        let first = after + between(rng, 0, 2_000);
        let span = between(rng, BURST_SPAN_MS.0, BURST_SPAN_MS.1);
        let mut times: Vec<i64> = (0..n).map(|i| first + if i == 0 { 0 } else { between(rng, 0, span) }).collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        // A burst begun before the start (see `warm_up`) keeps what follows it.
        let start = self.e.start_ms;
        times.retain(|&t| t >= start);
        let n_countries = if rng.random_bool(0.7) { rng.random_range(2..=4u8) } else { 1 };
        let mut countries = [0u8; 4];
        let mut chosen = 0;
        while chosen < n_countries as usize {
            let c = rng.random_range(0..COUNTRIES.len() as u8);
            if !countries[..chosen].contains(&c) {
                countries[chosen] = c;
                chosen += 1;
            }
        }
        let Some(&next) = times.last() else { return };
        let burst = Burst {
            next,
            id: self.e.next_burst,
            card: rng.random_range(0..self.cards),
            times,
            countries,
            n_countries,
            large: rng.random_bool(0.5),
            started: false,
        };
        self.e.next_burst += 1;
        self.bursts.push(Reverse(burst));
    }

    /// Begins the bursts that would have begun in the minute before the
    /// start, so that the stream is in its steady state from its first
    /// event instead of ramping up to the fraud share over a minute.
    fn warm_up(&mut self) {
        if self.burst_p <= 0.0 {
            return;
        }
        let slots_before = (60_000.0 / self.slot_ms).ceil() as u64;
        let ln_miss = (1.0 - self.burst_p).ln();
        let mut slot = 0u64;
        loop {
            // Slots to the next burst: geometric, one draw per burst.
            let u: f64 = self.e.rng.random();
            slot += ((1.0 - u).ln() / ln_miss).floor() as u64 + 1;
            if slot > slots_before {
                break;
            }
            let t = self.e.start_ms - ((slots_before - slot + 1) as f64 * self.slot_ms) as i64;
            self.begin_burst(t);
        }
    }

    fn burst_event(&mut self) -> Option<GeneratedEvent> {
        let Reverse(mut b) = self.bursts.pop()?;
        let t = b.times.pop().unwrap_or(b.next);
        let rng = &mut self.e.rng;
        let country = b.countries[rng.random_range(0..b.n_countries) as usize];
        let amount = if b.large { log_normal(rng, 900.0, 0.5, 200.0, 4999.0) } else { rng.random_range(1.0..30.0) };
        let merchant = self.burst_merchants[rng.random_range(0..self.burst_merchants.len())];
        if !b.started {
            b.started = true;
            self.e.summary.fraud_bursts += 1;
        }
        let (id, card) = (b.id, b.card);
        if let Some(&next) = b.times.last() {
            b.next = next;
            self.bursts.push(Reverse(b));
        }
        let key = self.card_id(card);
        let name = &self.merchant_names[merchant as usize];
        let txn = Txn { cents: cents(amount), merchant: name, country: COUNTRIES[country as usize].0 };
        Some(
            self.e
                .finish(SOURCE, key, t, Treatment::OnTime, Some(id), |out, key, ts, enc| txn.write(out, key, ts, enc)),
        )
    }

    fn ordinary_event(&mut self) -> GeneratedEvent {
        let t = self.next_slot_ms;
        self.slot += 1;
        self.next_slot_ms = self.e.start_ms + (self.slot as f64 * self.slot_ms) as i64;
        if self.e.rng.random::<f64>() < self.burst_p {
            self.begin_burst(t);
        }
        let card = self.pick_card(t);
        let rng = &mut self.e.rng;
        let merchant = self.merchant_zipf.sample(rng) as usize;
        let amount = log_normal(rng, self.merchant_median[merchant], 0.8, 0.5, 2500.0);
        let country =
            if rng.random_bool(0.97) { self.home(card) } else { (unit(rng.random()) * COUNTRIES.len() as f64) as u8 };
        let treatment = self.e.treatment();
        let key = self.card_id(card);
        let name = &self.merchant_names[merchant];
        let txn = Txn { cents: cents(amount), merchant: name, country: COUNTRIES[country as usize].0 };
        self.e.finish(SOURCE, key, t, treatment, None, |out, key, ts, enc| txn.write(out, key, ts, enc))
    }
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

/// One transaction's fields besides the key and the time.
struct Txn<'a> {
    cents: i64,
    merchant: &'a str,
    country: &'static str,
}

impl Txn<'_> {
    fn write(&self, out: &mut Vec<u8>, card_id: &str, ts: i64, enc: Encoding) {
        let mut o = Obj::new(out);
        o.str("card_id", card_id);
        match enc {
            // An amount with its currency: text where a double belongs.
            Encoding::WrongType(v) if v % 2 == 0 => {
                let out = o.key("amount");
                out.push(b'"');
                push_fixed(out, self.cents, 2);
                out.extend_from_slice(b" EUR\"");
            }
            _ => o.fixed("amount", self.cents, 2),
        }
        o.str("merchant", self.merchant);
        o.str("country", self.country);
        write_ts(&mut o, ts, enc);
        o.end();
    }
}

impl Iterator for FraudGenerator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        if self.e.done() {
            return None;
        }
        match self.bursts.peek() {
            Some(Reverse(b)) if b.next <= self.next_slot_ms => self.burst_event(),
            _ => Some(self.ordinary_event()),
        }
    }
}
