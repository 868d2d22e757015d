//! The record formats' decode throughput, side by side in one run (a
//! benchmark, never a test): the same synthetic card transactions as JSON
//! objects, CSV lines and Confluent-framed Avro datums, decoded into Arrow
//! batches of the fraud example's source schema plus the Kafka metadata
//! columns, as the stage task decodes them (Kafka records, poll-sized
//! batches). Prints records/s of wall time and per CPU-second of the process
//! (user + system from `/proc/self/stat`), and each format's rate relative
//! to JSON's.
//!
//! `cargo bench -p smack-connectors --bench format [-- RECORDS [BATCH]]`
//! (optimised), or with `--profile dev` for a debug build's figures.

use smack_connectors::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use smack_connectors::format::avro::confluent_header;
use smack_connectors::format::{
    format_timestamp, metadata_fields, AvroEncoder, AvroFormat, AvroSchema, Decoder, RecordFormat,
};
use smack_connectors::kafka::KafkaRecord;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Process CPU time (user + system) from `/proc/self/stat`, in ticks of 1/100 s.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// A small deterministic generator (xorshift), so every format gets the same records.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Tx {
    card_id: String,
    amount: f64,
    merchant: String,
    country: &'static str,
    ts: i64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let batch: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000).max(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let countries = ["FR", "DE", "ES", "IT", "US", "GB", "NL", "BE"];
    let t0 = 1_704_067_200_000i64;
    let txs: Vec<Tx> = (0..n)
        .map(|i| Tx {
            card_id: format!("card-{:07}", rng.next() % 1_000_000),
            amount: (rng.next() % 500_000) as f64 / 100.0,
            merchant: format!("merchant-{}", rng.next() % 5_000),
            country: countries[(rng.next() % 8) as usize],
            ts: t0 + i as i64 * 20,
        })
        .collect();

    let mut fields = vec![
        Field::new("card_id", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("merchant", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
    ];
    fields.extend(metadata_fields());
    let schema = Arc::new(Schema::new(fields));
    let encoder = AvroEncoder::new(AvroSchema::derive("transactions", &schema).expect("derived schema"));

    let json: Vec<Vec<u8>> = txs
        .iter()
        .map(|t| {
            format!(
                r#"{{"card_id":"{}","amount":{},"merchant":"{}","country":"{}","ts":"{}"}}"#,
                t.card_id,
                t.amount,
                t.merchant,
                t.country,
                format_timestamp(t.ts)
            )
            .into_bytes()
        })
        .collect();
    let csv: Vec<Vec<u8>> = txs
        .iter()
        .map(|t| format!("{},{},{},{},{}", t.card_id, t.amount, t.merchant, t.country, t.ts).into_bytes())
        .collect();
    let avro: Vec<Vec<u8>> = json
        .iter()
        .map(|j| {
            let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(j).expect("JSON");
            let mut out = confluent_header(1).to_vec();
            encoder.encode(&obj, &mut out).expect("encodes");
            out
        })
        .collect();
    let records = |payloads: &[Vec<u8>]| -> Vec<KafkaRecord> {
        payloads
            .iter()
            .zip(&txs)
            .enumerate()
            .map(|(i, (p, t))| KafkaRecord {
                topic: "transactions".into(),
                partition: 0,
                offset: i as i64,
                key: Some(t.card_id.as_bytes().to_vec()),
                payload: Some(p.clone()),
                timestamp_ms: Some(t.ts),
                headers: Vec::new(),
            })
            .collect()
    };

    println!("{n} records, batches of {batch}");
    let mut json_rate = None;
    for (name, format, payloads) in [
        ("json", RecordFormat::Json, &json),
        ("csv", RecordFormat::Csv, &csv),
        ("avro (confluent)", RecordFormat::Avro(AvroFormat::default()), &avro),
    ] {
        let decoder = Decoder::new(format, schema.clone()).expect("decoder");
        let recs = records(payloads);
        let bytes: usize = payloads.iter().map(Vec::len).sum();
        let (wall, cpu) = (Instant::now(), cpu_time());
        let mut rows = 0usize;
        for chunk in recs.chunks(batch) {
            let d = decoder.decode(chunk.iter());
            assert!(d.errors.is_empty(), "{name}: {:?}", d.errors.first());
            rows += d.batch.num_rows();
        }
        let (wall, cpu) = (wall.elapsed(), cpu_time().saturating_sub(cpu));
        assert_eq!(rows, n);
        let per_cpu = n as f64 / cpu.as_secs_f64().max(0.01);
        let base = *json_rate.get_or_insert(per_cpu);
        println!(
            "decode {name:<17} {:>7.1} MB {:>8.3} s wall {:>8.3} s cpu {:>11.0} records/s {:>11.0} records/cpu-s  x{:.2} of json",
            bytes as f64 / 1e6,
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            n as f64 / wall.as_secs_f64(),
            per_cpu,
            per_cpu / base
        );
    }
}
