//! `smack stage run` against a real Kafka broker and a real Cassandra node,
//! both run by a smack agent; the stage task itself runs on that agent, on a
//! persistent volume of its own. One broker and one node serve all checks:
//!
//! 1. A seeded fraud dataset (with malformed records) through the fraud
//!    example's stage to the end: the rows in Cassandra equal an answer
//!    computed here in plain Rust from the same events; the dead-letter
//!    topic holds exactly the malformed records; the alerts topic one record
//!    per row.
//! 2. The same, with the stage task SIGKILLed several times mid-stream and
//!    relaunched on its volume: the same rows, and still exactly one dead
//!    letter per malformed record.
//! 3. Out-of-order records one per micro-batch: those within the watermark
//!    and the allowed lateness land in their windows, a later one goes to
//!    the dead-letter topic as late.
//! 4. A replaced task: SIGKILLed mid-stream after a few checkpoints, its
//!    volume destroyed, a new task on a fresh volume rebuilds the open
//!    windows by replaying from the low-water offsets committed to Kafka:
//!    the same rows, one dead letter per malformed record.
//! 5. The stage joining its card home-country lookup (rows written here):
//!    LEFT JOIN and JOIN, each window's count of purchases away from home
//!    equal to an answer computed here.
//!
//! A second test (a cluster of its own, so it runs alone too):
//! `full_cache_lookup_sees_rows_added_after_the_task_started`: a lookup held
//! whole in memory (`cache: {mode: full, reload: 2s}`) sees a row inserted
//! after the task loaded the table, once a reload has run.

use crate::support::*;
use smack_connectors::cassandra::{CassandraConfig, CassandraSession, CqlValue};
use smack_connectors::kafka::{
    KafkaAdmin, KafkaClientConfig, KafkaRecord, KafkaSink, KafkaSource, PollLimits, SinkConfig, SourceConfig,
    StartPosition, DLQ_REASON_HEADER, DLQ_SOURCE_HEADER,
};
use smack_operator::resources::*;
use smack_pipelines::generate::{parse_rfc3339_ms, GeneratedEvent, Generator, GeneratorKind, Options};
use smack_pipelines::task::{dead_letter_topic, prepare, PrepareOptions};
use smack_pipelines::PipelineSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PORT_BASE: u16 = 42200;
// Generous: a deadline for a run under a loaded machine, not a measure.
const RUN_LIMIT: Duration = Duration::from_secs(300);
const STAGE: &str = "card_velocity";

/// A window row: (card, window start) → (window end, count, total, countries).
type Rows = BTreeMap<(String, i64), (i64, i64, f64, i64)>;

/// The fraud example with its names made unique to `tag` and sized for one broker.
fn pipeline_yaml(tag: &str, partitions: u32) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fraud-detection/pipeline.yaml"))
        .expect("the fraud example");
    let out = text
        .replace("name: fraud-detection", &format!("name: fraud-{tag}"))
        .replace("topic: transactions", &format!("topic: {tag}-transactions"))
        .replace("topic: fraud-alerts", &format!("topic: {tag}-fraud-alerts"))
        .replace("keyspace: fraud", &format!("keyspace: fraud_{tag}"))
        .replace("partitions: 6", &format!("partitions: {partitions}"))
        .replace("replication: 3", "replication: 1");
    assert!(out.contains(&format!("topic: {tag}-transactions")), "the example changed; update this test");
    out
}

struct Scenario {
    tag: String,
    yaml: PathBuf,
    spec: PipelineSpec,
}

impl Scenario {
    async fn new(work: &Path, tag: &str, partitions: u32, s: &Services) -> Scenario {
        let text = pipeline_yaml(tag, partitions);
        let yaml = work.join(format!("{tag}.yaml"));
        std::fs::write(&yaml, &text).unwrap();
        let spec = PipelineSpec::from_yaml(&text, &yaml.display().to_string()).expect("the modified example is valid");
        let done = prepare(&spec, &s.admin, Some(&s.session), &PrepareOptions::new(s.dc.clone(), 1))
            .await
            .expect("topics and tables created");
        assert_eq!(done.tables, vec![format!("fraud_{tag}.suspicious_cards")]);
        Scenario { tag: tag.to_string(), yaml, spec }
    }

    fn topic(&self) -> String {
        format!("{}-transactions", self.tag)
    }

    fn dead_letters(&self) -> String {
        dead_letter_topic(&self.spec.name, "transactions")
    }

    /// The task's command: the smack binary this test was built with (the
    /// agent's own `$SMACK_BIN` may be a binary rebuilt since it started).
    fn command(&self, s: &Services, extra: &str) -> String {
        self.command_with(s, true, extra)
    }

    /// The task's command; without `until_idle` it runs until stopped.
    fn command_with(&self, s: &Services, until_idle: bool, extra: &str) -> String {
        format!(
            "exec {} stage run --pipeline {} --stage {STAGE} --task-index 0 --task-count 1 \
             --bootstrap {} --cassandra {} --local-dc {} --state-dir-volume \"$VOLUME_STATE\" {} {extra}",
            smack_bin(),
            self.yaml.display(),
            s.bootstrap,
            s.cql,
            s.dc,
            if until_idle { "--until-idle" } else { "" }
        )
    }

    async fn rows(&self, s: &Services) -> Rows {
        let got =
            s.session.read_rows(&format!("fraud_{}", self.tag), "suspicious_cards", None).await.expect("read rows");
        let col = |name: &str| got.columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}"));
        let (card, start, end, count, total, countries) = (
            col("card_id"),
            col("window_start"),
            col("window_end"),
            col("txn_count"),
            col("total_amount"),
            col("countries"),
        );
        got.rows
            .iter()
            .map(|r| {
                let text = |i: usize| match &r[i] {
                    Some(CqlValue::Text(s)) | Some(CqlValue::Ascii(s)) => s.clone(),
                    other => panic!("column {} is {other:?}, expected text", got.columns[i]),
                };
                let ms = |i: usize| match &r[i] {
                    Some(CqlValue::Timestamp(t)) => t.0,
                    other => panic!("column {} is {other:?}, expected a timestamp", got.columns[i]),
                };
                let long = |i: usize| match &r[i] {
                    Some(CqlValue::BigInt(n)) => *n,
                    Some(CqlValue::Int(n)) => i64::from(*n),
                    other => panic!("column {} is {other:?}, expected a bigint", got.columns[i]),
                };
                let double = |i: usize| match &r[i] {
                    Some(CqlValue::Double(d)) => *d,
                    other => panic!("column {} is {other:?}, expected a double", got.columns[i]),
                };
                ((text(card), ms(start)), (ms(end), long(count), double(total), long(countries)))
            })
            .collect()
    }
}

struct Services {
    kc: KafkaAndCassandra,
    work: PathBuf,
    bootstrap: String,
    cql: String,
    dc: String,
    admin: KafkaAdmin,
    session: CassandraSession,
    client: KafkaClientConfig,
}

/// The options of [`dataset`].
fn dataset_options() -> Options {
    Options {
        seed: 7,
        rate: 100.0,
        count: Some(12_000),
        keys: Some(2_000),
        malformed_share: 0.01,
        ..Options::default()
    }
}

/// The fraud dataset: seeded, with fraud bursts, late-but-within-watermark
/// events and malformed records.
fn dataset() -> Vec<GeneratedEvent> {
    let events: Vec<GeneratedEvent> =
        Generator::new(GeneratorKind::Fraud, &dataset_options()).expect("options").collect();
    assert!(events.iter().filter(|e| e.malformed).count() > 50, "the dataset should have malformed records");
    events
}

/// The answer, computed here: every well-formed transaction counted in the
/// two hopping windows (1 minute long, every 30 seconds) holding its time;
/// a (card, window) is kept when it has more than 5 transactions, more than
/// 5000 in total, or more than 2 countries. No event of the dataset is
/// behind the watermark by more than the allowed lateness, so none is late.
fn expected(events: &[GeneratedEvent]) -> Rows {
    #[derive(Default)]
    struct Acc {
        count: i64,
        total: f64,
        countries: BTreeSet<String>,
    }
    let mut acc: BTreeMap<(String, i64), Acc> = BTreeMap::new();
    for e in events.iter().filter(|e| !e.malformed) {
        let v: serde_json::Value = serde_json::from_slice(&e.payload).expect("a well-formed event is JSON");
        let card = v["card_id"].as_str().expect("card_id").to_string();
        let amount = v["amount"].as_f64().expect("amount");
        let country = v["country"].as_str().expect("country").to_string();
        let ts = match &v["ts"] {
            serde_json::Value::String(s) => parse_rfc3339_ms(s).expect("ts"),
            other => other.as_i64().expect("ts"),
        };
        assert_eq!(ts, e.event_time_ms);
        let last_start = ts.div_euclid(30_000) * 30_000;
        for start in [last_start - 30_000, last_start] {
            let a = acc.entry((card.clone(), start)).or_default();
            a.count += 1;
            a.total += amount;
            a.countries.insert(country.clone());
        }
    }
    acc.into_iter()
        .filter(|(_, a)| a.count > 5 || a.total > 5000.0 || a.countries.len() > 2)
        .map(|((card, start), a)| ((card, start), (start + 60_000, a.count, a.total, a.countries.len() as i64)))
        .collect()
}

fn assert_same_rows(what: &str, got: &Rows, want: &Rows) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} rows, expected {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        got.len(),
        want.len()
    );
    for (k, w) in want {
        let g = &got[k];
        let close = (g.2 - w.2).abs() <= 1e-9 * w.2.abs().max(1.0);
        assert!(g.0 == w.0 && g.1 == w.1 && close && g.3 == w.3, "{what}: row {k:?} is {g:?}, expected {w:?}");
    }
}

async fn produce(s: &Services, topic: &str, events: &[GeneratedEvent]) {
    let mut sink = KafkaSink::new(SinkConfig::new(s.client.clone())).expect("producer");
    for e in events {
        sink.send(topic, Some(e.key.as_bytes()), Some(&e.payload), &[]).await.expect("produce");
    }
    sink.flush().await.expect("every event acknowledged");
}

/// Every record of a topic's partitions, from the start to the current end.
async fn read_all(s: &Services, topic: &str, partitions: Vec<i32>) -> Vec<KafkaRecord> {
    let start = StartPosition::Offsets(partitions.iter().map(|p| (*p, 0)).collect());
    let mut src = KafkaSource::open(
        SourceConfig::new(s.client.clone(), "stage-e2e-reader", topic, partitions).starting_at(start),
    )
    .await
    .expect("reader");
    let ends: BTreeMap<i32, i64> =
        src.lag().await.expect("lag").iter().map(|l| (l.partition, l.high_watermark)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let limits = PollLimits { max_records: 5000, max_bytes: 8 << 20, max_wait: Duration::from_millis(200) };
    let mut out = Vec::new();
    while !ends.iter().all(|(p, e)| src.positions().get(p).copied().unwrap_or(0) >= *e) {
        assert!(Instant::now() < deadline, "could not read {topic} to its end {ends:?}");
        out.extend(src.poll_batch(&limits).await.expect("poll"));
    }
    out
}

fn header(r: &KafkaRecord, name: &str) -> String {
    String::from_utf8_lossy(r.header(name).unwrap_or_default()).into_owned()
}

/// The stage task on the agent: a reservation with a volume mounted at `state`.
struct StageTask {
    reservation: String,
    runs: u32,
    /// Its metrics port (reserved with it).
    port: u16,
}

impl StageTask {
    fn id(&self) -> String {
        format!("{}-run{}", self.reservation, self.runs)
    }

    /// Launches a run (reserving and creating the volume on the first).
    async fn launch(&mut self, s: &mut Services, command: String) -> String {
        self.runs += 1;
        let id = self.id();
        let port = self.port;
        let resources = Resources::new(0.5, 512, 0).with_ports(PortSet::from_ranges([PortRange::new(port, port)]));
        let fw = &mut s.kc.fw;
        let mut ops = Vec::new();
        let offer = if self.runs == 1 {
            let offer = fw
                .offer_where("with room for a stage task", Duration::from_secs(30), |o| {
                    o.unreserved.cpus >= 0.5 && o.unreserved.ports.contains_port(port)
                })
                .await;
            let mut r = resources.clone();
            r.disk = 64;
            ops.push(Operation::Reserve {
                id: self.reservation.clone(),
                resources: r,
                labels: [("resource_id".to_string(), self.reservation.clone())].into(),
            });
            ops.push(Operation::CreateVolume {
                reservation: self.reservation.clone(),
                volume: Volume {
                    id: format!("{}-state", self.reservation),
                    source: VolumeSource::Root { size: 64 },
                    container_path: "state".into(),
                    host_path: String::new(),
                },
            });
            offer
        } else {
            let rid = self.reservation.clone();
            fw.offer_where("with the stage task's reservation free", Duration::from_secs(30), move |o| {
                o.reservation(&rid).is_some_and(|r| r.free.cpus >= 0.5)
            })
            .await
        };
        let mut task = TaskInfo {
            reservation: Some(self.reservation.clone()),
            volumes: vec![format!("{}-state", self.reservation)],
            kill_grace_period_ms: 10_000,
            ..TaskInfo::new(id.clone(), command, resources)
        };
        task.env.insert("RUST_LOG".into(), "info".into());
        ops.push(Operation::Launch { task });
        fw.accept(offer.id, ops).await.expect("accept the stage task");
        id
    }

    /// Destroys the volume and releases the reservation (the task ended).
    async fn release(&self, s: &mut Services) {
        let rid = self.reservation.clone();
        let fw = &mut s.kc.fw;
        let offer = fw
            .offer_where("with the stage task's reservation free", Duration::from_secs(30), {
                let rid = rid.clone();
                move |o| o.reservation(&rid).is_some_and(|r| r.free.cpus >= 0.5)
            })
            .await;
        let ops = vec![
            Operation::DestroyVolume { reservation: rid.clone(), volume: format!("{rid}-state") },
            Operation::Unreserve { id: rid.clone() },
        ];
        fw.accept(offer.id, ops).await.expect("destroy the volume and unreserve");
    }

    fn logs(&self, s: &Services) -> String {
        agent_task_log_tails(&s.work, "a1", &self.id(), 40)
    }

    /// Waits for the current run to end; returns its final status.
    async fn ended(&self, s: &mut Services) -> TaskStatus {
        let id = self.id();
        let ended = tokio::time::timeout(
            RUN_LIMIT,
            s.kc.fw
                .status_where(&format!("{id} ended"), RUN_LIMIT * 2, |st| st.task_id == id && st.state.is_terminal()),
        )
        .await;
        match ended {
            Ok(st) => st,
            Err(_) => panic!("{id} did not end within {RUN_LIMIT:?}\n{}", self.logs(s)),
        }
    }

    async fn run_to_end(&self, s: &mut Services) {
        let st = self.ended(s).await;
        assert_eq!(st.state, TaskState::Finished, "{} ended {} {}\n{}", self.id(), st.state, st.message, self.logs(s));
    }

    fn sandbox(&self, s: &Services) -> Option<PathBuf> {
        agent_task_sandbox(&s.work, "a1", &self.id())
    }

    /// The latest checkpoint epoch on the volume.
    fn epoch(&self, s: &Services) -> Option<u64> {
        let latest = self.sandbox(s)?.join("state").join("checkpoints").join("LATEST");
        std::fs::read_to_string(latest).ok()?.trim().parse().ok()
    }

    /// The pids of the processes running in the current run's sandbox.
    fn pids(&self, s: &Services) -> Vec<i32> {
        let Some(sandbox) = self.sandbox(s) else { return Vec::new() };
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
                std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd == sandbox).then_some(pid)
            })
            .collect()
    }

    /// Whether the current run's process is up.
    fn running(&self, s: &Services) -> bool {
        !self.pids(s).is_empty()
    }

    /// Signals the current run's process (the one running in its sandbox).
    fn signal(&self, s: &Services, sig: nix::sys::signal::Signal) -> bool {
        let mut sent = false;
        for pid in self.pids(s) {
            sent |= nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok();
        }
        sent
    }
}

/// Check 1: the dataset to the end in one run.
async fn straight_run(s: &mut Services, events: &[GeneratedEvent], want: &Rows, malformed: usize) -> Rows {
    let sc = Scenario::new(&s.work, "straight", 6, s).await;
    produce(s, &sc.topic(), events).await;
    let mut task = StageTask { reservation: "stage-straight".into(), runs: 0, port: PORT_BASE + 5 };
    let cmd = sc.command(s, "--checkpoint-interval 2s");
    task.launch(s, cmd).await;
    task.run_to_end(s).await;

    let got = sc.rows(s).await;
    assert_same_rows("one run", &got, want);
    let letters = read_all(s, &sc.dead_letters(), vec![0]).await;
    assert_eq!(letters.len(), malformed, "dead letters, expected one per malformed record");
    for r in &letters {
        let reason = header(r, DLQ_REASON_HEADER);
        assert!(reason.starts_with("does not decode"), "dead letter reason: {reason}");
        assert!(header(r, DLQ_SOURCE_HEADER).starts_with(&format!("{}/", sc.topic())), "{r:?}");
    }
    let alerts = read_all(s, &format!("{}-fraud-alerts", sc.tag), (0..6).collect()).await;
    assert_eq!(alerts.len(), got.len(), "one alert per suspicious (card, window)");
    task.release(s).await;
    got
}

/// Check 4: killed mid-stream, its volume lost, replaced on a fresh one.
///
/// Deterministic by construction: the lost task runs without `--until-idle`
/// (it never ends by itself) on the first two thirds of the dataset; once
/// the resume points it committed to Kafka cover all of them (so windows
/// closed and were emitted, and the low-water offsets moved past them), the
/// next sixth is produced, the task is SIGKILLed after it checkpointed some
/// of it, and its volume destroyed. Whatever it did after its last commit is
/// lost with it; the outcome asserted does not depend on where the kill
/// falls. The last sixth is produced after the kill, so the replacement
/// reads some records fresh after its replay.
async fn replaced(s: &mut Services, events: &[GeneratedEvent], want: &Rows, malformed: usize) {
    use smack_pipelines::runtime::replay::ResumePoint;
    const PARTITIONS: u32 = 6;
    let sc = Scenario::new(&s.work, "replaced", PARTITIONS, s).await;
    let (first, rest) = events.split_at(events.len() * 2 / 3);
    let (second, last) = rest.split_at(rest.len() / 2);
    produce(s, &sc.topic(), first).await;
    // Reads the group's commits: per partition, the low-water offset and the
    // resume point in its metadata (assigned, not subscribed: it does not
    // join the group).
    let group = format!("smack.{}.{STAGE}", sc.spec.name);
    let all: Vec<i32> = (0..PARTITIONS as i32).collect();
    let probe = KafkaSource::open(
        SourceConfig::new(s.client.clone(), group.clone(), sc.topic(), all.clone()).starting_at(StartPosition::Latest),
    )
    .await
    .expect("a probe of the stage's group");
    let commits = || async {
        let got = probe.committed_with_metadata().await.expect("committed offsets");
        got.into_iter()
            .filter_map(|(p, c)| {
                let (offset, meta) = c?;
                Some((p, (offset, ResumePoint::decode(&meta)?)))
            })
            .collect::<BTreeMap<i32, (i64, ResumePoint)>>()
    };
    let ends: BTreeMap<i32, i64> =
        probe.lag().await.expect("the topic's ends").iter().map(|l| (l.partition, l.high_watermark)).collect();

    let mut lost = StageTask { reservation: "stage-lost".into(), runs: 0, port: PORT_BASE + 8 };
    let cmd = |s: &Services, port: u16, until_idle: bool| {
        sc.command_with(
            s,
            until_idle,
            &format!(
                "--checkpoint-interval 500ms --max-batch-records 100 --idle-timeout 1h --metrics-port {port} \
                 --metrics-host {}",
                s.kc.host
            ),
        )
    };
    lost.launch(s, cmd(s, lost.port, false)).await;
    let covers = |c: &BTreeMap<i32, (i64, ResumePoint)>, ends: &BTreeMap<i32, i64>| {
        ends.iter().all(|(p, end)| c.get(p).is_some_and(|(_, point)| point.pos >= *end))
    };
    let deadline = Instant::now() + RUN_LIMIT;
    let committed = loop {
        let c = commits().await;
        if covers(&c, &ends) {
            break c;
        }
        let done = s.kc.fw.statuses.iter().find(|st| st.task_id == lost.id() && st.state.is_terminal()).cloned();
        assert!(done.is_none(), "{} ended by itself\n{}", lost.id(), lost.logs(s));
        assert!(
            Instant::now() < deadline,
            "{} did not commit resume points past {ends:?} (has {c:?})\n{}",
            lost.id(),
            lost.logs(s)
        );
        s.kc.fw.idle(Duration::from_millis(200)).await;
    };
    // Windows closed before that commit: their rows are in Cassandra, and
    // the low-water offsets (where a replay starts) moved past them.
    assert!(!sc.rows(s).await.is_empty(), "the lost task emitted no row before its kill\n{}", lost.logs(s));
    for (p, (low, point)) in &committed {
        assert!(*low > 0 && *low <= point.pos, "partition {p}: low-water offset {low}, position {}", point.pos);
    }

    // More of the stream; killed once it committed a checkpoint into it.
    produce(s, &sc.topic(), second).await;
    let deadline = Instant::now() + RUN_LIMIT;
    while !commits().await.iter().any(|(p, (_, point))| point.pos > ends[p]) {
        assert!(Instant::now() < deadline, "{} read nothing past {ends:?}\n{}", lost.id(), lost.logs(s));
        s.kc.fw.idle(Duration::from_millis(100)).await;
    }
    s.kc.fw.idle(Duration::from_millis(250)).await;
    assert!(lost.signal(s, nix::sys::signal::Signal::SIGKILL), "no process of {} to signal", lost.id());
    let st = lost.ended(s).await;
    assert!(st.state != TaskState::Finished, "{} finished although it was killed", lost.id());
    // The disk is gone: the replacement gets a fresh volume elsewhere.
    lost.release(s).await;
    drop(probe);
    produce(s, &sc.topic(), last).await;
    let mut replacement = StageTask { reservation: "stage-replacement".into(), runs: 0, port: PORT_BASE + 9 };
    replacement.launch(s, cmd(s, replacement.port, true)).await;
    replacement.run_to_end(s).await;
    let out = replacement.sandbox(s).map(|sb| read(sb.join("stdout"))).unwrap_or_default();
    eprintln!("stage e2e: the replacement: {}", out.trim());
    assert!(!out.contains("resumed from epoch"), "the replacement found a checkpoint on a fresh volume: {out}");
    assert!(out.contains("records replayed from Kafka"), "the replacement replayed nothing: {out}");
    let number = |before: &str| -> usize {
        let at = out.find(before).unwrap_or_else(|| panic!("no `{before}` in {out}"));
        out[..at].split_whitespace().last().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{out}"))
    };
    let (read_in, replayed) = (number(" records in"), number(" records replayed"));
    assert!(
        read_in < events.len(),
        "the replacement read every record from the start: the low-water offsets should have passed closed windows: {out}"
    );
    assert!(read_in >= replayed + last.len(), "the replacement did not read on past its replay: {out}");

    assert_same_rows("a task replaced on a fresh volume", &sc.rows(s).await, want);
    let letters = read_all(s, &sc.dead_letters(), vec![0]).await;
    let sources: BTreeSet<String> = letters.iter().map(|r| header(r, DLQ_SOURCE_HEADER)).collect();
    assert_eq!(sources.len(), malformed, "distinct dead letters, expected one per malformed record");
    assert_eq!(letters.len(), malformed, "dead letters sent twice across the replacement");
    replacement.release(s).await;
}

/// Check 2: the same, SIGKILLed mid-stream and relaunched on its volume.
async fn killed_runs(s: &mut Services, events: &[GeneratedEvent], want: &Rows, malformed: usize) -> u32 {
    let sc = Scenario::new(&s.work, "killed", 6, s).await;
    produce(s, &sc.topic(), events).await;
    let mut task = StageTask { reservation: "stage-killed".into(), runs: 0, port: PORT_BASE + 6 };
    let cmd = sc.command(
        s,
        &format!(
            "--checkpoint-interval 500ms --max-batch-records 20 --metrics-port {} --metrics-host {}",
            task.port, s.kc.host
        ),
    );
    use nix::sys::signal::Signal;
    // Three SIGKILLs, and a SIGTERM in between (a clean stop: sinks flushed,
    // a last checkpoint, exit 0); each one checkpoint into the run.
    const STOPS: [Signal; 4] = [Signal::SIGKILL, Signal::SIGTERM, Signal::SIGKILL, Signal::SIGKILL];
    let mut metrics_seen = false;
    let mut before = 0;
    for (n, sig) in STOPS.into_iter().enumerate() {
        task.launch(s, cmd.clone()).await;
        let deadline = Instant::now() + RUN_LIMIT;
        loop {
            // One checkpoint into the run: stopped early, so a fast machine
            // does not read the whole dataset before the last stop.
            if task.epoch(s).unwrap_or(0) > before && task.running(s) {
                break;
            }
            let done = s.kc.fw.statuses.iter().find(|st| st.task_id == task.id() && st.state.is_terminal()).cloned();
            if let Some(st) = done {
                panic!(
                    "run {} ended ({} {}) before stop {n}: the dataset is too small to stop it mid-stream\n{}",
                    task.id(),
                    st.state,
                    st.message,
                    task.logs(s)
                );
            }
            assert!(Instant::now() < deadline, "run {} wrote no checkpoints\n{}", task.id(), task.logs(s));
            s.kc.fw.idle(Duration::from_millis(50)).await;
        }
        if !metrics_seen {
            let url = format!("http://{}:{}/metrics", s.kc.host, task.port);
            let text = reqwest::get(&url).await.expect("metrics answer").text().await.unwrap();
            for m in ["smack_stage_records_in_total{source=\"transactions\"}", "smack_stage_checkpoint_size_bytes"] {
                assert!(text.contains(m), "{m} missing from the metrics:\n{text}");
            }
            metrics_seen = true;
        }
        // Halfway to the next checkpoint: records (and dead letters) after
        // the last one are lost with the process and replayed.
        s.kc.fw.idle(Duration::from_millis(250)).await;
        assert!(task.signal(s, sig), "no process of {} to signal\n{}", task.id(), task.logs(s));
        let st = task.ended(s).await;
        if sig == Signal::SIGTERM {
            assert_eq!(st.state, TaskState::Finished, "{} after SIGTERM: {}\n{}", task.id(), st.message, task.logs(s));
            let stderr = task.sandbox(s).map(|sb| read(sb.join("stderr"))).unwrap_or_default();
            assert!(stderr.contains("stopped: sinks flushed, checkpoint written"), "{}", task.logs(s));
        } else {
            assert!(st.state != TaskState::Finished, "run {} finished although it was killed", task.id());
        }
        before = task.epoch(s).unwrap_or(0);
    }
    task.launch(s, cmd).await;
    task.run_to_end(s).await;
    let last = task.sandbox(s).map(|sb| read(sb.join("stdout"))).unwrap_or_default();
    let replays_skipping = (1..=task.runs)
        .filter_map(|run| agent_task_sandbox(&s.work, "a1", &format!("{}-run{run}", task.reservation)))
        .filter(|sb| read(sb.join("stderr")).contains("will not be sent again"))
        .count();
    // Whether a kill fell after a dead letter and before the next checkpoint
    // depends on timing; when it did, the exact dead-letter count below is
    // what shows the relaunch did not send it again.
    eprintln!("stage e2e: {replays_skipping} relaunched run(s) found dead letters the killed run had sent");
    eprintln!("stage e2e: the last relaunched run: {}", last.trim());
    assert!(last.contains("resumed from epoch"), "the last run did not resume from a checkpoint: {last}");

    assert_same_rows("killed and relaunched runs", &sc.rows(s).await, want);
    let letters = read_all(s, &sc.dead_letters(), vec![0]).await;
    let sources: BTreeSet<String> = letters.iter().map(|r| header(r, DLQ_SOURCE_HEADER)).collect();
    assert_eq!(sources.len(), malformed, "distinct dead letters, expected one per malformed record");
    assert_eq!(letters.len(), malformed, "dead letters sent twice across the kills: {} for {malformed}", letters.len());
    3
}

/// Check 5: the stage joins the `card_homes` lookup (the example's LEFT
/// JOIN, then the same stage with an inner JOIN). The home countries are
/// written here with plain CQL for four cards in five (the others have no
/// row); the rows must carry, per window, the count of transactions away
/// from the card's home country computed here, and with JOIN the cards
/// without a home row must vanish.
async fn lookup_join(s: &mut Services, events: &[GeneratedEvent]) {
    let generator = Generator::new(GeneratorKind::Fraud, &dataset_options()).expect("options");
    let Generator::Fraud(cards) = &generator else { panic!("a fraud generator") };
    let homes: BTreeMap<String, &str> = cards.cards().enumerate().filter(|(i, _)| i % 5 != 4).map(|(_, c)| c).collect();
    for (tag, inner) in [("lookup", false), ("lookupinner", true)] {
        let mut text = pipeline_yaml(tag, 3);
        if inner {
            assert!(text.contains("LEFT JOIN card_homes"), "the example changed; update this test");
            text = text.replace("LEFT JOIN card_homes", "JOIN card_homes");
        }
        let yaml = s.work.join(format!("{tag}.yaml"));
        std::fs::write(&yaml, &text).unwrap();
        let spec = PipelineSpec::from_yaml(&text, &yaml.display().to_string()).expect("valid");
        let done = prepare(&spec, &s.admin, Some(&s.session), &PrepareOptions::new(s.dc.clone(), 1))
            .await
            .expect("topics and tables created");
        let keyspace = format!("fraud_{tag}");
        assert_eq!(done.lookup_tables, vec![format!("{keyspace}.card_homes")]);
        let sc = Scenario { tag: tag.to_string(), yaml, spec };
        let insert = s
            .session
            .inner()
            .prepare(format!("INSERT INTO {keyspace}.card_homes (card_id, home_country) VALUES (?, ?)"))
            .await
            .expect("prepare the insert");
        for (card, home) in &homes {
            s.session.inner().execute_unpaged(&insert, (card.as_str(), *home)).await.expect("insert a home");
        }
        produce(s, &sc.topic(), events).await;
        let mut task = StageTask { reservation: format!("stage-{tag}"), runs: 0, port: PORT_BASE + 4 };
        let cmd = sc.command(s, "--checkpoint-interval 2s");
        task.launch(s, cmd).await;
        task.run_to_end(s).await;

        // The answer, here: with JOIN only the transactions of cards with
        // a home row count; `abroad` counts those away from that home.
        let kept: Vec<GeneratedEvent> =
            events.iter().filter(|e| !inner || e.malformed || homes.contains_key(&e.key)).cloned().collect();
        let want = expected(&kept);
        let mut abroad: BTreeMap<(String, i64), i64> = BTreeMap::new();
        for e in kept.iter().filter(|e| !e.malformed) {
            let v: serde_json::Value = serde_json::from_slice(&e.payload).expect("JSON");
            let away = homes.get(&e.key).is_some_and(|h| v["country"].as_str() != Some(*h));
            let last_start = e.event_time_ms.div_euclid(30_000) * 30_000;
            for start in [last_start - 30_000, last_start] {
                *abroad.entry((e.key.clone(), start)).or_default() += i64::from(away);
            }
        }
        let got = sc.rows(s).await;
        assert_same_rows(&format!("a stage joining a lookup ({tag})"), &got, &want);
        let table = s.session.read_rows(&keyspace, "suspicious_cards", None).await.expect("read rows");
        let col = |n: &str| table.columns.iter().position(|c| c == n).unwrap_or_else(|| panic!("no column {n}"));
        let (card, start, away) = (col("card_id"), col("window_start"), col("abroad"));
        let mut some_abroad = 0;
        for r in &table.rows {
            let (Some(CqlValue::Text(c)), Some(CqlValue::Timestamp(t))) = (&r[card], &r[start]) else {
                panic!("{r:?}")
            };
            let n = match &r[away] {
                Some(CqlValue::BigInt(n)) => *n,
                other => panic!("abroad is {other:?}, expected a bigint"),
            };
            assert_eq!(n, abroad[&(c.clone(), t.0)], "abroad of {c} in the window at {}", t.0);
            some_abroad += usize::from(n > 0);
        }
        assert!(some_abroad > 0, "no flagged window has a purchase away from home: the check shows nothing");
        if inner {
            assert!(got.keys().all(|(c, _)| homes.contains_key(c)), "JOIN keeps only cards with a home row");
        } else {
            assert!(got.keys().any(|(c, _)| !homes.contains_key(c)), "LEFT JOIN keeps cards without a home row");
        }
        task.release(s).await;
    }
}

/// Check 3: out-of-order records, one micro-batch each.
async fn out_of_order(s: &mut Services) {
    let sc = Scenario::new(&s.work, "order", 1, s).await;
    // (second of 2024-01-01T00:0m:ss, as seconds since midnight).
    let secs = [10, 20, 30, 40, 50, 65, 55, 80, 58, 150, 45];
    let payload = |t: i64| {
        format!(
            r#"{{"card_id":"c5","amount":1.0,"merchant":"m1","country":"FR","ts":"2024-01-01T00:{:02}:{:02}Z"}}"#,
            t / 60,
            t % 60
        )
    };
    let mut sink = KafkaSink::new(SinkConfig::new(s.client.clone())).expect("producer");
    for t in secs {
        sink.send_to(&sc.topic(), Some(0), Some(b"c5"), Some(payload(t).as_bytes()), &[]).await.expect("produce");
    }
    sink.flush().await.expect("acknowledged");
    let mut task = StageTask { reservation: "stage-order".into(), runs: 0, port: PORT_BASE + 7 };
    let cmd = sc.command(s, "--max-batch-records 1");
    task.launch(s, cmd).await;
    task.run_to_end(s).await;

    // Worked out by hand: watermark = newest − 5 s; a window closes at its
    // end + 10 s. 0:55 arrives at watermark 1:00 (window [0:00, 1:00) still
    // open until 1:10); 0:58 arrives at 1:15: only [0:30, 1:30) takes it;
    // 0:45 arrives at 2:25: both its windows closed, so it is late.
    let midnight = parse_rfc3339_ms("2024-01-01T00:00:00Z").unwrap();
    let want: Rows = [
        (("c5".to_string(), midnight), (midnight + 60_000, 6, 6.0, 1)),
        (("c5".to_string(), midnight + 30_000), (midnight + 90_000, 7, 7.0, 1)),
    ]
    .into();
    assert_same_rows("out-of-order records", &sc.rows(s).await, &want);
    let letters = read_all(s, &sc.dead_letters(), vec![0]).await;
    assert_eq!(letters.len(), 1, "exactly one late record: {letters:?}");
    let reason = header(&letters[0], DLQ_REASON_HEADER);
    assert!(reason.starts_with("late"), "reason: {reason}");
    task.release(s).await;
    let late: serde_json::Value = serde_json::from_slice(letters[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(parse_rfc3339_ms(late["ts"].as_str().unwrap()), Ok(midnight + 45_000), "{late}");
    assert_eq!(letters[0].key.as_deref(), Some(&b"c5"[..]));
}

/// A broker and a Cassandra node on an agent of its own (ports from
/// `port_base`), with clients.
async fn services(work: &Path, port_base: u16) -> Services {
    let kc = start_kafka_and_cassandra(work, port_base).await;
    let client = KafkaClientConfig::new(kc.bootstrap.clone()).with_client_id("stage-e2e");
    let admin = KafkaAdmin::connect(&client).await.expect("admin");
    let mut cc = CassandraConfig::new(std::slice::from_ref(&kc.cql));
    cc.local_dc = Some(kc.dc.clone());
    let session = CassandraSession::connect(&cc).await.expect("cql session");
    Services {
        work: work.to_path_buf(),
        bootstrap: kc.bootstrap.clone(),
        cql: kc.cql.clone(),
        dc: kc.dc.clone(),
        kc,
        admin,
        session,
        client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_task_against_real_kafka_and_cassandra() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = services(dir.path(), PORT_BASE).await;

    let t = Instant::now();
    let events = dataset();
    let malformed = events.iter().filter(|e| e.malformed).count();
    let want = expected(&events);
    assert!(want.len() > 20, "the dataset should flag some cards: {}", want.len());

    out_of_order(&mut s).await;
    let t3 = t.elapsed();
    let first = straight_run(&mut s, &events, &want, malformed).await;
    let t1 = t.elapsed() - t3;
    let kills = killed_runs(&mut s, &events, &first, malformed).await;
    let t2 = t.elapsed() - t1 - t3;
    replaced(&mut s, &events, &first, malformed).await;
    let t4 = t.elapsed() - t1 - t2 - t3;
    eprintln!(
        "stage e2e: Kafka and Cassandra ready in {:?}; {} events ({malformed} malformed) → {} rows; \
         out-of-order {t3:?}, one run {t1:?}, {kills} kills and relaunches {t2:?}, replaced on a fresh volume {t4:?}",
        s.kc.ready_in,
        events.len(),
        want.len()
    );
    let t5 = Instant::now();
    lookup_join(&mut s, &events).await;
    eprintln!("stage e2e: a stage joining a lookup (LEFT JOIN and JOIN) {:?}", t5.elapsed());
}

/// The ports of [`full_cache_lookup_sees_rows_added_after_the_task_started`]'s agent.
const FULL_CACHE_PORT_BASE: u16 = 42300;

/// A stage enriching each transaction with its card's home country from a
/// lookup held whole in memory and read again every 2 s.
const FULL_CACHE_PIPELINE: &str = "\
name: fullcache
services:
  kafka: { brokers: 1 }
  cassandra: { nodes: 1 }
sources:
  tx:
    type: kafka
    topic: fullcache-tx
    partitions: 1
    replication: 1
    schema: { card_id: string, seq: long, ts: timestamp }
    event-time: ts
lookups:
  homes:
    type: cassandra
    keyspace: fullcache
    table: homes
    key: [card_id]
    schema: { card_id: string, home_country: string }
    cache: { mode: full, reload: 2s }
stages:
  enriched:
    sql: |
      SELECT t.card_id, t.seq, h.home_country
      FROM tx t LEFT JOIN homes h ON t.card_id = h.card_id
sinks:
  seen:
    type: cassandra
    from: enriched
    keyspace: fullcache
    table: seen
    primary-key: [card_id, seq]
";

/// The rows of `fullcache.seen`: (card, seq) → home country.
async fn seen(s: &Services) -> BTreeMap<(String, i64), Option<String>> {
    let got = s.session.read_rows("fullcache", "seen", None).await.expect("read fullcache.seen");
    let col = |n: &str| got.columns.iter().position(|c| c == n).unwrap_or_else(|| panic!("no column {n}"));
    let (card, seq, home) = (col("card_id"), col("seq"), col("home_country"));
    got.rows
        .iter()
        .map(|r| {
            let (Some(CqlValue::Text(c)), Some(CqlValue::BigInt(n))) = (&r[card], &r[seq]) else { panic!("{r:?}") };
            let h = match &r[home] {
                Some(CqlValue::Text(h)) => Some(h.clone()),
                None => None,
                other => panic!("home_country is {other:?}"),
            };
            ((c.clone(), *n), h)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cache_lookup_sees_rows_added_after_the_task_started() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = services(dir.path(), FULL_CACHE_PORT_BASE).await;
    let yaml = s.work.join("fullcache.yaml");
    std::fs::write(&yaml, FULL_CACHE_PIPELINE).unwrap();
    let spec = PipelineSpec::from_yaml(FULL_CACHE_PIPELINE, &yaml.display().to_string()).expect("valid");
    let done = prepare(&spec, &s.admin, Some(&s.session), &PrepareOptions::new(s.dc.clone(), 1))
        .await
        .expect("topics and tables created");
    assert_eq!(done.lookup_tables, vec!["fullcache.homes".to_string()]);
    let insert = s
        .session
        .inner()
        .prepare("INSERT INTO fullcache.homes (card_id, home_country) VALUES (?, ?)")
        .await
        .expect("prepare the insert");
    s.session.inner().execute_unpaged(&insert, ("old", "FR")).await.expect("insert a home");

    let port = FULL_CACHE_PORT_BASE + 4;
    let mut task = StageTask { reservation: "stage-fullcache".into(), runs: 0, port };
    let cmd = format!(
        "exec {} stage run --pipeline {} --stage enriched --task-index 0 --task-count 1 --bootstrap {} \
         --cassandra {} --local-dc {} --state-dir-volume \"$VOLUME_STATE\" --checkpoint-interval 1s \
         --metrics-port {port} --metrics-host {}",
        smack_bin(),
        yaml.display(),
        s.bootstrap,
        s.cql,
        s.dc,
        s.kc.host
    );
    task.launch(&mut s, cmd).await;

    let mut producer = KafkaSink::new(SinkConfig::new(s.client.clone())).expect("producer");
    let mut seq = 0i64;
    let mut send = |card: &'static str| {
        seq += 1;
        let payload =
            format!(r#"{{"card_id":"{card}","seq":{seq},"ts":"2024-01-01T00:{:02}:{:02}Z"}}"#, seq / 60, seq % 60);
        (seq, payload)
    };
    // Waits for row (card, n) and returns its home country.
    async fn row_of(s: &mut Services, task: &StageTask, card: &str, n: i64) -> Option<String> {
        let deadline = Instant::now() + RUN_LIMIT;
        loop {
            if let Some(home) = seen(s).await.get(&(card.to_string(), n)) {
                return home.clone();
            }
            let done = s.kc.fw.statuses.iter().find(|st| st.task_id == task.id() && st.state.is_terminal()).cloned();
            assert!(done.is_none(), "{} ended: {done:?}\n{}", task.id(), task.logs(s));
            assert!(Instant::now() < deadline, "no row ({card}, {n}) within {RUN_LIMIT:?}\n{}", task.logs(s));
            s.kc.fw.idle(Duration::from_millis(200)).await;
        }
    }

    // The task loaded the table before its first batch: `old` has a home,
    // `new` none.
    let (old_seq, old) = send("old");
    let (new_seq, new) = send("new");
    for p in [&old, &new] {
        producer.send_to("fullcache-tx", Some(0), None, Some(p.as_bytes()), &[]).await.expect("produce");
    }
    producer.flush().await.expect("acknowledged");
    assert_eq!(row_of(&mut s, &task, "old", old_seq).await.as_deref(), Some("FR"));
    assert_eq!(row_of(&mut s, &task, "new", new_seq).await, None, "`new` has no home row yet");

    // `new` gets a home after the load; a later record sees it once a
    // reload has run (every 2 s), with no read by key.
    s.session.inner().execute_unpaged(&insert, ("new", "DE")).await.expect("insert a home");
    let deadline = Instant::now() + RUN_LIMIT;
    let mut tries = 0;
    loop {
        let (n, p) = send("new");
        producer.send_to("fullcache-tx", Some(0), None, Some(p.as_bytes()), &[]).await.expect("produce");
        producer.flush().await.expect("acknowledged");
        tries += 1;
        if row_of(&mut s, &task, "new", n).await.as_deref() == Some("DE") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{tries} records of `new` after its row was inserted, none saw it within {RUN_LIMIT:?}\n{}",
            task.logs(&s)
        );
        s.kc.fw.idle(Duration::from_millis(500)).await;
    }
    eprintln!("full-cache e2e: the inserted row was seen by record {tries} after the insert");

    // The metrics say the table was loaded more than once and holds both rows.
    let metrics = reqwest::get(format!("http://{}:{port}/metrics", s.kc.host))
        .await
        .expect("the task's metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(metrics.contains("smack_stage_lookup_table_rows{lookup=\"homes\"} 2"), "{metrics}");
    assert!(metrics.contains("smack_stage_lookup_reload_failures_total{lookup=\"homes\"} 0"), "{metrics}");
    assert!(metrics.contains("smack_stage_lookup_load_duration_seconds{lookup=\"homes\"}"), "{metrics}");
    assert!(
        !metrics.contains("smack_stage_lookup_cache_misses_total{lookup=\"homes\"}"),
        "a full cache reads no key from Cassandra: {metrics}"
    );
    let logs = agent_task_log_tails(&s.work, "a1", &task.id(), 10_000);
    assert!(logs.matches("lookup table loaded").count() >= 2, "a load and a reload logged:\n{logs}");

    assert!(task.signal(&s, nix::sys::signal::Signal::SIGTERM), "no process of {} to signal", task.id());
    task.ended(&mut s).await;
    task.release(&mut s).await;
}
