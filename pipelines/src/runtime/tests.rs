//! The runtime end to end, in-process: the fraud example's SQL against a
//! plain-Rust computation, checkpoint and restore mid-stream, late rows.

use super::replay::ResumePoint;
use super::*;
use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use smack_connectors::format::to_json_rows;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn fraud_spec() -> PipelineSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fraud-detection/pipeline.yaml");
    crate::load(&path).unwrap()
}

/// A deterministic pseudo-random stream of transactions: mostly in order,
/// some up to 4s out of order (within the 5s bound).
fn transactions(n: usize) -> Vec<(String, f64, String, i64)> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let countries = ["FR", "DE", "ES", "US"];
    (0..n)
        .map(|i| {
            let card = format!("c{}", next() % 7);
            let amount = (next() % 400_000) as f64 / 100.0;
            let country = countries[(next() % 4) as usize].to_string();
            let jitter = (next() % 4_000) as i64;
            (card, amount, country, 1_704_067_200_000 + i as i64 * 700 - jitter)
        })
        .collect()
}

fn batch(rt: &StageRuntime, rows: &[(String, f64, String, i64)]) -> RecordBatch {
    let schema = rt.source_schema("transactions").unwrap();
    RecordBatch::try_new(
        schema.clone(),
        super::schema::with_null_metadata(
            &schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "m"))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.as_str()))),
                Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.3)).with_timezone("UTC")),
            ],
        ),
    )
    .unwrap()
}

use std::sync::Arc;

type Row = (String, i64, i64, i64, u64, i64);

/// The rows of the `suspicious_cards` sink, sorted, floats rounded to cents.
fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let card = col("card_id");
        let card = card.as_any().downcast_ref::<StringArray>().unwrap();
        let start = cast(&col("window_start"), &DataType::Int64).unwrap();
        let end = cast(&col("window_end"), &DataType::Int64).unwrap();
        let (start, end) = (start.as_primitive::<Int64Type>(), end.as_primitive::<Int64Type>());
        let count = col("txn_count");
        let count = count.as_any().downcast_ref::<Int64Array>().unwrap();
        let total = col("total_amount");
        let total = total.as_any().downcast_ref::<Float64Array>().unwrap();
        let countries = col("countries");
        let countries = countries.as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push((
                card.value(i).to_string(),
                start.value(i),
                end.value(i),
                count.value(i),
                (total.value(i) * 100.0).round() as u64,
                countries.value(i),
            ));
        }
    }
    out.sort();
    out
}

/// The fraud stage computed directly: hopping windows of 60s every 30s.
fn expected(txns: &[(String, f64, String, i64)]) -> Vec<Row> {
    let mut w: BTreeMap<(String, i64), (i64, f64, BTreeSet<String>)> = BTreeMap::new();
    for (card, amount, country, ts) in txns {
        let last = ts - ts.rem_euclid(30_000);
        for start in [last - 30_000, last] {
            let e = w.entry((card.clone(), start)).or_default();
            e.0 += 1;
            e.1 += amount;
            e.2.insert(country.clone());
        }
    }
    let mut out: Vec<Row> = w
        .into_iter()
        .filter(|(_, (n, total, c))| *n > 5 || *total > 5000.0 || c.len() > 2)
        .map(|((card, start), (n, total, c))| {
            (card, start, start + 60_000, n, (total * 100.0).round() as u64, c.len() as i64)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_fraud_stage_matches_a_plain_rust_computation() {
    let spec = fraud_spec();
    let mut rt = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    rt.assign_partitions("transactions", &[0]).unwrap();
    let txns = transactions(3_000);
    let mut got = Vec::new();
    for (i, chunk) in txns.chunks(250).enumerate() {
        let out = rt.push("transactions", 0, (i as i64 + 1) * 250, batch(&rt, chunk)).await.unwrap();
        assert!(out.late.is_empty(), "nothing is late within the bound: {:?}", out.late.first().map(|l| &l.reasons));
        got.extend(out.sinks.into_iter().filter(|s| s.sink == "suspicious_cards").map(|s| s.batch));
    }
    got.extend(rt.finish().await.unwrap().sinks.into_iter().filter(|s| s.sink == "suspicious_cards").map(|s| s.batch));
    let want = expected(&txns);
    assert!(want.len() > 10, "the data flags some windows");
    assert_eq!(rows(&got), want);
    assert_eq!(rt.offsets()[&("transactions".to_string(), 0)], 3_000);
}

#[tokio::test]
async fn a_checkpoint_restored_mid_stream_gives_the_same_rows() {
    let spec = fraud_spec();
    let txns = transactions(1_200);
    let (first, second) = txns.split_at(600);

    let mut straight = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    let mut all = Vec::new();
    for chunk in txns.chunks(100) {
        all.extend(straight.push("transactions", 0, 0, batch(&straight, chunk)).await.unwrap().sinks);
    }
    all.extend(straight.finish().await.unwrap().sinks);

    let mut before = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    let mut resumed = Vec::new();
    for chunk in first.chunks(100) {
        resumed.extend(before.push("transactions", 0, 600, batch(&before, chunk)).await.unwrap().sinks);
    }
    let bytes = before.checkpoint_state().unwrap();
    drop(before);
    let mut after = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    after.restore(&bytes).unwrap();
    assert_eq!(after.offsets()[&("transactions".to_string(), 0)], 600);
    assert_eq!(after.checkpoint_state().unwrap(), bytes, "restore is exact");
    for chunk in second.chunks(100) {
        resumed.extend(after.push("transactions", 0, 1_200, batch(&after, chunk)).await.unwrap().sinks);
    }
    resumed.extend(after.finish().await.unwrap().sinks);
    let pick = |s: Vec<SinkBatch>| -> Vec<RecordBatch> {
        s.into_iter().filter(|s| s.sink == "alerts").map(|s| s.batch).collect()
    };
    assert_eq!(rows(&pick(resumed)), rows(&pick(all)));

    let mut fresh = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    assert!(fresh.restore(b"garbage").unwrap_err().to_string().contains("bad magic"));
}

#[tokio::test]
async fn late_rows_come_back_with_their_reason_and_bad_batches_are_refused() {
    let spec = fraud_spec();
    let mut rt = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    let t0 = 1_704_067_200_000;
    let row = |ts: i64| ("c1".to_string(), 1.0, "FR".to_string(), ts);
    rt.push("transactions", 0, 1, batch(&rt, &[row(t0 + 10_000)])).await.unwrap();
    rt.push("transactions", 0, 2, batch(&rt, &[row(t0 + 300_000)])).await.unwrap();
    assert_eq!(rt.watermark("transactions"), Some(t0 + 295_000));
    assert_eq!(rt.watermark("card_velocity"), Some(t0 + 285_000));
    let out = rt.push("transactions", 0, 3, batch(&rt, &[row(t0 + 20_000), row(t0 + 299_000)])).await.unwrap();
    let [late] = out.late.as_slice() else { panic!("one late batch: {:?}", out.late) };
    assert_eq!((late.stage.as_str(), late.input.as_str(), late.rows.num_rows()), ("card_velocity", "transactions", 1));
    assert_eq!(to_json_rows(&late.rows).unwrap()[0]["ts"], "2024-01-01T00:00:20Z");
    assert!(
        late.reasons[0].starts_with("late for stage card_velocity: event time 2024-01-01T00:00:20Z"),
        "{}",
        late.reasons[0]
    );

    let wrong = RecordBatch::try_new(
        Arc::new(datafusion::arrow::datatypes::Schema::new(vec![datafusion::arrow::datatypes::Field::new(
            "x",
            DataType::Int64,
            true,
        )])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let e = rt.push("transactions", 0, 4, wrong).await.unwrap_err().to_string();
    assert!(e.starts_with("source transactions: the batch does not have the source's schema"), "{e}");
    assert!(matches!(rt.push("nope", 0, 0, batch(&rt, &[])).await, Err(RuntimeError::UnknownSource(_))));
}

#[tokio::test]
async fn the_example_pipelines_pass_their_own_tests() {
    for example in ["fraud-detection", "ad-tech"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{example}/pipeline.yaml"));
        let spec = crate::load(&path).unwrap();
        for r in testing::run_tests(&spec).await.unwrap() {
            assert!(r.passed(), "{example}: {}: {:?}", r.name, r.failures);
        }
    }
}

/// Pushes `recs[from..to]` of `partition` in chunks, returning the sink rows.
async fn push_part(
    rt: &mut StageRuntime,
    partition: i32,
    recs: &[(String, f64, String, i64)],
    from: usize,
    to: usize,
    chunk: usize,
) -> Vec<SinkBatch> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let end = (at + chunk).min(to);
        let b = batch(rt, &recs[at..end]);
        out.extend(rt.push_range("transactions", partition, at as i64, end as i64, b).await.unwrap().sinks);
        at = end;
    }
    out
}

fn alerts(s: Vec<SinkBatch>) -> Vec<RecordBatch> {
    s.into_iter().filter(|s| s.sink == "suspicious_cards").map(|s| s.batch).collect()
}

#[tokio::test]
async fn a_fresh_runtime_rebuilds_open_windows_by_replaying_from_the_low_water_offsets() {
    let spec = fraud_spec();
    let txns = transactions(2_400);
    // Two partitions; partition 0 gets a record far behind the watermark
    // (late) just before the checkpoint.
    let mut parts: [Vec<(String, f64, String, i64)>; 2] = [Vec::new(), Vec::new()];
    for (i, t) in txns.iter().enumerate() {
        parts[i % 2].push(t.clone());
        if i == 1_190 {
            parts[0].push(("c1".into(), 9_999.0, "FR".into(), 1_704_067_200_000));
        }
    }
    let cp: [usize; 2] = [parts[0].len() / 2 + 10, parts[1].len() / 2 - 20];

    // The original run: interleaved pushes, a checkpoint at `cp`, then to the end.
    let mut a = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    a.assign_partitions("transactions", &[0, 1]).unwrap();
    let mut before = Vec::new();
    let mut pos = [0usize; 2];
    let mut late = 0;
    while pos != cp {
        for p in 0..2 {
            let to = (pos[p] + 37).min(cp[p]);
            let b = batch(&a, &parts[p][pos[p]..to]);
            let out = a.push_range("transactions", p as i32, pos[p] as i64, to as i64, b).await.unwrap();
            late += out.late.iter().map(|l| l.rows.num_rows()).sum::<usize>();
            before.extend(alerts(out.sinks));
            pos[p] = to;
        }
    }
    assert_eq!(late, 1, "the record far behind is late in the original run");
    let low = a.low_water();
    let marks = a.stage_marks();
    let points: Vec<ResumePoint> = (0..2)
        .map(|p| ResumePoint {
            v: 1,
            pos: a.offsets()[&("transactions".to_string(), p)],
            clock: a.partition_clock("transactions", p),
            stages: marks.clone(),
            dead_letters: BTreeMap::new(),
        })
        .collect();
    for p in 0..2 {
        let l = low[&("transactions".to_string(), p as i32)];
        assert!(l > 0 && (l as usize) < cp[p], "partition {p}: low-water {l} should be inside (0, {})", cp[p]);
        assert_eq!(points[p].pos, cp[p] as i64);
    }
    let mut after = Vec::new();
    for p in 0..2 {
        after.extend(alerts(push_part(&mut a, p as i32, &parts[p], cp[p], parts[p].len(), 50).await));
    }
    after.extend(alerts(a.finish().await.unwrap().sinks));
    let mut all = before.clone();
    all.extend(after);

    // A fresh runtime: replay each partition from its low-water offset to
    // the checkpoint (in another order than the original run), then go on.
    let mut b = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    b.assign_partitions("transactions", &[0, 1]).unwrap();
    let mut replay = replay::Replay::default();
    for (p, point) in points.iter().enumerate() {
        replay.add("transactions", p as i32, point);
    }
    b.begin_replay(replay);
    assert!(b.is_replaying());
    for p in [1usize, 0] {
        let l = low[&("transactions".to_string(), p as i32)] as usize;
        let out = push_part(&mut b, p as i32, &parts[p], l, cp[p], 13).await;
        assert!(out.is_empty(), "a replay emits nothing");
    }
    assert!(b.end_replay().await.unwrap().sinks.is_empty(), "nothing closes at the checkpoint's watermark");
    assert!(!b.is_replaying());
    assert_eq!(b.watermark("transactions"), Some(points.iter().map(|p| p.clock.unwrap() - 5_000).min().unwrap()));
    let mut resumed = before;
    for p in 0..2 {
        resumed.extend(alerts(push_part(&mut b, p as i32, &parts[p], cp[p], parts[p].len(), 50).await));
    }
    resumed.extend(alerts(b.finish().await.unwrap().sinks));
    let want = rows(&all);
    assert!(want.len() > 10);
    assert_eq!(rows(&resumed), want);
    assert_eq!(want, expected(&txns), "the late record counts nowhere");
}

#[tokio::test]
async fn without_a_checkpoint_the_low_water_is_the_position() {
    let spec = fraud_spec();
    let mut rt = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
    rt.assign_partitions("transactions", &[0]).unwrap();
    let txns = transactions(300);
    push_part(&mut rt, 0, &txns, 0, 300, 100).await;
    assert!(rt.low_water()[&("transactions".to_string(), 0)] < 300);
    rt.finish().await.unwrap();
    assert_eq!(rt.low_water()[&("transactions".to_string(), 0)], 300, "every window emitted: nothing to replay");
}

/// The fraud example with a `cards` lookup, and its stage replaced by `sql`.
fn with_cards_lookup(sql: &str) -> PipelineSpec {
    let mut spec = fraud_spec();
    let schema: IndexMap<String, crate::spec::FieldType> = [
        ("card_id".to_string(), crate::spec::FieldType::String),
        ("home_country".to_string(), crate::spec::FieldType::String),
    ]
    .into_iter()
    .collect();
    spec.lookups.insert(
        "cards".into(),
        crate::spec::Lookup::Cassandra(crate::spec::CassandraLookup {
            keyspace: "k".into(),
            table: "cards".into(),
            key: vec!["card_id".into()],
            schema,
            cache: crate::spec::LookupCache::Size(10),
        }),
    );
    spec.stages.get_index_mut(0).unwrap().1.sql = sql.to_string();
    spec
}

#[tokio::test]
async fn a_stage_joins_a_lookup_through_its_provider() {
    let sql = "SELECT t.card_id, t.country, c.home_country FROM transactions t \
               LEFT JOIN cards c ON t.card_id = c.card_id";
    let spec = with_cards_lookup(sql);
    let e = StageRuntime::new(&spec).await.err().unwrap().to_string();
    assert!(e.contains("joins lookup `cards`, which has no rows provider"), "{e}");
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
        datafusion::arrow::datatypes::Field::new("card_id", DataType::Utf8, true),
        datafusion::arrow::datatypes::Field::new("home_country", DataType::Utf8, true),
    ]));
    let rows = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec!["c1", "c2"])), Arc::new(StringArray::from(vec!["FR", "US"]))],
    )
    .unwrap();
    let provider: Arc<dyn LookupProvider> = Arc::new(InlineLookup { rows, key: vec!["card_id".into()] });
    let providers = [("cards".to_string(), provider)].into_iter().collect();
    let mut rt = StageRuntime::with_lookups(&spec, &providers).await.unwrap();
    rt.assign_partitions("transactions", &[0]).unwrap();
    let txns: Vec<(String, f64, String, i64)> = ["c1", "c2", "c3"]
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), 10.0, "DE".to_string(), 1_704_067_200_000 + i as i64))
        .collect();
    let out = rt.push("transactions", 0, 3, batch(&rt, &txns)).await.unwrap();
    let mut got: Vec<String> = Vec::new();
    for s in out.sinks.iter().filter(|s| s.sink == "suspicious_cards") {
        for i in 0..s.batch.num_rows() {
            let home = s.batch.column(2).as_string::<i32>();
            got.push(format!(
                "{} {}",
                s.batch.column(0).as_string::<i32>().value(i),
                if home.is_null(i) { "NULL" } else { home.value(i) }
            ));
        }
    }
    got.sort();
    assert_eq!(got, vec!["c1 FR", "c2 US", "c3 NULL"]);
}

/// A window's rows are computed when its end passes (it then waits out its
/// allowed lateness); records that arrive late but in time change some keys,
/// whose rows are computed again when it closes. A checkpoint taken between
/// the two does not carry the early rows: the restored task computes them at
/// the close.
#[tokio::test]
async fn rows_computed_when_a_window_ends_are_redone_for_keys_changed_before_it_closes() {
    let spec = fraud_spec();
    let t0 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    let tx = |card: &str, ts: i64| (card.to_string(), 1.0, "FR".to_string(), ts);
    // [t0, t0 + 60 s): c1 makes 5 payments (not flagged yet), c2 makes 6.
    let early: Vec<_> = (0..5)
        .map(|i| tx("c1", t0 + 1_000 + i * 1_000))
        .chain((0..6).map(|i| tx("c2", t0 + 2_000 + i * 1_000)))
        .collect();
    // Watermark t0 + 61 s: the window has ended, it closes at t0 + 70 s.
    let ended = vec![tx("c3", t0 + 66_000)];
    // Behind the watermark, within the lateness: c1's sixth, c2's seventh.
    let late = vec![tx("c1", t0 + 59_000), tx("c2", t0 + 59_500)];
    // Watermark t0 + 75 s: the window closes.
    let closes = vec![tx("c3", t0 + 80_000)];
    let all: Vec<_> = [&early, &ended, &late, &closes].into_iter().flatten().cloned().collect();
    let want = expected(&all);
    let in_window = |rows: &[Row], card: &str| -> Vec<i64> {
        rows.iter().filter(|r| r.0 == card && r.1 == t0).map(|r| r.3).collect()
    };
    assert_eq!((in_window(&want, "c1"), in_window(&want, "c2")), (vec![6], vec![7]));

    for restore_in_between in [false, true] {
        let mut rt = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
        let mut got = Vec::new();
        let mut offset = 0;
        for (i, part) in [&early, &ended, &late, &closes].into_iter().enumerate() {
            if restore_in_between && i == 2 {
                let bytes = rt.checkpoint_state().unwrap();
                rt = StageRuntime::with_lookups(&spec, &lookup::empty_lookups(&spec)).await.unwrap();
                rt.restore(&bytes).unwrap();
            }
            offset += part.len() as i64;
            let out = rt.push("transactions", 0, offset, batch(&rt, part)).await.unwrap();
            assert!(out.late.is_empty(), "within the lateness: {:?}", out.late.first().map(|l| &l.reasons));
            got.extend(out.sinks.into_iter().filter(|s| s.sink == "suspicious_cards").map(|s| s.batch));
        }
        let closed_rows = rows(&got);
        assert_eq!((in_window(&closed_rows, "c1"), in_window(&closed_rows, "c2")), (vec![6], vec![7]));
        got.extend(
            rt.finish().await.unwrap().sinks.into_iter().filter(|s| s.sink == "suspicious_cards").map(|s| s.batch),
        );
        assert_eq!(rows(&got), want, "restored in between: {restore_in_between}");
    }
}
