//! Lookups by key (a stage enriching records from a Cassandra table), with
//! a bounded least-recently-used cache in front; misses (no row) are cached
//! too, so a hot absent key does not hit the table every time.
//!
//! A stage asks for a micro-batch's keys at once ([`CassandraLookup::get_many`]):
//! cache hits are answered first, each distinct missing key is read once,
//! with a bounded number of reads in flight ([`batched`], the same logic
//! without the driver, unit-tested here).

use super::schema::select_by_key_cql;
use super::session::CassandraSession;
use super::{query_err, Error, Result};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::{CqlValue, Row};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A least-recently-used map of at most `capacity` entries (0: keeps nothing).
#[derive(Debug, Clone)]
pub struct LruCache<K, V> {
    map: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    tick: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> LruCache<K, V> {
    /// An empty cache.
    pub fn new(capacity: usize) -> Self {
        LruCache { map: HashMap::new(), order: BTreeMap::new(), tick: 0, capacity }
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.tick += 1;
        let tick = self.tick;
        let (_, used) = self.map.get_mut(key)?;
        let old = std::mem::replace(used, tick);
        if let Some(k) = self.order.remove(&old) {
            self.order.insert(tick, k);
        }
        self.map.get(key).map(|(v, _)| v)
    }

    /// Inserts or replaces `key`, evicting the least recently used entry
    /// when full.
    pub fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        if let Some((_, old)) = self.map.insert(key.clone(), (value, self.tick)) {
            self.order.remove(&old);
        }
        self.order.insert(self.tick, key);
        while self.map.len() > self.capacity {
            let Some((_, evicted)) = self.order.pop_first() else { break };
            self.map.remove(&evicted);
        }
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (v, used) = self.map.remove(key)?;
        self.order.remove(&used);
        Some(v)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The most entries held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// How a lookup's cache fares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Answered from the cache.
    pub hits: u64,
    /// Answered by the table.
    pub misses: u64,
    /// Entries cached now.
    pub entries: usize,
}

/// A cached answer: a row's cells, or `None` when no row has the key.
pub type CachedRow = Option<Vec<Option<CqlValue>>>;

/// Reads rows of one table by key, through an LRU cache.
pub struct CassandraLookup {
    session: Arc<Session>,
    select: PreparedStatement,
    table: String,
    key_columns: Vec<String>,
    value_columns: Vec<String>,
    cache: Mutex<LruCache<Vec<u8>, CachedRow>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for CassandraLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraLookup").field("table", &self.table).field("stats", &self.stats()).finish()
    }
}

/// A hashable, unambiguous encoding of a key (None for a value kind that
/// is not cached; such keys always go to the table).
fn cache_key(key: &[CqlValue]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for v in key {
        let (tag, bytes): (u8, Vec<u8>) = match v {
            CqlValue::Text(s) | CqlValue::Ascii(s) => (1, s.as_bytes().to_vec()),
            CqlValue::BigInt(x) => (2, x.to_be_bytes().to_vec()),
            CqlValue::Int(x) => (3, x.to_be_bytes().to_vec()),
            CqlValue::SmallInt(x) => (4, x.to_be_bytes().to_vec()),
            CqlValue::TinyInt(x) => (5, x.to_be_bytes().to_vec()),
            CqlValue::Boolean(b) => (6, vec![u8::from(*b)]),
            CqlValue::Timestamp(t) => (7, t.0.to_be_bytes().to_vec()),
            CqlValue::Date(d) => (8, d.0.to_be_bytes().to_vec()),
            CqlValue::Blob(b) => (9, b.clone()),
            CqlValue::Double(x) => (10, x.to_bits().to_be_bytes().to_vec()),
            CqlValue::Float(x) => (11, x.to_bits().to_be_bytes().to_vec()),
            CqlValue::Uuid(u) => (12, u.as_bytes().to_vec()),
            _ => return None,
        };
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    Some(out)
}

impl CassandraLookup {
    /// Prepares `SELECT value_columns FROM keyspace.table WHERE key = ?…`
    /// (the key columns must be the table's partition key, plus clustering
    /// columns if any), with a cache of `capacity` keys.
    pub async fn new<S: AsRef<str>, T: AsRef<str>>(
        session: &CassandraSession,
        keyspace: &str,
        table: &str,
        key_columns: &[S],
        value_columns: &[T],
        capacity: usize,
    ) -> Result<CassandraLookup> {
        let cql = select_by_key_cql(keyspace, table, key_columns, value_columns)?;
        let mut select = session
            .inner()
            .prepare(cql.as_str())
            .await
            .map_err(query_err(format!("prepare the lookup in `{keyspace}.{table}`: {cql}")))?;
        select.set_consistency(Consistency::LocalQuorum);
        select.set_is_idempotent(true);
        Ok(CassandraLookup {
            session: session.inner().clone(),
            select,
            table: format!("{keyspace}.{table}"),
            key_columns: key_columns.iter().map(|c| c.as_ref().to_string()).collect(),
            value_columns: value_columns.iter().map(|c| c.as_ref().to_string()).collect(),
            cache: Mutex::new(LruCache::new(capacity)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The value columns, in the order of a row's cells.
    pub fn value_columns(&self) -> &[String] {
        &self.value_columns
    }

    /// The row's value cells for `key` (one value per key column, in
    /// order), None when no row has that key.
    pub async fn get(&self, key: &[CqlValue]) -> Result<Option<Vec<Option<CqlValue>>>> {
        if key.len() != self.key_columns.len() {
            return Err(Error::Schema {
                what: format!("lookup in `{}`", self.table),
                reason: format!(
                    "{} key value(s) given for key columns ({}) (expected {})",
                    key.len(),
                    self.key_columns.join(", "),
                    self.key_columns.len()
                ),
            });
        }
        let ck = cache_key(key);
        if let Some(ck) = &ck {
            if let Some(hit) = self.lock().get(ck) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit.clone());
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let op = format!("look up {key:?} in `{}`", self.table);
        let result = self.session.execute_unpaged(&self.select, key).await.map_err(query_err(op.clone()))?;
        let rows = result.into_rows_result().map_err(query_err(op.clone()))?;
        let row: Option<Row> = rows.maybe_first_row::<Row>().map_err(query_err(op))?;
        let row = row.map(|r| r.columns);
        if let Some(ck) = ck {
            self.lock().insert(ck, row.clone());
        }
        Ok(row)
    }

    /// The rows of many keys at once (one micro-batch's distinct keys):
    /// cache hits are answered first, then the misses are read with at most
    /// `concurrency` queries in flight. Answers are in the order of `keys`;
    /// a key with no row gives `None`. Returns the hits and misses too.
    pub async fn get_many(&self, keys: &[Vec<CqlValue>], concurrency: usize) -> Result<BatchAnswer> {
        if let Some(k) = keys.iter().find(|k| k.len() != self.key_columns.len()) {
            return Err(Error::Schema {
                what: format!("lookup in `{}`", self.table),
                reason: format!(
                    "{} key value(s) given for key columns ({}) (expected {})",
                    k.len(),
                    self.key_columns.join(", "),
                    self.key_columns.len()
                ),
            });
        }
        let answer = batched(&self.cache, keys, concurrency, |key| async move {
            let op = format!("look up {key:?} in `{}`", self.table);
            let result =
                self.session.execute_unpaged(&self.select, key.as_slice()).await.map_err(query_err(op.clone()))?;
            let rows = result.into_rows_result().map_err(query_err(op.clone()))?;
            let row: Option<Row> = rows.maybe_first_row::<Row>().map_err(query_err(op))?;
            Ok(row.map(|r| r.columns))
        })
        .await?;
        self.hits.fetch_add(answer.hits, Ordering::Relaxed);
        self.misses.fetch_add(answer.misses, Ordering::Relaxed);
        Ok(answer)
    }

    /// Forgets `key`'s cached row (after writing it, say).
    pub fn invalidate(&self, key: &[CqlValue]) {
        if let Some(ck) = cache_key(key) {
            self.lock().remove(&ck);
        }
    }

    /// Hits, misses and entries.
    pub fn stats(&self) -> LookupStats {
        LookupStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.lock().len(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Vec<u8>, CachedRow>> {
        // A panic while holding the lock leaves a consistent cache (every
        // operation completes its bookkeeping before it can panic), so a
        // poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The answer to [`CassandraLookup::get_many`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchAnswer {
    /// Per key asked, in order: the row's cells, or `None` (no row).
    pub rows: Vec<CachedRow>,
    /// Keys answered from the cache.
    pub hits: u64,
    /// Keys read from the table (a key asked twice in one call is read once
    /// and counted once).
    pub misses: u64,
}

/// The batching behind [`CassandraLookup::get_many`], apart from the
/// driver: `fetch` reads one key's row. Hits first; each distinct missing
/// key is fetched once, `concurrency` (at least 1) at a time, and cached
/// (a key whose value kind is not cacheable is fetched every time). The
/// first failed fetch fails the call; what was fetched before stays cached.
pub async fn batched<F, Fut>(
    cache: &Mutex<LruCache<Vec<u8>, CachedRow>>,
    keys: &[Vec<CqlValue>],
    concurrency: usize,
    fetch: F,
) -> Result<BatchAnswer>
where
    F: Fn(Vec<CqlValue>) -> Fut,
    Fut: std::future::Future<Output = Result<CachedRow>>,
{
    use futures::stream::{StreamExt, TryStreamExt};
    let lock = || cache.lock().unwrap_or_else(|p| p.into_inner());
    let mut rows: Vec<Option<CachedRow>> = vec![None; keys.len()];
    let mut hits = 0;
    // Misses: the first index asking for each distinct key, and the others.
    let mut wanted: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
    let mut same: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    {
        let mut c = lock();
        for (i, key) in keys.iter().enumerate() {
            let ck = cache_key(key);
            if let Some(ck) = &ck {
                if let Some(hit) = c.get(ck) {
                    rows[i] = Some(hit.clone());
                    hits += 1;
                    continue;
                }
                if let Some(others) = same.get_mut(ck) {
                    others.push(i);
                    continue;
                }
                same.insert(ck.clone(), Vec::new());
            }
            wanted.push((i, ck));
        }
    }
    let misses = wanted.len() as u64;
    let fetched: Vec<(usize, Option<Vec<u8>>, CachedRow)> = futures::stream::iter(wanted.into_iter().map(|(i, ck)| {
        let f = fetch(keys[i].clone());
        async move { f.await.map(|row| (i, ck, row)) }
    }))
    .buffer_unordered(concurrency.max(1))
    .try_collect()
    .await?;
    let mut c = lock();
    for (i, ck, row) in fetched {
        if let Some(ck) = ck {
            for j in same.remove(&ck).unwrap_or_default() {
                rows[j] = Some(row.clone());
            }
            c.insert(ck, row.clone());
        }
        rows[i] = Some(row);
    }
    Ok(BatchAnswer { rows: rows.into_iter().map(Option::flatten).collect(), hits, misses })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::value::CqlTimestamp;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut c = LruCache::new(2);
        c.insert("a", 1);
        c.insert("b", 2);
        assert_eq!(c.get(&"a"), Some(&1));
        c.insert("c", 3);
        assert_eq!(c.get(&"b"), None, "b was the least recently used");
        assert_eq!(c.get(&"a"), Some(&1));
        assert_eq!(c.get(&"c"), Some(&3));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn replacing_a_key_keeps_one_entry() {
        let mut c = LruCache::new(2);
        c.insert("a", 1);
        c.insert("a", 2);
        c.insert("b", 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"a"), Some(&2));
        assert_eq!(c.remove(&"a"), Some(2));
        assert_eq!(c.len(), 1);
        assert_eq!(c.order.len(), 1);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut c = LruCache::new(0);
        c.insert(1, 1);
        assert!(c.is_empty());
        assert_eq!(c.capacity(), 0);
    }

    #[test]
    fn order_and_map_stay_in_step_under_churn() {
        let mut c = LruCache::new(10);
        for i in 0..1000u32 {
            c.insert(i % 37, i);
            let _ = c.get(&(i % 11));
            assert_eq!(c.map.len(), c.order.len());
            assert!(c.len() <= 10);
        }
    }

    fn text(s: &str) -> Vec<CqlValue> {
        vec![CqlValue::Text(s.to_string())]
    }

    /// A fake table: keys `a…` have a row (the key's length), others none;
    /// counts reads and the most reads in flight at once.
    struct Table {
        reads: std::sync::atomic::AtomicUsize,
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    impl Table {
        fn new() -> Table {
            Table { reads: Default::default(), in_flight: Default::default(), most: Default::default() }
        }

        async fn read(&self, key: Vec<CqlValue>) -> Result<CachedRow> {
            use std::sync::atomic::Ordering::SeqCst;
            self.reads.fetch_add(1, SeqCst);
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            self.in_flight.fetch_sub(1, SeqCst);
            match &key[0] {
                CqlValue::Text(s) if s == "boom" => {
                    Err(Error::Schema { what: "read".into(), reason: "the table is down".into() })
                }
                CqlValue::Text(s) if s.starts_with('a') => Ok(Some(vec![Some(CqlValue::Int(s.len() as i32))])),
                _ => Ok(None),
            }
        }
    }

    #[tokio::test]
    async fn a_batch_reads_each_missing_key_once_and_then_answers_from_the_cache() {
        let cache = Mutex::new(LruCache::new(100));
        let t = Table::new();
        let keys = vec![text("a1"), text("b"), text("a1"), text("abc")];
        let got = batched(&cache, &keys, 8, |k| t.read(k)).await.unwrap();
        let len = |n: i32| Some(vec![Some(CqlValue::Int(n))]);
        assert_eq!(got.rows, vec![len(2), None, len(2), len(3)]);
        assert_eq!((got.hits, got.misses), (0, 3), "a1 asked twice is read once");
        assert_eq!(t.reads.load(Ordering::SeqCst), 3);
        // The next batch: hits (absent keys too) first, only the new key is read.
        let keys = vec![text("b"), text("abc"), text("a12345")];
        let got = batched(&cache, &keys, 8, |k| t.read(k)).await.unwrap();
        assert_eq!(got.rows, vec![None, len(3), len(6)]);
        assert_eq!((got.hits, got.misses), (2, 1));
        assert_eq!(t.reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn misses_are_read_with_bounded_concurrency() {
        let cache = Mutex::new(LruCache::new(1000));
        let t = Table::new();
        let keys: Vec<Vec<CqlValue>> = (0..200).map(|i| text(&format!("a{i}"))).collect();
        let got = batched(&cache, &keys, 4, |k| t.read(k)).await.unwrap();
        assert_eq!(got.misses, 200);
        assert!(got.rows.iter().all(Option::is_some));
        let most = t.most.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "at most 4 reads at once, and more than one: {most}");
        // Concurrency 0 still makes progress, one at a time.
        let t = Table::new();
        let cache = Mutex::new(LruCache::new(10));
        batched(&cache, &keys[..10], 0, |k| t.read(k)).await.unwrap();
        assert_eq!(t.most.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_small_cache_still_answers_every_key_of_a_big_batch() {
        let cache = Mutex::new(LruCache::new(3));
        let t = Table::new();
        let keys: Vec<Vec<CqlValue>> = (0..50).map(|i| text(&format!("a{i}"))).collect();
        let got = batched(&cache, &keys, 8, |k| t.read(k)).await.unwrap();
        assert!(got.rows.iter().all(Option::is_some));
        assert_eq!(cache.lock().unwrap().len(), 3, "the cache stays bounded");
    }

    #[tokio::test]
    async fn a_failed_read_fails_the_batch_and_uncacheable_keys_are_read_every_time() {
        let cache = Mutex::new(LruCache::new(10));
        let t = Table::new();
        let err = batched(&cache, &[text("a"), text("boom")], 2, |k| t.read(k)).await.unwrap_err();
        assert!(err.to_string().contains("the table is down"), "{err}");
        let t = Table::new();
        let odd = vec![CqlValue::List(vec![])];
        for _ in 0..2 {
            let got = batched(&cache, std::slice::from_ref(&odd), 2, |k| t.read(k)).await.unwrap();
            assert_eq!((got.hits, got.misses), (0, 1));
        }
        assert_eq!(t.reads.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn cache_keys_are_unambiguous() {
        let a = cache_key(&[CqlValue::Text("ab".into()), CqlValue::Text("c".into())]).unwrap();
        let b = cache_key(&[CqlValue::Text("a".into()), CqlValue::Text("bc".into())]).unwrap();
        assert_ne!(a, b);
        let i = cache_key(&[CqlValue::Int(1)]).unwrap();
        let l = cache_key(&[CqlValue::BigInt(1)]).unwrap();
        assert_ne!(i, l);
        assert!(cache_key(&[CqlValue::Timestamp(CqlTimestamp(1))]).is_some());
        assert!(cache_key(&[CqlValue::List(vec![])]).is_none());
    }
}
