//! [`EtcdStore`]: the state store of masters that run as an HA group, kept
//! in etcd; and [`Election`]: one leader among them, by an etcd lease.
//!
//! The store is the same four-call [`StateStore`] as the file store, over
//! keys under a prefix (`smack/` by default) so that one etcd can hold more
//! than one cluster. Its calls are synchronous, as the trait's are: each runs
//! on a small runtime of the store's own thread and the caller waits for it,
//! as it waits for an fsync with the file store.
//!
//! A leader's writes are fenced: [`EtcdStore::fenced_by`] makes every put
//! and delete a transaction that applies only while the leader's election
//! key still exists with the revision it won. A master that lost its lease
//! (cut off, paused past its TTL) and still believes it leads cannot write a
//! single record; it gets [`Error::NotLeader`] and must step down.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use tokio::sync::{oneshot, watch};

use super::{validate_key, StateStore};
use crate::{Error, Result};

/// How long connecting to etcd, and each call, may take.
pub const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader's election key and the revision it was created at: writes
/// under a fence apply only while that key is still the one the leader won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The election key (`PREFIX/election/NAME/LEASE`).
    pub key: Vec<u8>,
    /// Its create revision.
    pub revision: i64,
}

/// The state store in etcd. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    endpoints: String,
    runtime: tokio::runtime::Handle,
    fence: Option<Fence>,
    /// Dropped with the last clone: stops the store's runtime thread.
    _stop: Arc<oneshot::Sender<()>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("fence", &self.fence)
            .finish()
    }
}

/// Connects to etcd and checks it answers, within `timeout`.
async fn connect_checked(endpoints: &[String], timeout: Duration) -> Result<Client> {
    let joined = endpoints.join(",");
    let fail = |message: String| Error::Etcd { endpoints: joined.clone(), message };
    let options = ConnectOptions::new().with_connect_timeout(timeout).with_timeout(timeout);
    let attempt = async {
        let mut client = Client::connect(endpoints, Some(options)).await.map_err(|e| fail(e.to_string()))?;
        // A lazy channel connects on first use: ask for the status so that
        // an unreachable etcd is found here, not at the first write.
        client.status().await.map_err(|e| fail(e.to_string()))?;
        Ok(client)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!("no answer within {}s", timeout.as_secs_f64()))),
    }
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (`http://HOST:PORT`, any
    /// member) and keeps keys under `prefix`. An etcd that does not answer
    /// within `timeout` is [`Error::Etcd`] naming the endpoints.
    pub fn connect(endpoints: &[String], prefix: &str, timeout: Duration) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(Error::Etcd { endpoints: String::new(), message: "no etcd endpoint given".into() });
        }
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("etcd-store".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|e| Error::io("starting the etcd store's thread", e))?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| Error::Other("the etcd store's thread ended at start".into()))?
            .map_err(|e| Error::io("starting the etcd store's runtime", e))?;
        let eps = endpoints.to_vec();
        let client = run_on(&runtime, async move { connect_checked(&eps, timeout).await })??;
        Ok(EtcdStore {
            client,
            prefix: prefix.to_string(),
            endpoints: endpoints.join(","),
            runtime,
            fence: None,
            _stop: Arc::new(stop_tx),
        })
    }

    /// The same store whose puts and deletes apply only while `fence` holds
    /// (the leader's election key is unchanged); otherwise
    /// [`Error::NotLeader`].
    pub fn fenced_by(&self, fence: Fence) -> EtcdStore {
        EtcdStore { fence: Some(fence), ..self.clone() }
    }

    /// The etcd key of a store key.
    fn full(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// Runs a call on the store's runtime and waits for it.
    fn call<T, F>(&self, what: &str, f: impl FnOnce(Client) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, etcd_client::Error>> + Send + 'static,
    {
        let fut = f(self.client.clone());
        run_on(&self.runtime, fut)?
            .map_err(|e| Error::Etcd { endpoints: self.endpoints.clone(), message: format!("{what}: {e}") })
    }

    /// A put or delete, under the fence when there is one.
    fn write(&self, key: String, op: TxnOp, what: &str) -> Result<()> {
        match &self.fence {
            None => {
                let txn = Txn::new().and_then([op]);
                self.call(what, move |mut c| async move { c.txn(txn).await.map(|_| ()) })
            }
            Some(fence) => {
                let txn = Txn::new()
                    .when([Compare::create_revision(fence.key.clone(), CompareOp::Equal, fence.revision)])
                    .and_then([op]);
                let applied = self.call(what, move |mut c| async move { c.txn(txn).await.map(|r| r.succeeded()) })?;
                if applied {
                    Ok(())
                } else {
                    Err(Error::NotLeader { key })
                }
            }
        }
    }
}

/// Runs `fut` on `rt` and waits for its output from any thread, inside an
/// async context or not.
fn run_on<T: Send + 'static>(rt: &tokio::runtime::Handle, fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| Error::Other("the etcd store's runtime stopped".into()))
}

impl StateStore for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.full(key)?;
        self.call(&format!("reading {full}"), move |mut c| async move {
            c.get(full, None).await.map(|r| r.kvs().first().map(|kv| kv.value().to_vec()))
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let full = self.full(key)?;
        let op = TxnOp::put(full.clone(), value.to_vec(), None);
        self.write(full.clone(), op, &format!("writing {full}"))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let full = self.full(key)?;
        let op = TxnOp::delete(full.clone(), None);
        self.write(full.clone(), op, &format!("deleting {full}"))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full = format!("{}{prefix}", self.prefix);
        let ours = self.prefix.len();
        let options = GetOptions::new().with_prefix().with_keys_only();
        let mut keys: Vec<String> = self.call(&format!("listing {full}"), move |mut c| async move {
            c.get(full, Some(options)).await.map(|r| {
                r.kvs()
                    .iter()
                    .filter_map(|kv| kv.key_str().ok().map(|k| k.get(ours..).unwrap_or("").to_string()))
                    .collect()
            })
        })?;
        keys.retain(|k| !k.is_empty());
        keys.sort();
        Ok(keys)
    }
}

/// An election among masters: candidates campaign with their URL; the one
/// whose lease-backed key is oldest leads until its lease ends.
#[derive(Clone)]
pub struct Election {
    client: Client,
    name: String,
    endpoints: String,
}

/// Leadership won in an [`Election`]: its [`Fence`] for the store, and a
/// signal when it is lost (the lease could not be kept alive).
pub struct Leadership {
    /// The fence the leader's writes go under.
    pub fence: Fence,
    /// The lease that backs the election key.
    pub lease: i64,
    lost: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Leadership {
    /// Resolves when leadership is lost: the lease expired or could not be
    /// renewed within its TTL. A leader must stop acting at once.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Whether leadership has been lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
}

impl Election {
    /// Connects to etcd for the election `name` (e.g. `smack/masters`).
    pub async fn connect(endpoints: &[String], name: &str, timeout: Duration) -> Result<Election> {
        let client = connect_checked(endpoints, timeout).await?;
        Ok(Election { client, name: name.to_string(), endpoints: endpoints.join(",") })
    }

    fn fail(&self, what: &str, e: etcd_client::Error) -> Error {
        Error::Etcd { endpoints: self.endpoints.clone(), message: format!("{what}: {e}") }
    }

    /// Campaigns with `value` (the candidate's URL) and waits until it leads.
    /// The lease lives `ttl` (whole seconds, at least 1) past the last
    /// renewal: a leader that dies hands over within about that long.
    pub async fn campaign(&self, value: &str, ttl: Duration) -> Result<Leadership> {
        let ttl_s = ttl.as_secs().max(1) as i64;
        let mut c = self.client.clone();
        let lease = c.lease_grant(ttl_s, None).await.map_err(|e| self.fail("granting a lease", e))?.id();
        let (lost_tx, lost_rx) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(self.client.clone(), lease, Duration::from_secs(ttl_s as u64), lost_tx));
        let won = c.campaign(self.name.clone(), value.to_string(), lease).await;
        let won = match won {
            Ok(r) => r,
            Err(e) => {
                keeper.abort();
                return Err(self.fail("campaigning", e));
            }
        };
        let Some(key) = won.leader() else {
            keeper.abort();
            return Err(Error::Etcd { endpoints: self.endpoints.clone(), message: "campaign won no key".into() });
        };
        let fence = Fence { key: key.key().to_vec(), revision: key.rev() };
        Ok(Leadership { fence, lease, lost: lost_rx, keeper })
    }

    /// The current leader's value (its URL), if any.
    pub async fn leader(&self) -> Result<Option<String>> {
        let mut c = self.client.clone();
        match c.leader(self.name.clone()).await {
            Ok(r) => Ok(r.kv().and_then(|kv| kv.value_str().ok()).map(str::to_string)),
            // etcd answers "election: no leader" as an error.
            Err(e) if e.to_string().contains("no leader") => Ok(None),
            Err(e) => Err(self.fail("reading the leader", e)),
        }
    }

    /// Gives leadership up at once (a clean stop), so the next candidate
    /// need not wait out the lease.
    pub async fn resign(&self, leadership: Leadership) -> Result<()> {
        let mut c = self.client.clone();
        c.lease_revoke(leadership.lease).await.map_err(|e| self.fail("revoking the lease", e))?;
        Ok(())
    }
}

/// Renews `lease` every third of its TTL; sets `lost` once a renewal has
/// not succeeded for a whole TTL, or etcd says the lease is gone.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let mut last_ok = Instant::now();
    let every = ttl / 3;
    loop {
        if last_ok.elapsed() >= ttl {
            let _ = lost.send(true);
            return;
        }
        let renewed = tokio::time::timeout(every.max(Duration::from_millis(200)), async {
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            Ok::<_, etcd_client::Error>(stream.message().await?.map(|r| r.ttl()))
        })
        .await;
        match renewed {
            Ok(Ok(Some(left))) if left > 0 => last_ok = Instant::now(),
            Ok(Ok(_)) => {
                tracing::warn!(lease, "the leader's lease is gone");
                let _ = lost.send(true);
                return;
            }
            Ok(Err(e)) => tracing::warn!(lease, error = %e, "renewing the leader's lease failed"),
            Err(_) => tracing::warn!(lease, "renewing the leader's lease timed out"),
        }
        tokio::time::sleep(every).await;
    }
}
