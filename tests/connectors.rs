//! smack-connectors against a real Kafka broker and a real Cassandra node,
//! both run by a smack agent on reserved volumes: the Kafka source (explicit
//! assignment, offsets, commit, lag), the idempotent sink and its dead
//! letters, the admin client (topics, configs, brokers, readiness); the
//! Cassandra DDL, the upsert sink (idempotent replays), reads and the cached
//! lookup; Avro records (Confluent-framed) decoded into Arrow with the Kafka
//! metadata columns, and a malformed one dead-lettered with its reason;
//! rows a Kafka sink writes as CSV and Avro, consumed back and decoded.
//! One broker and one node serve every check (JVMs start slowly).

use crate::support::*;
use smack_connectors::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use smack_connectors::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use smack_connectors::cassandra::{
    self, batch_to_rows, CassandraConfig, CassandraLookup, CassandraSession, CassandraSink, CqlValue, PrimaryKey,
    SinkOptions as CqlSinkOptions,
};
use smack_connectors::kafka::{
    self, assign_partitions, DeadLetter, KafkaAdmin, KafkaClientConfig, KafkaRecord, KafkaSink, KafkaSource,
    PollLimits, SinkConfig, SourceConfig, StartPosition, TopicSpec,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const RECORDS: usize = 300;
const ROWS: usize = 200;

/// Polls `source` until `want` records arrived; fails saying how many did.
async fn read_n(source: &mut KafkaSource, want: usize) -> Vec<KafkaRecord> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let limits = PollLimits { max_records: 64, max_bytes: 1 << 20, max_wait: Duration::from_millis(200) };
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} records arrived from {:?} within {WAIT:?}",
            got.len(),
            source
        );
        let batch = source.poll_batch(&limits).await.expect("poll");
        assert!(batch.len() <= 64, "a batch exceeded max_records: {}", batch.len());
        got.extend(batch);
    }
    got
}

async fn kafka_checks(bootstrap: &str) {
    let client = KafkaClientConfig::new(bootstrap).with_client_id("connectors-e2e");
    let admin = KafkaAdmin::connect(&client).await.expect("admin connects");

    // Topics: create (with a config), idempotent ensure, refusals with reasons.
    let spec = TopicSpec::new("orders", 3, 1).with_config("retention.ms", "3600000");
    admin.create_topic(&spec).await.expect("create orders");
    assert!(!admin.ensure_topic(&spec).await.unwrap(), "ensure_topic of an existing topic creates nothing");
    let again = admin.create_topic(&spec).await.unwrap_err();
    assert_eq!(again.code(), Some(kafka::ErrorCode::TopicAlreadyExists), "{again}");
    assert!(again.to_string().contains("create topic `orders`"), "{again}");
    let rf3 = admin.create_topic(&TopicSpec::new("too-replicated", 1, 3)).await.unwrap_err().to_string();
    assert!(rf3.contains("too-replicated") && rf3.contains("replication factor"), "{rf3}");
    let orders = admin.await_topic("orders", WAIT).await.expect("orders gets leaders");
    assert_eq!(orders.partitions.len(), 3);
    for p in &orders.partitions {
        assert_eq!((p.leader, p.replicas.as_slice(), p.isr.as_slice()), (Some(0), &[0][..], &[0][..]), "{p:?}");
    }
    assert!(admin.list_topics(false).await.unwrap().contains(&"orders".to_string()));
    let missing = admin.describe_topic("no-such-topic").await.unwrap_err().to_string();
    assert!(missing.contains("topic `no-such-topic`") && missing.contains("orders"), "{missing}");

    // Idempotent producer: N keyed records, flush = all acknowledged.
    let mut sink = KafkaSink::new(SinkConfig::new(client.clone())).expect("producer");
    let sent: BTreeSet<(String, String)> = (0..RECORDS).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    for (k, v) in &sent {
        sink.send("orders", Some(k.as_bytes()), Some(v.as_bytes()), &[("origin", b"e2e")]).await.expect("send");
    }
    sink.flush().await.expect("every record acknowledged");
    assert_eq!(sink.acknowledged(), RECORDS as u64);
    assert_eq!(sink.in_flight(), 0);

    // Two stage tasks, each with its explicit partitions, from offset 0.
    let mut sources = Vec::new();
    let mut owned = Vec::new();
    for task in 0..2u32 {
        let parts = assign_partitions(3, task, 2).unwrap();
        let start = StartPosition::Offsets(parts.iter().map(|p| (*p, 0)).collect());
        let cfg = SourceConfig::new(client.clone(), "stage-analyze", "orders", parts.clone()).starting_at(start);
        sources.push(KafkaSource::open(cfg).await.expect("source opens"));
        owned.push(parts);
    }
    assert_eq!(owned, vec![vec![0, 2], vec![1]]);
    // Each reads its partitions' records, nothing else; together, all of them once.
    let mut all = Vec::new();
    let mut per_task = Vec::new();
    for (task, source) in sources.iter_mut().enumerate() {
        let hw: i64 = source.lag().await.unwrap().iter().map(|l| l.high_watermark).sum();
        let got = read_n(source, hw as usize).await;
        assert!(got.iter().all(|r| owned[task].contains(&r.partition)), "task {task} read a partition it does not own");
        per_task.push(got.len());
        all.extend(got);
    }
    assert_eq!(all.len(), RECORDS, "records per task: {per_task:?}");
    let read: BTreeSet<(String, String)> = all
        .iter()
        .map(|r| {
            assert_eq!(r.header("origin"), Some(&b"e2e"[..]), "{r:?}");
            assert!(r.timestamp_ms.is_some_and(|t| t > 0), "{r:?}");
            let s = |b: &Option<Vec<u8>>| String::from_utf8(b.clone().unwrap()).unwrap();
            (s(&r.key), s(&r.payload))
        })
        .collect();
    assert_eq!(read, sent, "what was consumed differs from what was produced");
    // Offsets are contiguous from 0 in every partition; a key stays in one partition.
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut key_partition: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for r in &all {
        by_partition.entry(r.partition).or_default().push(r.offset);
        assert_eq!(*key_partition.entry(r.key.clone().unwrap()).or_insert(r.partition), r.partition);
    }
    for (p, offsets) in &by_partition {
        assert_eq!(offsets, &(0..offsets.len() as i64).collect::<Vec<_>>(), "partition {p}");
    }

    // Commit (async) and read back; lag is zero, then counts new records.
    for s in &sources {
        s.commit_positions().expect("commit");
    }
    for s in &sources {
        let want: BTreeMap<i32, Option<i64>> = s.positions().into_iter().map(|(p, o)| (p, Some(o))).collect();
        wait_for(&format!("committed offsets of {s:?} reach its positions"), WAIT, || async {
            (s.committed().await.ok()? == want).then_some(())
        })
        .await;
        for l in s.lag().await.unwrap() {
            assert_eq!((l.lag, l.position), (0, l.high_watermark), "{l:?}");
        }
    }
    for i in 0..10 {
        let k = format!("late{i}");
        sink.send("orders", Some(k.as_bytes()), Some(b"x"), &[]).await.unwrap();
    }
    sink.flush().await.unwrap();
    let mut lag_by_partition = BTreeMap::new();
    for s in &sources {
        for l in s.lag().await.unwrap() {
            lag_by_partition.insert(l.partition, l.lag);
        }
    }
    assert_eq!(lag_by_partition.values().sum::<i64>(), 10, "{lag_by_partition:?}");

    // A task restarted from its committed offsets reads only what came after.
    drop(sources);
    let parts0 = assign_partitions(3, 0, 2).unwrap();
    let want0: i64 = parts0.iter().map(|p| lag_by_partition[p]).sum();
    let mut resumed =
        KafkaSource::open(SourceConfig::new(client.clone(), "stage-analyze", "orders", parts0.clone())).await.unwrap();
    let again = read_n(&mut resumed, want0 as usize).await;
    assert!(again.iter().all(|r| r.key.as_deref().unwrap().starts_with(b"late")), "replayed old records: {again:?}");
    let bad = KafkaSource::open(SourceConfig::new(client.clone(), "g", "orders", vec![9])).await.unwrap_err();
    assert!(bad.to_string().contains("partition 9 of topic `orders`"), "{bad}");

    // Dead letters keep the record and say why and whence.
    admin.create_topic(&TopicSpec::new("orders.dlq", 1, 1)).await.unwrap();
    admin.await_topic("orders.dlq", WAIT).await.unwrap();
    let poison = &all[0];
    sink.send_dead_letter("orders.dlq", &DeadLetter::of(poison, "expected `amount` to be a number")).await.unwrap();
    sink.flush().await.unwrap();
    let mut dlq = KafkaSource::open(
        SourceConfig::new(client.clone(), "dlq-reader", "orders.dlq", vec![0]).starting_at(StartPosition::Earliest),
    )
    .await
    .unwrap();
    let dead = read_n(&mut dlq, 1).await;
    assert_eq!((&dead[0].key, &dead[0].payload), (&poison.key, &poison.payload));
    assert_eq!(dead[0].header(kafka::DLQ_REASON_HEADER), Some(&b"expected `amount` to be a number"[..]));
    let whence = format!("orders/{}@{}", poison.partition, poison.offset);
    assert_eq!(dead[0].header(kafka::DLQ_SOURCE_HEADER), Some(whence.as_bytes()));

    // Configs: described, altered without losing the other overrides, reset.
    let cfg = admin.describe_topic_configs("orders").await.unwrap();
    assert_eq!(cfg["retention.ms"].value.as_deref(), Some("3600000"));
    assert_eq!(cfg["retention.ms"].source, "DynamicTopic");
    admin
        .alter_topic_configs("orders", &[("cleanup.policy".to_string(), Some("compact,delete".to_string()))].into())
        .await
        .expect("alter configs");
    let cfg = admin.describe_topic_configs("orders").await.unwrap();
    assert_eq!(cfg["cleanup.policy"].value.as_deref(), Some("compact,delete"));
    assert_eq!(cfg["retention.ms"].value.as_deref(), Some("3600000"), "the other override was kept");
    admin.alter_topic_configs("orders", &[("retention.ms".to_string(), None)].into()).await.unwrap();
    let cfg = admin.describe_topic_configs("orders").await.unwrap();
    assert!(cfg["retention.ms"].is_default, "{:?}", cfg["retention.ms"]);
    assert_eq!(cfg["cleanup.policy"].value.as_deref(), Some("compact,delete"));

    // Partitions only grow.
    admin.add_partitions("orders", 4).await.expect("grow to 4");
    wait_for("orders has 4 partitions with leaders", WAIT, || async {
        let t = admin.describe_topic("orders").await.ok()?;
        (t.partitions.len() == 4 && t.partitions.iter().all(|p| p.leader.is_some())).then_some(())
    })
    .await;
    let shrink = admin.add_partitions("orders", 2).await.unwrap_err().to_string();
    assert!(shrink.contains("it has 4 partition(s); asked for 2"), "{shrink}");

    // Brokers and health.
    let brokers = admin.brokers().await.unwrap();
    assert_eq!(brokers.len(), 1, "{brokers:?}");
    let b = &brokers[0];
    assert_eq!((b.id, b.address(), b.rack.as_deref()), (0, bootstrap.to_string(), Some("zone-a")));
    let snapshot = admin.snapshot().await.unwrap();
    let partitions: usize = snapshot.topics.iter().map(|t| t.partitions.len()).sum();
    assert_eq!((b.leader_count, b.replica_count, b.under_replicated), (partitions, partitions, 0), "{b:?}");
    let urp = admin.under_replicated().await.unwrap();
    assert!(urp.healthy() && urp.partitions == partitions, "{urp:?}");
    let ready = admin.broker_ready(0).await.unwrap();
    assert!(ready.ready, "{ready:?}");
    let absent = admin.broker_ready(5).await.unwrap();
    assert!(!absent.ready && absent.reason.contains("not registered"), "{absent:?}");

    // Delete.
    admin.delete_topic("orders.dlq").await.expect("delete");
    wait_for("orders.dlq leaves the topic list", WAIT, || async {
        (!admin.list_topics(true).await.ok()?.contains(&"orders.dlq".to_string())).then_some(())
    })
    .await;
}

/// Appends an Avro zig-zag varint (written here, not with the connectors'
/// encoder, so the decoder is checked against an independent writer).
fn avro_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn avro_str(out: &mut Vec<u8>, s: &str) {
    avro_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// The writer schema of the Avro source: a union with null, a field no
/// column reads (`note`), a logical timestamp.
const AVRO_WRITER: &str = r#"{"type": "record", "name": "Tx", "namespace": "e2e", "fields": [
    {"name": "card_id", "type": "string"},
    {"name": "amount", "type": ["null", "double"]},
    {"name": "note", "type": ["null", "string"]},
    {"name": "n", "type": "int"},
    {"name": "ok", "type": "boolean"},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

/// One produced Avro record: its fields, and its Kafka key.
#[derive(Debug, Clone, PartialEq)]
struct AvroTx {
    card_id: String,
    amount: Option<f64>,
    n: i32,
    ok: bool,
    at: i64,
    key: Option<String>,
}

impl AvroTx {
    fn nth(i: i64) -> AvroTx {
        AvroTx {
            card_id: format!("card-{i}-\u{e9}"),
            amount: (i % 5 != 0).then_some(i as f64 * 1.25),
            n: if i % 2 == 0 { i as i32 } else { -(i as i32) * 1000 },
            ok: i % 3 == 0,
            at: 1_704_067_200_000 + i * 1_000,
            key: (i % 10 != 3).then(|| format!("key-{}", i % 7)),
        }
    }

    /// Confluent wire format: magic 0, schema id 42, the datum.
    fn confluent(&self, i: i64) -> Vec<u8> {
        let mut out = vec![0, 0, 0, 0, 42];
        avro_str(&mut out, &self.card_id);
        match self.amount {
            Some(a) => {
                avro_long(&mut out, 1);
                out.extend_from_slice(&a.to_le_bytes());
            }
            None => avro_long(&mut out, 0),
        }
        if i % 2 == 0 {
            avro_long(&mut out, 1);
            avro_str(&mut out, "skipped");
        } else {
            avro_long(&mut out, 0);
        }
        avro_long(&mut out, self.n as i64);
        out.push(self.ok as u8);
        avro_long(&mut out, self.at);
        out
    }
}

/// Avro records (Confluent-framed, keyed) produced to a real broker, read
/// back by a source and decoded into Arrow: every field and the Kafka
/// metadata columns equal what was produced; a record cut short is
/// reported with its reason and dead-lettered with it.
async fn avro_checks(bootstrap: &str) {
    use smack_connectors::format::{
        metadata_fields, AvroFormat, AvroFraming, AvroSchema, Decoder, RecordFormat, KEY_COLUMN, OFFSET_COLUMN,
        PARTITION_COLUMN, TIMESTAMP_COLUMN,
    };
    const N: i64 = 60;
    let client = KafkaClientConfig::new(bootstrap).with_client_id("connectors-e2e-avro");
    let admin = KafkaAdmin::connect(&client).await.expect("admin connects");
    for t in [TopicSpec::new("avro-tx", 2, 1), TopicSpec::new("avro-tx.dlq", 1, 1)] {
        admin.create_topic(&t).await.expect("create the Avro topics");
        admin.await_topic(&t.name, WAIT).await.expect("the Avro topics get leaders");
    }
    let produced_from = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut sink = KafkaSink::new(SinkConfig::new(client.clone())).expect("producer");
    for i in 0..N {
        let tx = AvroTx::nth(i);
        sink.send("avro-tx", tx.key.as_deref().map(str::as_bytes), Some(&tx.confluent(i)), &[]).await.unwrap();
    }
    let mut cut = AvroTx::nth(N).confluent(N);
    cut.truncate(cut.len() - 3);
    sink.send("avro-tx", Some(b"bad"), Some(&cut), &[]).await.unwrap();
    sink.flush().await.expect("every Avro record acknowledged");
    let produced_to = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;

    let cfg =
        SourceConfig::new(client.clone(), "avro-reader", "avro-tx", vec![0, 1]).starting_at(StartPosition::Earliest);
    let mut source = KafkaSource::open(cfg).await.expect("source opens");
    let records = read_n(&mut source, N as usize + 1).await;

    let mut fields = vec![
        Field::new("card_id", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("n", DataType::Int32, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
    ];
    fields.extend(metadata_fields());
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let format = AvroFormat {
        framing: AvroFraming::Confluent,
        writer: Some(AvroSchema::parse(AVRO_WRITER).expect("the writer schema parses")),
        schema_id: Some(42),
    };
    let decoder = Decoder::new(RecordFormat::Avro(format), schema).expect("the columns fit the writer schema");
    let decoded = decoder.decode(records.iter());

    // The malformed record: reported with its reason, dead-lettered with it.
    assert_eq!(decoded.errors.len(), 1, "{:?}", decoded.errors);
    let bad = &records[decoded.errors[0].index];
    assert_eq!(bad.key.as_deref(), Some(&b"bad"[..]));
    let reason = &decoded.errors[0].reason;
    assert!(reason.starts_with("field at: the record ended at byte"), "{reason}");
    sink.send_dead_letter("avro-tx.dlq", &DeadLetter::of(bad, reason)).await.unwrap();
    sink.flush().await.unwrap();
    let mut dlq = KafkaSource::open(
        SourceConfig::new(client.clone(), "avro-dlq-reader", "avro-tx.dlq", vec![0])
            .starting_at(StartPosition::Earliest),
    )
    .await
    .unwrap();
    let dead = read_n(&mut dlq, 1).await;
    assert_eq!(dead[0].payload.as_deref(), Some(cut.as_slice()));
    assert_eq!(dead[0].header(kafka::DLQ_REASON_HEADER), Some(reason.as_bytes()));

    // Every good record: its fields and its metadata, as produced.
    let b = &decoded.batch;
    assert_eq!(b.num_rows(), N as usize);
    let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
    let (ids, amounts, ns, oks, ats) = (col("card_id"), col("amount"), col("n"), col("ok"), col("at"));
    let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
    let amounts = amounts.as_any().downcast_ref::<Float64Array>().unwrap();
    let ns = ns.as_any().downcast_ref::<smack_connectors::arrow::array::Int32Array>().unwrap();
    let oks = oks.as_any().downcast_ref::<BooleanArray>().unwrap();
    let ats = ats.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
    let (keys, stamps, parts, offsets) =
        (col(KEY_COLUMN), col(TIMESTAMP_COLUMN), col(PARTITION_COLUMN), col(OFFSET_COLUMN));
    let keys = keys.as_any().downcast_ref::<StringArray>().unwrap();
    let stamps = stamps.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
    let parts = parts.as_any().downcast_ref::<smack_connectors::arrow::array::Int32Array>().unwrap();
    let offsets = offsets.as_any().downcast_ref::<Int64Array>().unwrap();
    let mut seen = BTreeSet::new();
    for (row, &index) in decoded.rows.iter().enumerate() {
        let rec = &records[index];
        let i: i64 = ids.value(row).split('-').nth(1).and_then(|s| s.parse().ok()).expect("card-N-é");
        let want = AvroTx::nth(i);
        let got = AvroTx {
            card_id: ids.value(row).to_string(),
            amount: amounts.is_valid(row).then(|| amounts.value(row)),
            n: ns.value(row),
            ok: oks.value(row),
            at: ats.value(row),
            key: keys.is_valid(row).then(|| keys.value(row).to_string()),
        };
        assert_eq!(got, want, "row {row}");
        assert_eq!(Some(stamps.value(row)), rec.timestamp_ms, "row {row}: _timestamp is the record's");
        assert!((produced_from..=produced_to).contains(&stamps.value(row)), "row {row}: {}", stamps.value(row));
        assert_eq!((parts.value(row), offsets.value(row)), (rec.partition, rec.offset), "row {row}");
        seen.insert(i);
    }
    assert_eq!(seen, (0..N).collect::<BTreeSet<_>>(), "every produced record decoded once");
}

/// Rows encoded as a Kafka sink writes them (header-less CSV; Avro,
/// Confluent-framed with a schema id and plain), produced keyed by an
/// idempotent producer to a real broker, consumed back and decoded the way
/// a consumer does: CSV with the same columns, Avro with the writer's
/// schema read from its JSON text. Every row comes back equal.
async fn sink_format_checks(bootstrap: &str) {
    use smack_connectors::format::{to_json_rows, AvroFormat, AvroFraming, AvroSchema, Decoder, Encoder, RecordFormat};
    let client = KafkaClientConfig::new(bootstrap).with_client_id("connectors-e2e-sink-formats");
    let admin = KafkaAdmin::connect(&client).await.expect("admin connects");
    let batch = totals(ROWS, 0.5);
    // What a consumer declares: the same columns, the day (Date32) as its text.
    let mut fields: Vec<Field> = totals_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[5] = Field::new("day", DataType::Utf8, true);
    let consumer = Arc::new(Schema::new(fields));
    let avro = |framing, schema_id| RecordFormat::Avro(AvroFormat { framing, writer: None, schema_id });
    let mut sink = KafkaSink::new(SinkConfig::new(client.clone())).expect("producer");
    for (topic, format) in [
        ("sink-csv", RecordFormat::Csv),
        ("sink-avro", avro(AvroFraming::Confluent, Some(42))),
        ("sink-avro-plain", avro(AvroFraming::Plain, None)),
    ] {
        admin.create_topic(&TopicSpec::new(topic, 2, 1)).await.expect("create the sink topic");
        admin.await_topic(topic, WAIT).await.expect("the sink topic gets leaders");
        let encoder = Encoder::new(format.clone(), batch.schema()).expect("an encoder of the batch's columns");
        let payloads = encoder.encode(&batch).expect("the rows encode");
        let users = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        for (row, payload) in payloads.iter().enumerate() {
            sink.send(topic, Some(users.value(row).as_bytes()), Some(payload), &[]).await.expect("send");
        }
        sink.flush().await.expect("every sink record acknowledged");
        let mut source = KafkaSource::open(
            SourceConfig::new(client.clone(), "sink-format-reader", topic, vec![0, 1])
                .starting_at(StartPosition::Earliest),
        )
        .await
        .expect("source opens");
        let records = read_n(&mut source, ROWS).await;
        let read = match &format {
            RecordFormat::Avro(a) => {
                // The consumer has the writer's schema as JSON text (docs/sinks.md prints it).
                let text = encoder.avro_schema().expect("an Avro writer's schema").to_json().to_string();
                let writer = AvroSchema::parse(&text).expect("the writer's schema parses");
                RecordFormat::Avro(AvroFormat { writer: Some(writer), ..a.clone() })
            }
            other => other.clone(),
        };
        let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.payload.clone().unwrap_or_default()).collect();
        let out = Decoder::new(read, consumer.clone()).expect("a decoder").decode(payloads.iter());
        assert!(out.errors.is_empty(), "{topic}: {:?}", out.errors);
        let as_text = |b: &RecordBatch| {
            let mut rows: Vec<String> =
                to_json_rows(b).unwrap().into_iter().map(|r| serde_json::Value::Object(r).to_string()).collect();
            rows.sort();
            rows
        };
        assert_eq!(as_text(&out.batch), as_text(&batch), "{topic}: the rows consumed back differ");
        if topic == "sink-avro" {
            assert!(records.iter().all(|r| r.payload.as_deref().unwrap()[..5] == [0, 0, 0, 0, 42]), "{topic}");
        }
    }
}

fn totals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("window_start", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("total", DataType::Float64, true),
        Field::new("n", DataType::Int64, true),
        Field::new("flagged", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
    ]))
}

fn totals(rows: usize, bump: f64) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("user-{}", i % 50)))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(
                (0..rows).map(|i| 1_700_000_000_000 + (i / 50) as i64 * 60_000),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from_iter((0..rows).map(|i| (i % 7 != 0).then_some(i as f64 * 1.25 + bump)))),
        Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i as i64))),
        Arc::new(BooleanArray::from_iter((0..rows).map(|i| Some(i % 3 == 0)))),
        Arc::new(Date32Array::from_iter_values((0..rows).map(|i| 19_000 + i as i32))),
    ];
    RecordBatch::try_new(totals_schema(), cols).unwrap()
}

/// A batch's rows as sorted strings: order-free comparison.
fn sorted_rows(b: &RecordBatch) -> Vec<String> {
    let mut rows: Vec<String> = batch_to_rows(b).unwrap().iter().map(|r| format!("{r:?}")).collect();
    rows.sort();
    rows
}

async fn cassandra_checks(contact: &str, dc: &str) {
    // A node that is not there: a clear error, in bounded time.
    let mut nowhere = CassandraConfig::new(&["127.0.0.1:1"]);
    nowhere.connect_timeout = Duration::from_secs(5);
    let e = CassandraSession::connect(&nowhere).await.unwrap_err().to_string();
    assert!(e.contains("cannot connect to 127.0.0.1:1"), "{e}");

    let session = CassandraSession::connect(&CassandraConfig::new(&[contact])).await.expect("cql session");
    let replication = [(dc.to_string(), 1)].into();
    session.create_keyspace("smack_e2e", &replication).await.expect("keyspace");
    session.create_keyspace("smack_e2e", &replication).await.expect("keyspace again (IF NOT EXISTS)");
    let schema = totals_schema();
    let key = PrimaryKey::from_columns(&["user_id", "window_start"]);
    session.create_table("smack_e2e", "totals", &schema, &key).await.expect("table");

    // Upsert the same batch twice: the same rows.
    let batch = totals(ROWS, 0.0);
    let mut sink = CassandraSink::new(&session, "smack_e2e", "totals", &schema, CqlSinkOptions::default())
        .await
        .expect("prepared upsert");
    for _ in 0..2 {
        assert_eq!(sink.write(&batch).await.unwrap(), ROWS);
        sink.flush().await.expect("every row acknowledged");
    }
    assert_eq!((sink.written(), sink.in_flight()), (2 * ROWS as u64, 0));
    let back = session.read_batch("smack_e2e", "totals", schema.clone()).await.expect("read back");
    assert_eq!(back.num_rows(), ROWS, "a replayed upsert added rows");
    assert_eq!(sorted_rows(&back), sorted_rows(&batch));

    // A later version of the rows replaces them in place.
    let newer = totals(ROWS, 1000.0);
    sink.write(&newer).await.unwrap();
    sink.flush().await.unwrap();
    let back = session.read_batch("smack_e2e", "totals", schema.clone()).await.unwrap();
    assert_eq!(sorted_rows(&back), sorted_rows(&newer));

    // Bad batches are refused before anything is sent, or reported at flush.
    let short = batch.project(&[0, 1, 2]).unwrap();
    let e = sink.write(&short).await.unwrap_err().to_string();
    assert!(e.contains("lacks column `n`"), "{e}");
    let mut wrong_cols = batch.columns().to_vec();
    wrong_cols[3] = Arc::new(StringArray::from_iter_values((0..ROWS).map(|i| i.to_string())));
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[3] = Field::new("n", DataType::Utf8, true);
    let wrong = RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), wrong_cols).unwrap();
    let e = sink.write(&wrong).await.unwrap_err().to_string();
    assert!(e.contains("column `n` is Utf8"), "{e}");
    fields[0] = Field::new("user_id", DataType::Utf8, true);
    let mut null_key_cols = batch.slice(0, 1).columns().to_vec();
    null_key_cols[0] = Arc::new(StringArray::from(vec![None::<&str>]));
    fields[3] = Field::new("n", DataType::Int64, true);
    let null_key = RecordBatch::try_new(Arc::new(Schema::new(fields)), null_key_cols).unwrap();
    sink.write(&null_key).await.unwrap();
    let e = sink.flush().await.unwrap_err().to_string();
    assert!(e.contains("1 row(s) were not written to `smack_e2e.totals`"), "{e}");

    // Reads for the CLI.
    let some = session.read_rows("smack_e2e", "totals", Some(5)).await.unwrap();
    assert_eq!(some.rows.len(), 5);
    assert!(some.columns.iter().any(|c| c == "user_id"), "{:?}", some.columns);
    assert_eq!(some.to_json().as_array().map(Vec::len), Some(5));

    // Lookup by key, through a bounded cache.
    let lookup =
        CassandraLookup::new(&session, "smack_e2e", "totals", &["user_id", "window_start"], &["total", "n"], 2)
            .await
            .expect("prepared lookup");
    let ts = |ms: i64| CqlValue::Timestamp(cassandra::CqlTimestamp(ms));
    let k1 = [CqlValue::Text("user-1".into()), ts(1_700_000_000_000)];
    let want = Some(vec![Some(CqlValue::Double(1.25 + 1000.0)), Some(CqlValue::BigInt(1))]);
    assert_eq!(lookup.get(&k1).await.unwrap(), want);
    assert_eq!(lookup.get(&k1).await.unwrap(), want);
    let none = [CqlValue::Text("nobody".into()), ts(0)];
    assert_eq!(lookup.get(&none).await.unwrap(), None);
    assert_eq!(lookup.get(&none).await.unwrap(), None);
    let s = lookup.stats();
    assert_eq!((s.hits, s.misses, s.entries), (2, 2, 2), "{s:?}");
    let k2 = [CqlValue::Text("user-2".into()), ts(1_700_000_000_000)];
    assert!(lookup.get(&k2).await.unwrap().is_some());
    assert_eq!(lookup.stats().entries, 2, "the cache stays within its capacity");
    let e = lookup.get(&k1[..1]).await.unwrap_err().to_string();
    assert!(e.contains("1 key value(s) given for key columns (user_id, window_start)"), "{e}");
    let nulls = back.column(2).null_count();
    assert!(nulls > 0, "null cells read back as nulls");
}

/// The connectors' I/O against one real broker and one real Cassandra node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_against_real_kafka_and_cassandra() {
    let dir = tempfile::tempdir().unwrap();
    let services = start_kafka_and_cassandra(dir.path(), 42100).await;
    let checks = Instant::now();
    let (bootstrap, cql, dc) = (services.bootstrap.clone(), services.cql.clone(), services.dc.clone());
    let kafka = async {
        let t = Instant::now();
        kafka_checks(&bootstrap).await;
        t.elapsed()
    };
    let cassandra = async {
        let t = Instant::now();
        cassandra_checks(&cql, &dc).await;
        t.elapsed()
    };
    let avro = async {
        let t = Instant::now();
        avro_checks(&bootstrap).await;
        t.elapsed()
    };
    let sink_formats = async {
        let t = Instant::now();
        sink_format_checks(&bootstrap).await;
        t.elapsed()
    };
    let (k, c, a, f) = tokio::join!(kafka, cassandra, avro, sink_formats);
    eprintln!(
        "connectors e2e: Kafka and Cassandra ready in {:?}; Kafka checks {k:?}, Cassandra checks {c:?}, \
         Avro checks {a:?}, sink format checks {f:?}; checks in all {:?}",
        services.ready_in,
        checks.elapsed()
    );
}
