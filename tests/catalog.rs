//! Real Kafka and Cassandra, run by a smack agent from the catalog's
//! templates, on reserved persistent volumes, and back on the same volumes
//! after a SIGKILL.

use crate::support::*;
use nix::sys::signal::Signal;
use smack_catalog::artifacts::{self, Artifact, Service};
use smack_catalog::{cassandra::config as cassandra, kafka::config as kafka, launch};
use smack_operator::resources::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
/// Cassandra's first boot on two busy cores took up to 15 s by hand.
const READY: Duration = Duration::from_secs(90);

/// Where the jars are cached: reused across runs (and by CI), never a temp dir.
fn cache_dir() -> PathBuf {
    artifacts::default_cache_dir()
}

fn resolve_blocking(service: Service) -> Artifact {
    artifacts::resolve(service, &cache_dir())
        .unwrap_or_else(|e| panic!("cannot obtain {service} (cache {}): {e}", cache_dir().display()))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = read(path);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The sandbox of a task on agent `a1`.
fn sandbox(work: &Path, task: &str) -> Option<PathBuf> {
    let dir = work.join("agents/a1/sandboxes");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{task}-"))))
}

fn task_logs(work: &Path, task: &str) -> String {
    match sandbox(work, task) {
        Some(sb) => format!(
            "--- {task} stderr (tail) ---\n{}\n--- {task} stdout (tail) ---\n{}",
            tail(&sb.join("stderr"), 30),
            tail(&sb.join("stdout"), 30)
        ),
        None => format!("(no sandbox for {task})"),
    }
}

/// Kills every task process group the agent started, on the way out (tasks
/// outlive their agent by design).
struct KillTasks(PathBuf);

impl Drop for KillTasks {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.0.join("agents/a1/sandboxes")) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            if let Ok(pid) = read(e.path().join("pid")).trim().parse::<i32>() {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Waits until `task` is RUNNING and ready; fails with its logs if it ends
/// or never gets ready.
async fn wait_ready(fw: &mut TestFramework, work: &Path, task: &str) {
    let what = format!("{task} ready");
    let found = tokio::time::timeout(
        READY,
        fw.status_where(&what, READY + Duration::from_secs(5), |s| {
            s.task_id == task && (s.ready == Some(true) || s.state.is_terminal())
        }),
    )
    .await;
    match found {
        Ok(s) if s.state == TaskState::Running => {}
        Ok(s) => panic!("{task} ended before it was ready: {} {}\n{}", s.state, s.message, task_logs(work, task)),
        Err(_) => panic!("{task} was not ready within {READY:?}\n{}", task_logs(work, task)),
    }
}

fn pid_of(work: &Path, task: &str) -> nix::unistd::Pid {
    let sb = sandbox(work, task).unwrap_or_else(|| panic!("no sandbox for {task}"));
    let s = read(sb.join(launch::PID_FILE));
    nix::unistd::Pid::from_raw(s.trim().parse().unwrap_or_else(|_| panic!("no pid file in {}", sb.display())))
}

struct Pod {
    reservation: &'static str,
    volume: &'static str,
    resources: Resources,
    command: String,
    readiness: CheckSpec,
}

impl Pod {
    fn task(&self, id: &str) -> TaskInfo {
        TaskInfo {
            reservation: Some(self.reservation.into()),
            volumes: vec![self.volume.into()],
            readiness_check: Some(self.readiness.clone()),
            kill_grace_period_ms: 10_000,
            ..TaskInfo::new(id, self.command.clone(), self.resources.clone())
        }
    }
}

/// The Cassandra data dir of `system.local` (`local-<table id>`).
fn system_local_dir(vol: &Path) -> Option<String> {
    std::fs::read_dir(vol.join("cassandra/data/system"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.starts_with("local-"))
}

/// A Kafka client on the broker's own classpath (the JDK runs the source
/// file directly): `write` creates topic `probe` and produces 10 records
/// with acks=all; `read` reads the partition from the start.
const KAFKA_PROBE: &str = r#"
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;

public class KafkaProbe {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        if (a[1].equals("write")) {
            try (Admin admin = Admin.create(p)) {
                admin.createTopics(List.of(new NewTopic("probe", 1, (short) 1))).all().get();
            }
            p.put("acks", "all");
            p.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
            p.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
            try (KafkaProducer<String, String> pr = new KafkaProducer<>(p)) {
                for (int i = 0; i < 10; i++) pr.send(new ProducerRecord<>("probe", "k" + i, "v" + i)).get();
            }
            System.out.println("PROBE wrote 10");
        } else {
            p.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
            p.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
                TopicPartition tp = new TopicPartition("probe", 0);
                c.assign(List.of(tp));
                c.seekToBeginning(List.of(tp));
                List<String> got = new ArrayList<>();
                long end = System.currentTimeMillis() + 30000;
                while (got.size() < 10 && System.currentTimeMillis() < end) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) got.add(r.key() + "=" + r.value());
                }
                System.out.println("PROBE read " + String.join(",", got));
            }
        }
    }
}
"#;

/// A CQL client on Cassandra's classpath (its bundled 3.x driver):
/// `write` makes keyspace `probe` and table `kv` and writes 10 rows; `read`
/// lists them.
const CASSANDRA_PROBE: &str = r#"
import com.datastax.driver.core.*;
import java.util.*;

public class CassandraProbe {
    public static void main(String[] a) throws Exception {
        try (Cluster cluster = Cluster.builder().addContactPoint(a[0]).withPort(Integer.parseInt(a[1]))
                .withProtocolVersion(ProtocolVersion.V4).withoutJMXReporting().build();
             Session s = cluster.connect()) {
            if (a[2].equals("write")) {
                s.execute("CREATE KEYSPACE IF NOT EXISTS probe WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 1}");
                s.execute("CREATE TABLE IF NOT EXISTS probe.kv (k text PRIMARY KEY, v int)");
                for (int i = 0; i < 10; i++) s.execute("INSERT INTO probe.kv (k, v) VALUES (?, ?)", "k" + i, i);
                System.out.println("PROBE wrote 10");
            } else {
                List<String> got = new ArrayList<>();
                for (Row r : s.execute("SELECT k, v FROM probe.kv")) got.add(r.getString("k") + "=" + r.getInt("v"));
                Collections.sort(got);
                System.out.println("PROBE read " + String.join(",", got));
            }
        }
    }
}
"#;

/// Runs a probe source file with `java` on `classpath`; returns its
/// `PROBE …` line, or fails with its output.
async fn probe(java: &Path, dir: &Path, file: &str, source: &str, classpath: &str, args: Vec<&str>) -> String {
    let src = dir.join(file);
    std::fs::write(&src, source).unwrap();
    let mut cmd = tokio::process::Command::new(java);
    cmd.arg("-Xmx128m")
        .arg("-Dlog4j2.level=WARN")
        .arg(format!("-Dlogback.configurationFile={}", dir.join("probe-logback.xml").display()))
        .arg("-cp")
        .arg(classpath)
        .arg(&src)
        .args(&args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    std::fs::write(dir.join("probe-logback.xml"), cassandra::cassandra_logback_xml("WARN")).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{file} {args:?} did not finish within 60 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find(|l| l.starts_with("PROBE ")) {
        Some(l) if out.status.success() => l.to_string(),
        _ => panic!("{file} {args:?} failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)),
    }
}

/// Issue 4: a single-node Kafka (KRaft, combined) and a single-node
/// Cassandra run by an agent from the catalog's templates on reserved ROOT
/// volumes, get ready, and after a SIGKILL come back on the same reservation
/// and volume with their data: the broker keeps its cluster id (no
/// reformat), Cassandra replays its commit log from the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kafka_and_cassandra_on_reserved_volumes() {
    let started = Instant::now();
    let (kafka_jars, cassandra_jars) =
        tokio::task::spawn_blocking(|| (resolve_blocking(Service::Kafka), resolve_blocking(Service::Cassandra)))
            .await
            .expect("resolving artifacts");
    let java = artifacts::java_binary().expect("java");
    for s in [Service::Kafka, Service::Cassandra] {
        artifacts::check_java(s, artifacts::java_feature_version(&java).unwrap()).unwrap();
    }
    let resolved_in = started.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().to_path_buf();
    let _cleanup = KillTasks(work.clone());
    let m = MasterProc::start(&work, &[]).await;
    // The agent has a loopback address of its own, so the services' ports
    // are free there whatever other tests run.
    let host = format!("{}.1", address_prefix());
    let _agent = m.agent(
        "a1",
        &host,
        &["--cpus", "4", "--mem", "4096", "--disk", "4000", "--ports", "42000-42099", "--zone", "zone-a"],
    );
    m.wait_agents(1).await;

    // Kafka: one combined broker + controller, data on its volume.
    let (broker_port, controller_port) = (42000u16, 42001u16);
    let cluster_id = kafka::kafka_random_cluster_id();
    let kafka_cmd = one_node_kafka_command(
        kafka_jars.clone(),
        java.clone(),
        &host,
        broker_port,
        controller_port,
        cluster_id.clone(),
    );
    let kafka_pod = Pod {
        reservation: "kafka-0",
        volume: "kafka-0-data",
        resources: Resources::new(1.0, 1024, 0).with_ports(PortSet::from_ports([broker_port, controller_port])),
        command: kafka_cmd,
        readiness: launch::kafka_readiness_check(),
    };

    // Cassandra: one node, seed of itself, everything on its volume.
    let (storage_port, native_port) = (42002u16, 42003u16);
    let cnode = one_node_cassandra(&host, storage_port, native_port);
    let cass_cmd = one_node_cassandra_command(cassandra_jars.clone(), java.clone(), cnode);
    let cass_pod = Pod {
        reservation: "cassandra-0",
        volume: "cassandra-0-data",
        resources: Resources::new(1.5, 1536, 0).with_ports(PortSet::from_ports([storage_port, native_port])),
        command: cass_cmd,
        readiness: launch::cassandra_readiness_check(),
    };

    let mut fw = TestFramework::subscribe(m.client(), "catalog").await;
    let offer = fw.offer_where("with room for both pods", T, |o| o.unreserved.cpus >= 2.5).await;
    let agent_id = offer.agent_id.clone();
    let mut ops = Vec::new();
    for (pod, disk) in [(&kafka_pod, 1000u64), (&cass_pod, 1500u64)] {
        let mut r = pod.resources.clone();
        r.disk = disk;
        ops.push(Operation::Reserve {
            id: pod.reservation.into(),
            resources: r,
            labels: [("resource_id".to_string(), pod.reservation.to_string())].into(),
        });
        ops.push(Operation::CreateVolume {
            reservation: pod.reservation.into(),
            volume: Volume {
                id: pod.volume.into(),
                source: VolumeSource::Root { size: disk },
                container_path: "data".into(),
                host_path: String::new(),
            },
        });
    }
    ops.push(Operation::Launch { task: kafka_pod.task("kafka-0-run1") });
    ops.push(Operation::Launch { task: cass_pod.task("cassandra-0-run1") });
    fw.accept(offer.id, ops).await.expect("accept reserve + volumes + launch");

    wait_ready(&mut fw, &work, "kafka-0-run1").await;
    let kafka_ready_in = started.elapsed();
    wait_ready(&mut fw, &work, "cassandra-0-run1").await;
    let cassandra_ready_in = started.elapsed();

    // The data is on the volumes.
    let kvol = volume_path(&m, "kafka-0-data").await;
    let cvol = volume_path(&m, "cassandra-0-data").await;
    let meta_before = read(kvol.join("kafka/meta.properties"));
    let meta = kafka::parse_meta_properties(&meta_before).unwrap_or_else(|| {
        panic!("no meta.properties on the Kafka volume {}\n{}", kvol.display(), task_logs(&work, "kafka-0-run1"))
    });
    assert_eq!(meta.cluster_id, cluster_id);
    assert_eq!(meta.node_id, 0);
    assert!(kvol.join("kafka/__cluster_metadata-0").is_dir(), "the metadata log is on the volume");
    assert!(read(sandbox(&work, "kafka-0-run1").unwrap().join("stdout")).contains(launch::KAFKA_FORMAT_LINE));
    let local_before = system_local_dir(&cvol).unwrap_or_else(|| {
        panic!("no system/local-* on the Cassandra volume\n{}", task_logs(&work, "cassandra-0-run1"))
    });
    let segments = std::fs::read_dir(cvol.join("cassandra/commitlog")).unwrap().count();
    assert!(segments > 0, "Cassandra's commit log is on the volume");

    // Real data through real clients, right before the crash.
    let bootstrap = format!("{host}:{broker_port}");
    let native = native_port.to_string();
    let (kw, cw) = tokio::join!(
        probe(&java, &work, "KafkaProbe.java", KAFKA_PROBE, &kafka_jars.classpath, vec![&bootstrap, "write"]),
        probe(
            &java,
            &work,
            "CassandraProbe.java",
            CASSANDRA_PROBE,
            &cassandra_jars.classpath,
            vec![&host, &native, "write"]
        ),
    );
    assert_eq!((kw.as_str(), cw.as_str()), ("PROBE wrote 10", "PROBE wrote 10"));
    let probed_at = started.elapsed();

    // SIGKILL both JVMs: the agent reports them FAILED.
    for task in ["kafka-0-run1", "cassandra-0-run1"] {
        nix::sys::signal::kill(pid_of(&work, task), Signal::SIGKILL).unwrap();
    }
    for task in ["kafka-0-run1", "cassandra-0-run1"] {
        let failed = fw.status(task, TaskState::Failed, T).await;
        assert!(failed.message.contains("signal 9"), "{failed:?}");
    }

    // Relaunch each on its own reservation and volume.
    let again = fw
        .offer_where("with both reservations free again", T, |o| {
            o.agent_id == agent_id
                && [&kafka_pod, &cass_pod].iter().all(|p| {
                    o.reservation(p.reservation).is_some_and(|r| {
                        r.free.cpus >= p.resources.cpus && r.reservation.volumes.iter().any(|v| v.id == p.volume)
                    })
                })
        })
        .await;
    let restarted = Instant::now();
    fw.accept(
        again.id,
        vec![
            Operation::Launch { task: kafka_pod.task("kafka-0-run2") },
            Operation::Launch { task: cass_pod.task("cassandra-0-run2") },
        ],
    )
    .await
    .expect("relaunch on the same reservations");
    wait_ready(&mut fw, &work, "kafka-0-run2").await;
    wait_ready(&mut fw, &work, "cassandra-0-run2").await;
    let back_in = restarted.elapsed();

    // The records and rows written before the SIGKILL are all there.
    let (kr, cr) = tokio::join!(
        probe(&java, &work, "KafkaProbe.java", KAFKA_PROBE, &kafka_jars.classpath, vec![&bootstrap, "read"]),
        probe(
            &java,
            &work,
            "CassandraProbe.java",
            CASSANDRA_PROBE,
            &cassandra_jars.classpath,
            vec![&host, &native, "read"]
        ),
    );
    let want_kafka: Vec<String> = (0..10).map(|i| format!("k{i}=v{i}")).collect();
    assert_eq!(kr, format!("PROBE read {}", want_kafka.join(",")));
    let mut want_rows: Vec<String> = (0..10).map(|i| format!("k{i}={i}")).collect();
    want_rows.sort();
    assert_eq!(cr, format!("PROBE read {}", want_rows.join(",")));

    // Kafka: same storage, not formatted again.
    assert_eq!(read(kvol.join("kafka/meta.properties")), meta_before, "meta.properties changed: reformatted?");
    let k2 = read(sandbox(&work, "kafka-0-run2").unwrap().join("stdout"));
    assert!(!k2.contains(launch::KAFKA_FORMAT_LINE), "the second run formatted the volume again");
    // Cassandra: the same system tables, and the commit log on the volume replayed.
    assert_eq!(system_local_dir(&cvol).as_deref(), Some(local_before.as_str()));
    let c2 = read(sandbox(&work, "cassandra-0-run2").unwrap().join("stdout"));
    let commitlog = cvol.join("cassandra/commitlog");
    assert!(
        c2.lines().any(|l| l.contains("Replaying") && l.contains(&commitlog.display().to_string())),
        "Cassandra did not replay its commit log from the volume\n{}",
        task_logs(&work, "cassandra-0-run2")
    );
    eprintln!(
        "catalog e2e: jars in {resolved_in:?}; Kafka ready at {kafka_ready_in:?}, Cassandra at {cassandra_ready_in:?}; \
         data written by {probed_at:?}; both back after SIGKILL in {back_in:?}; total {:?}",
        started.elapsed()
    );
}
