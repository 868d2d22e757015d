//! Tests of the generators against the example pipelines' schemas.

use super::*;
use crate::spec::FieldType;
use indexmap::IndexMap;
use std::collections::{HashMap, HashSet};

fn options(seed: u64, count: u64) -> Options {
    Options { seed, count: Some(count), ..Options::default() }
}

fn generate(kind: GeneratorKind, o: &Options) -> (Vec<GeneratedEvent>, Summary) {
    let mut g = Generator::new(kind, o).unwrap();
    let events: Vec<GeneratedEvent> = g.by_ref().collect();
    (events, g.summary().clone())
}

/// The sources' schemas as the example pipeline file declares them.
fn example_schemas(kind: GeneratorKind) -> HashMap<String, IndexMap<String, FieldType>> {
    let dir = match kind {
        GeneratorKind::Fraud => "fraud-detection",
        GeneratorKind::AdTech => "ad-tech",
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(dir).join("pipeline.yaml");
    let spec = crate::load(&path).unwrap();
    spec.sources.iter().map(|(name, s)| (name.clone(), s.schema().clone())).collect()
}

/// Decodes a payload against a schema as a strict reader would; the error
/// says what did not fit.
fn check(
    schema: &IndexMap<String, FieldType>,
    payload: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(obj) = value else { return Err("not an object".into()) };
    for (field, ty) in schema {
        let v = obj.get(field).ok_or_else(|| format!("missing {field}"))?;
        let ok = match ty {
            FieldType::String => v.is_string(),
            FieldType::Int | FieldType::Long => v.is_i64(),
            FieldType::Double => v.is_number(),
            FieldType::Boolean => v.is_boolean(),
            FieldType::Timestamp => v.is_i64() || v.as_str().is_some_and(|s| parse_rfc3339_ms(s).is_ok()),
        };
        if !ok {
            return Err(format!("{field}: {v} is not a {ty:?}"));
        }
    }
    Ok(obj)
}

fn ts_of(obj: &serde_json::Map<String, serde_json::Value>) -> i64 {
    parse_rfc3339_ms(obj["ts"].as_str().unwrap()).unwrap()
}

#[test]
fn a_fixed_seed_gives_byte_identical_events() {
    for kind in [GeneratorKind::Fraud, GeneratorKind::AdTech] {
        let o =
            Options { fraud_share: 0.05, malformed_share: 0.01, beyond_watermark_share: 0.01, ..options(7, 20_000) };
        let (a, sa) = generate(kind, &o);
        let (b, sb) = generate(kind, &o);
        assert_eq!(a.len(), 20_000);
        assert!(a == b, "{kind:?}: two runs with seed 7 differ");
        assert_eq!(sa, sb);
        let (c, _) = generate(kind, &Options { seed: 8, ..o.clone() });
        assert!(
            a.iter().zip(&c).filter(|(x, y)| x.payload != y.payload).count() > 19_000,
            "{kind:?}: seeds 7 and 8 look alike"
        );
    }
}

/// FNV-1a over keys and payloads: pins the exact output of a seed, so that
/// a change of output (a code change, or a rand upgrade changing SmallRng)
/// is noticed. Update the constants when the change is meant.
fn digest(events: &[GeneratedEvent]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for ev in events {
        for b in ev.key.bytes().chain([0]).chain(ev.payload.iter().copied()).chain([b'\n']) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[test]
fn golden_output_of_seed_42() {
    let o = Options { start_ms: Some(1_704_067_200_000), malformed_share: 0.01, ..options(42, 2_000) };
    let (fraud, _) = generate(GeneratorKind::Fraud, &o);
    let (adtech, _) = generate(GeneratorKind::AdTech, &o);
    let first = String::from_utf8(fraud[0].payload.clone()).unwrap();
    assert!(first.starts_with("{\"card_id\":\"card-"), "{first}");
    assert!(first.ends_with("\"ts\":\"2024-01-01T00:00:00.000Z\"}"), "{first}");
    assert_eq!((digest(&fraud), digest(&adtech)), (GOLDEN_FRAUD, GOLDEN_ADTECH), "the output of seed 42 changed");
}

const GOLDEN_FRAUD: u64 = 9_796_592_205_668_896_694;
const GOLDEN_ADTECH: u64 = 6_968_900_703_576_061_197;

#[test]
fn events_decode_against_the_example_schemas_unless_malformed() {
    for kind in [GeneratorKind::Fraud, GeneratorKind::AdTech] {
        let schemas = example_schemas(kind);
        let o = Options { malformed_share: 0.05, late_share: 0.05, beyond_watermark_share: 0.02, ..options(3, 30_000) };
        let (events, summary) = generate(kind, &o);
        let mut kinds = HashSet::new();
        for ev in &events {
            let schema = schemas.get(ev.source).unwrap_or_else(|| panic!("{kind:?}: no source {}", ev.source));
            let text = String::from_utf8_lossy(&ev.payload);
            assert!(!ev.key.is_empty());
            match check(schema, &ev.payload) {
                Ok(obj) => {
                    assert!(!ev.malformed, "{kind:?}: malformed but decodes: {text}");
                    assert_eq!(ts_of(&obj), ev.event_time_ms, "{text}");
                    let key_field = if kind == GeneratorKind::Fraud { "card_id" } else { "campaign_id" };
                    assert_eq!(obj[key_field], ev.key.as_str(), "the record key is the stage key: {text}");
                }
                Err(why) => {
                    let EventKind::Malformed(m) = ev.kind else { panic!("{kind:?}: {why}: {text}") };
                    assert!(ev.malformed);
                    kinds.insert(m);
                    // A wrong type or a missing field still is JSON with the key.
                    if m != MalformedKind::BadJson {
                        let v: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
                        let key_field = if kind == GeneratorKind::Fraud { "card_id" } else { "campaign_id" };
                        assert_eq!(v[key_field], ev.key.as_str());
                    }
                }
            }
        }
        assert_eq!(kinds.len(), 3, "{kind:?}: every way of being malformed shows up: {kinds:?}");
        assert_eq!(events.iter().filter(|e| e.malformed).count() as u64, summary.malformed);
        let sources: HashSet<&str> = events.iter().map(|e| e.source).collect();
        assert_eq!(sources.len(), kind.sources().len(), "{kind:?}: {sources:?}");
    }
}

#[test]
fn shares_are_close_to_those_asked_for() {
    for kind in [GeneratorKind::Fraud, GeneratorKind::AdTech] {
        let n = 400_000u64;
        let o = Options {
            fraud_share: 0.05,
            malformed_share: 0.01,
            late_share: 0.03,
            beyond_watermark_share: 0.005,
            ..options(11, n)
        };
        let (events, s) = generate(kind, &o);
        assert_eq!(s.total, n);
        assert_eq!(events.len() as u64, n);
        let close = |what: &str, got: u64, share: f64| {
            let want = share * n as f64;
            assert!((got as f64 - want).abs() < want * 0.1, "{kind:?} {what}: {got}, expected about {want}");
        };
        // Fraud comes in bursts of tens, so its count varies more.
        let want = 0.05 * n as f64;
        let got = s.fraud_events as f64;
        assert!((got - want).abs() < want * 0.15, "{kind:?}: {got} fraud events, expected about {want}");
        close("malformed", s.malformed, 0.01);
        close("late", s.late, 0.03);
        close("beyond the watermark", s.beyond_watermark, 0.005);
        for m in [s.malformed_bad_json, s.malformed_wrong_type, s.malformed_missing_field] {
            close("a kind of malformed", m * 3, 0.01);
        }
        // Event time advances at about the rate asked for.
        let in_order = || events.iter().filter(|e| matches!(e.kind, EventKind::Normal | EventKind::Fraud { .. }));
        let first = in_order().next().unwrap().event_time_ms;
        let span_s = (in_order().next_back().unwrap().event_time_ms - first) as f64 / 1000.0;
        let rate = n as f64 / span_s;
        assert!((rate - o.rate).abs() < o.rate * 0.05, "{kind:?}: {rate} events/s of event time");
        // The summary counts what the events say.
        let count = |f: fn(&EventKind) -> bool| events.iter().filter(|e| f(&e.kind)).count() as u64;
        assert_eq!(count(|k| matches!(k, EventKind::Fraud { .. })), s.fraud_events);
        assert_eq!(count(|k| matches!(k, EventKind::Late { .. })), s.late);
        assert_eq!(count(|k| matches!(k, EventKind::BeyondWatermark { .. })), s.beyond_watermark);
        let bursts: HashSet<u64> = events
            .iter()
            .filter_map(|e| if let EventKind::Fraud { burst } = e.kind { Some(burst) } else { None })
            .collect();
        assert_eq!(bursts.len() as u64, s.fraud_bursts);
    }
}

#[test]
fn out_of_orderness_is_bounded_as_labelled() {
    for kind in [GeneratorKind::Fraud, GeneratorKind::AdTech] {
        let o = Options { late_share: 0.05, beyond_watermark_share: 0.01, ..options(5, 100_000) };
        let (events, _) = generate(kind, &o);
        let mut newest = events[0].event_time_ms;
        for ev in &events {
            let behind = newest - ev.event_time_ms;
            match ev.kind {
                EventKind::Late { delay_ms } => {
                    assert!(behind < o.max_out_of_orderness_ms, "late by {behind} ms: {ev:?}");
                    assert!((1_000..=4_000).contains(&delay_ms));
                }
                EventKind::BeyondWatermark { delay_ms } => {
                    assert!(behind > o.max_out_of_orderness_ms + 50_000, "only {behind} ms behind: {ev:?}");
                    assert!((65_000..=125_000).contains(&delay_ms));
                }
                _ => {
                    assert!(behind <= 0, "{behind} ms out of order: {ev:?}");
                    newest = ev.event_time_ms;
                }
            }
        }
    }
}

#[test]
fn fraud_bursts_are_many_payments_of_one_card_within_a_minute() {
    let o = Options { fraud_share: 0.05, ..options(9, 100_000) };
    let (events, s) = generate(GeneratorKind::Fraud, &o);
    let mut bursts: HashMap<u64, Vec<&GeneratedEvent>> = HashMap::new();
    for ev in &events {
        if let EventKind::Fraud { burst } = ev.kind {
            bursts.entry(burst).or_default().push(ev);
        }
    }
    assert!(s.fraud_bursts > 300, "{s:?}");
    let mut multi_country = 0;
    let mut large = 0;
    let last_time = events.last().unwrap().event_time_ms;
    for evs in bursts.values() {
        let span = evs.last().unwrap().event_time_ms - evs[0].event_time_ms;
        assert!(span < 60_000, "a burst spans {span} ms");
        assert!(evs.iter().all(|e| e.key == evs[0].key));
        let first_time = events[0].event_time_ms;
        if evs[0].event_time_ms > first_time + 60_000 && evs.last().unwrap().event_time_ms < last_time - 60_000 {
            assert!((8..=16).contains(&evs.len()), "{} payments", evs.len());
        }
        let objs: Vec<serde_json::Value> = evs.iter().map(|e| serde_json::from_slice(&e.payload).unwrap()).collect();
        let countries: HashSet<&str> = objs.iter().map(|o| o["country"].as_str().unwrap()).collect();
        multi_country += usize::from(countries.len() > 1);
        let total: f64 = objs.iter().map(|o| o["amount"].as_f64().unwrap()).sum();
        large += usize::from(total > 5000.0);
    }
    let n = bursts.len() as f64;
    assert!(multi_country as f64 > n * 0.5, "{multi_country} of {n} bursts across countries");
    assert!(large as f64 > n * 0.3, "{large} of {n} bursts over 5000");
}

#[test]
fn ordinary_cards_stay_home_and_seldom_look_like_fraud() {
    let o = Options { fraud_share: 0.0, late_share: 0.0, malformed_share: 0.0, ..options(13, 200_000) };
    let mut g = FraudGenerator::new(&o).unwrap();
    let events: Vec<GeneratedEvent> = g.by_ref().collect();
    let mut at_home = 0;
    let mut per_minute: HashMap<(String, i64), u32> = HashMap::new();
    for ev in &events {
        let v: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
        at_home += usize::from(g.home_country(&ev.key) == v["country"].as_str());
        *per_minute.entry((ev.key.clone(), ev.event_time_ms / 60_000)).or_default() += 1;
    }
    let share_home = at_home as f64 / events.len() as f64;
    assert!((0.96..0.99).contains(&share_home), "{share_home}");
    let busy = per_minute.values().filter(|&&n| n > 5).count();
    assert_eq!(busy, 0, "{busy} card-minutes with more than 5 ordinary payments");
    let distinct_cards: HashSet<&str> = events.iter().map(|e| e.key.as_str()).collect();
    assert!(distinct_cards.len() > 20_000, "{}", distinct_cards.len());
    assert_eq!(g.cards().count() as u64, g.card_count());
    assert_eq!(g.home_country("card-9999999"), None);
    assert_eq!(g.home_country("not a card"), None);
}

#[test]
fn clicks_follow_their_impressions() {
    let o = Options { late_share: 0.0, malformed_share: 0.0, ..options(17, 100_000) };
    let (events, s) = generate(GeneratorKind::AdTech, &o);
    let mut impressions: HashMap<String, (String, i64)> = HashMap::new();
    let mut clicks = 0;
    for ev in &events {
        let v: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
        let imp = v["impression_id"].as_str().unwrap().to_string();
        if ev.source == "impressions" {
            impressions.insert(imp, (ev.key.clone(), ev.event_time_ms));
        } else {
            clicks += 1;
            if imp.contains("-ffffffff") {
                // Click spam begun before the start, on an impression before it.
                assert!(
                    matches!(ev.kind, EventKind::Fraud { .. }) && ev.event_time_ms < events[0].event_time_ms + 61_000
                );
                continue;
            }
            let (campaign, t) = impressions.get(&imp).expect("a click's impression came before it");
            assert_eq!(campaign, &ev.key);
            assert!((0..=61_000).contains(&(ev.event_time_ms - t)));
        }
    }
    let ctr = (clicks as f64 - s.fraud_events as f64) / impressions.len() as f64;
    assert!((0.005..0.05).contains(&ctr), "{ctr}");
    let campaigns: HashSet<&str> = events.iter().map(|e| e.key.as_str()).collect();
    assert!(campaigns.len() > 150, "{}", campaigns.len());
}

#[test]
fn count_none_is_endless_and_start_is_honoured() {
    let o = Options { start_ms: Some(1_000_000_000_000), ..Options::default() };
    let g = Generator::new(GeneratorKind::Fraud, &o).unwrap();
    let events: Vec<GeneratedEvent> = g.take(5_000).collect();
    assert_eq!(events.len(), 5_000);
    assert_eq!(events[0].event_time_ms, 1_000_000_000_000);
    let default_start = Options::default().start();
    assert_eq!(default_start % 86_400_000, 0);
    assert_eq!(Options::default().start(), default_start);
}

#[test]
fn bad_options_are_refused_with_the_flag() {
    let bad = [
        (Options { rate: 0.0, ..Options::default() }, "--rate"),
        (Options { rate: f64::NAN, ..Options::default() }, "--rate"),
        (Options { rate: 2e7, ..Options::default() }, "--rate"),
        (Options { fraud_share: 0.6, ..Options::default() }, "--fraud-share"),
        (Options { malformed_share: -0.1, ..Options::default() }, "--malformed-share"),
        (Options { late_share: 0.7, beyond_watermark_share: 0.4, ..Options::default() }, "add up to"),
        (Options { keys: Some(0), ..Options::default() }, "--keys"),
        (Options { max_out_of_orderness_ms: 1, ..Options::default() }, "--max-out-of-orderness"),
    ];
    for (o, flag) in bad {
        let err = Generator::new(GeneratorKind::AdTech, &o).unwrap_err().to_string();
        assert!(err.contains(flag), "{err}");
    }
    assert_eq!("ad-tech".parse::<GeneratorKind>(), Ok(GeneratorKind::AdTech));
    assert!("nope".parse::<GeneratorKind>().unwrap_err().contains("fraud"));
}

#[test]
fn tiny_populations_and_extreme_shares_work() {
    for kind in [GeneratorKind::Fraud, GeneratorKind::AdTech] {
        let o = Options { keys: Some(1), fraud_share: 0.5, malformed_share: 0.5, late_share: 0.0, ..options(1, 5_000) };
        let (events, s) = generate(kind, &o);
        assert_eq!(events.len(), 5_000);
        assert!(s.fraud_events > 0 && s.malformed > 1_500, "{s:?}");
        let o = Options { rate: 0.5, ..options(1, 100) };
        assert_eq!(generate(kind, &o).0.len(), 100);
    }
}
