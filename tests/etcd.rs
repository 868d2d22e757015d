//! The HA masters' state store and leader election against a real etcd
//! (Debian's `etcd-server`, started here on an address of the test's own):
//! the store keeps what it is given under its prefix, an unreachable etcd is
//! a one-line error naming the endpoint, a leader that dies hands over within
//! its lease, and a deposed leader cannot write.

use crate::support::*;
use smack_operator::state::{Election, EtcdStore, StateStore, DEFAULT_ETCD_TIMEOUT};
use smack_operator::Error;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd member on `host`, its data in `dir`; killed when dropped.
pub struct EtcdProc {
    pub proc: Proc,
    pub endpoint: String,
}

impl EtcdProc {
    pub async fn start(dir: &Path, host: &str) -> EtcdProc {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let data = dir.join("etcd");
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("etcd.log");
        let f = std::fs::File::create(&log).unwrap();
        let client = format!("http://{host}:2379");
        let peer = format!("http://{host}:2380");
        let child = Command::new(&bin)
            .args(["--name", "e1", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e1={peer}"), "--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (Debian package etcd-server; .ci/run installs it): {e}"));
        let proc = Proc { child, name: "etcd".into(), log };
        let endpoint = client.clone();
        let eps = vec![endpoint.clone()];
        wait_for("etcd answers", Duration::from_secs(20), || {
            let eps = eps.clone();
            async move { Election::connect(&eps, "probe", Duration::from_secs(1)).await.ok() }
        })
        .await;
        EtcdProc { proc, endpoint }
    }
}

fn store(endpoint: &str, prefix: &str) -> EtcdStore {
    EtcdStore::connect(&[endpoint.to_string()], prefix, DEFAULT_ETCD_TIMEOUT).expect("connect to etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_keeps_records_under_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("{}.1", address_prefix());
    let etcd = EtcdProc::start(dir.path(), &host).await;
    let a = store(&etcd.endpoint, "cluster-a/");
    let b = store(&etcd.endpoint, "cluster-b/");
    a.put("master/agents/a1", b"one").unwrap();
    a.put("master/agents/a2", b"two").unwrap();
    a.put("frameworks/f1", b"f").unwrap();
    b.put("master/agents/a1", b"other cluster").unwrap();
    assert_eq!(a.get("master/agents/a1").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(a.list("master/").unwrap(), vec!["master/agents/a1", "master/agents/a2"]);
    assert_eq!(a.list("").unwrap(), vec!["frameworks/f1", "master/agents/a1", "master/agents/a2"]);
    assert_eq!(b.list("").unwrap(), vec!["master/agents/a1"]);
    a.put("master/agents/a1", b"replaced").unwrap();
    a.delete("master/agents/a2").unwrap();
    a.delete("never/there").unwrap();
    // A new connection (a restarted master) reads what the first wrote.
    let again = store(&etcd.endpoint, "cluster-a/");
    assert_eq!(again.get("master/agents/a1").unwrap().as_deref(), Some(&b"replaced"[..]));
    assert_eq!(again.get("master/agents/a2").unwrap(), None);
    assert!(matches!(again.put("", b"x"), Err(Error::Other(_))), "an empty key is refused as in every store");
    // Called from inside async code too (the master calls it under its lock).
    let s = again.clone();
    let got = tokio::task::spawn_blocking(move || s.list("master/")).await.unwrap().unwrap();
    assert_eq!(got, vec!["master/agents/a1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_is_a_one_line_error_naming_the_endpoint() {
    // An address of this test's own where nothing listens.
    let endpoint = format!("http://{}.1:2379", address_prefix());
    let started = Instant::now();
    let err = EtcdStore::connect(std::slice::from_ref(&endpoint), "x/", Duration::from_secs(2)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Etcd { .. }), "{err:?}");
    assert!(msg.contains(&endpoint) && !msg.contains('\n'), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let err =
        Election::connect(std::slice::from_ref(&endpoint), "x", Duration::from_secs(2)).await.err().expect("refused");
    assert!(err.to_string().contains(&endpoint), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leader_hands_over_within_its_lease_and_cannot_write_after() {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("{}.1", address_prefix());
    let etcd = EtcdProc::start(dir.path(), &host).await;
    let eps = vec![etcd.endpoint.clone()];
    let ttl = Duration::from_secs(2);
    let e1 = Election::connect(&eps, "smack/masters", DEFAULT_ETCD_TIMEOUT).await.unwrap();
    let e2 = Election::connect(&eps, "smack/masters", DEFAULT_ETCD_TIMEOUT).await.unwrap();
    assert_eq!(e1.leader().await.unwrap(), None, "no leader before any campaign");
    let first = e1.campaign("http://m1:5050", ttl).await.unwrap();
    assert_eq!(e2.leader().await.unwrap().as_deref(), Some("http://m1:5050"));
    let st = store(&etcd.endpoint, "ha/");
    let leader_store = st.fenced_by(first.fence.clone());
    leader_store.put("master/agents/a1", b"by m1").unwrap();

    // The second candidate waits while the first leads.
    let second = tokio::spawn({
        let e2 = e2.clone();
        async move { e2.campaign("http://m2:5050", Duration::from_secs(2)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!second.is_finished(), "a second leader while the first's lease lives");

    // The first dies without resigning (as with SIGKILL): its lease is no
    // longer renewed.
    let died = Instant::now();
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(15), second)
        .await
        .expect("the second candidate never took over")
        .unwrap()
        .unwrap();
    let took = died.elapsed();
    assert!(took < ttl + Duration::from_secs(3), "handover took {took:?} with a {ttl:?} lease");
    assert_eq!(e1.leader().await.unwrap().as_deref(), Some("http://m2:5050"));

    // The deposed leader's writes are refused; the new leader's apply.
    let err = leader_store.put("master/agents/a1", b"stale m1").unwrap_err();
    assert!(matches!(err, Error::NotLeader { .. }), "{err:?}");
    assert!(leader_store.delete("master/agents/a1").is_err());
    st.fenced_by(second.fence.clone()).put("master/agents/a1", b"by m2").unwrap();
    assert_eq!(st.get("master/agents/a1").unwrap().as_deref(), Some(&b"by m2"[..]));
    assert!(!second.is_lost());

    // A clean stop resigns at once.
    let e3 = Election::connect(&eps, "smack/masters", DEFAULT_ETCD_TIMEOUT).await.unwrap();
    let third = tokio::spawn(async move { e3.campaign("http://m3:5050", Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    e2.resign(second).await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(5), third).await.expect("resign hands over at once");
    assert!(third.unwrap().is_ok());
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_etcd_learns_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("{}.1", address_prefix());
    let mut etcd = EtcdProc::start(dir.path(), &host).await;
    let eps = vec![etcd.endpoint.clone()];
    let e = Election::connect(&eps, "smack/masters", DEFAULT_ETCD_TIMEOUT).await.unwrap();
    let lead = e.campaign("http://m1:5050", Duration::from_secs(2)).await.unwrap();
    assert!(!lead.is_lost());
    etcd.proc.kill9();
    tokio::time::timeout(Duration::from_secs(10), lead.lost())
        .await
        .expect("the leader never noticed its lease ran out");
    assert!(lead.is_lost());
}
