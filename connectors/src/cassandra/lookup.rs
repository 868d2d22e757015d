//! Lookups by key (a stage enriching records from a Cassandra table), with
//! a bounded least-recently-used cache in front; misses (no row) are cached
//! too, so a hot absent key does not hit the table every time.

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

type CachedRow = Option<Vec<Option<CqlValue>>>;

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
