//! Lookups by key (a stage enriching records from a Cassandra table), two
//! ways:
//!
//! - **Partial**: a bounded least-recently-used cache in front of reads by
//!   key ([`CassandraLookup`]). Absent keys are cached too, so a hot absent
//!   key does not hit the table every time; entries expire after a write
//!   ([`Expiry`]: found rows and absent keys each their own time), so a row
//!   added later is seen once its absence expires. A stage asks for a
//!   micro-batch's keys at once ([`CassandraLookup::get_many`]): cache hits
//!   are answered first, each distinct missing key is read once, with a
//!   bounded number of reads in flight ([`batched`], the same logic without
//!   the driver, unit-tested here with the time passed in).
//! - **Full**: the whole table in memory ([`LookupTable`]: Arrow columns and
//!   a hash index from key to row), read with a paged scan of the declared
//!   columns ([`load_table`]); a key not in it has no row, and no read is
//!   made.

use super::schema::select_by_key_cql;
use super::session::CassandraSession;
use super::{batch_to_rows, rows_to_batch};
use super::{query_err, Error, Result};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::SchemaRef;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::statement::Consistency;
use scylla::value::{CqlValue, Row};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long a cached answer stays, counted from when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expiry {
    /// A row that was found: `None` keeps it until it is evicted.
    pub found: Option<Duration>,
    /// A key with no row: `None` keeps it until it is evicted; zero does
    /// not cache absent keys at all (each ask reads the table).
    pub missing: Option<Duration>,
}

impl Expiry {
    /// Until when an answer read at `now` is good (`None`: forever), or
    /// `Err(())` when it is not to be cached.
    fn until(&self, row: &CachedRow, now: Instant) -> Result<Option<Instant>, ()> {
        let ttl = if row.is_some() { self.found } else { self.missing };
        match ttl {
            None => Ok(None),
            Some(d) if d.is_zero() => Err(()),
            Some(d) => Ok(now.checked_add(d)),
        }
    }
}

/// A cached answer with the moment it stops being good.
#[derive(Debug, Clone)]
struct Entry {
    row: CachedRow,
    until: Option<Instant>,
}

/// The partial cache of a lookup: at most `capacity` answers (rows and
/// absences) by key, least recently used evicted first, each forgotten when
/// its [`Expiry`] passes. The time is passed in (`now`), so tests need no
/// clock.
#[derive(Debug, Clone)]
pub struct LookupCache {
    lru: LruCache<Vec<u8>, Entry>,
    expiry: Expiry,
}

impl LookupCache {
    /// An empty cache.
    pub fn new(capacity: usize, expiry: Expiry) -> LookupCache {
        LookupCache { lru: LruCache::new(capacity), expiry }
    }

    /// The answer cached for `key` if it is still good at `now` (an expired
    /// one is forgotten).
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<CachedRow> {
        let key = key.to_vec();
        let entry = self.lru.get(&key)?;
        if entry.until.is_some_and(|u| now >= u) {
            self.lru.remove(&key);
            return None;
        }
        Some(entry.row.clone())
    }

    /// Caches `row` for `key`, read at `now` (an absent key is not cached
    /// when its expiry is zero).
    pub fn insert(&mut self, key: Vec<u8>, row: CachedRow, now: Instant) {
        match self.expiry.until(&row, now) {
            Ok(until) => self.lru.insert(key, Entry { row, until }),
            Err(()) => {
                self.lru.remove(&key);
            }
        }
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &[u8]) {
        self.lru.remove(&key.to_vec());
    }

    /// Entries held (expired ones too, until they are asked for or evicted).
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// How long answers stay.
    pub fn expiry(&self) -> Expiry {
        self.expiry
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
    cache: Mutex<LookupCache>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for CassandraLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraLookup").field("table", &self.table).field("stats", &self.stats()).finish()
    }
}

/// A hashable, unambiguous encoding of a key (None for a value kind that
/// is not cached; such keys always go to the table). Two keys encode alike
/// exactly when they are equal values of the same CQL kind (`text` and
/// `ascii` alike).
pub fn key_bytes(key: &[CqlValue]) -> Option<Vec<u8>> {
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
    /// columns if any), with a cache of `capacity` keys whose answers never
    /// expire (see [`CassandraLookup::with_expiry`]).
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
            cache: Mutex::new(LookupCache::new(capacity, Expiry::default())),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The same, with cached answers forgotten after `expiry` (the cache is
    /// emptied).
    pub fn with_expiry(self, expiry: Expiry) -> CassandraLookup {
        let capacity = self.lock().lru.capacity();
        CassandraLookup { cache: Mutex::new(LookupCache::new(capacity, expiry)), ..self }
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
        let ck = key_bytes(key);
        let now = Instant::now();
        if let Some(ck) = &ck {
            if let Some(hit) = self.lock().get(ck, now) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let op = format!("look up {key:?} in `{}`", self.table);
        let result = self.session.execute_unpaged(&self.select, key).await.map_err(query_err(op.clone()))?;
        let rows = result.into_rows_result().map_err(query_err(op.clone()))?;
        let row: Option<Row> = rows.maybe_first_row::<Row>().map_err(query_err(op))?;
        let row = row.map(|r| r.columns);
        if let Some(ck) = ck {
            self.lock().insert(ck, row.clone(), now);
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
        let answer = batched(&self.cache, keys, concurrency, Instant::now(), |key| async move {
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
        if let Some(ck) = key_bytes(key) {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, LookupCache> {
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
/// driver: `fetch` reads one key's row. Hits (answers still good at `now`)
/// first; each distinct missing key is fetched once, `concurrency` (at
/// least 1) at a time, and cached as read at `now` (a key whose value kind
/// is not cacheable is fetched every time). The first failed fetch fails
/// the call; what was fetched before stays cached.
pub async fn batched<F, Fut>(
    cache: &Mutex<LookupCache>,
    keys: &[Vec<CqlValue>],
    concurrency: usize,
    now: Instant,
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
            let ck = key_bytes(key);
            if let Some(ck) = &ck {
                if let Some(hit) = c.get(ck, now) {
                    rows[i] = Some(hit);
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
            c.insert(ck, row.clone(), now);
        }
        rows[i] = Some(row);
    }
    Ok(BatchAnswer { rows: rows.into_iter().map(Option::flatten).collect(), hits, misses })
}

/// Rows per Arrow chunk of a [`LookupTable`].
const TABLE_CHUNK: usize = 8192;

/// Rows per page of the scan that loads a [`LookupTable`].
pub const SCAN_PAGE_SIZE: i32 = 5000;

/// A whole lookup table in memory: its rows as Arrow columns of the
/// lookup's schema (in chunks of [`TABLE_CHUNK`] rows, so loading never
/// copies the table) and a hash index from each key ([`key_bytes`]) to its
/// row. A key not in the index has no row.
///
/// Memory: the Arrow columns (a string costs its bytes plus 4, a number
/// its width, plus a validity bit per cell) and an index entry per row of
/// about 30 bytes plus the key's encoded bytes (a tag and a length, 5 bytes
/// per key column, then the value) in an allocation of its own. A
/// 12-character card id with a 2-letter country takes about 120 bytes a
/// row: 1,000,000 rows grew a process by 117 MB.
#[derive(Debug, Clone)]
pub struct LookupTable {
    schema: SchemaRef,
    chunks: Vec<RecordBatch>,
    index: HashMap<Box<[u8]>, (u32, u32)>,
}

impl LookupTable {
    /// An empty table of `schema`.
    pub fn empty(schema: SchemaRef) -> LookupTable {
        LookupTable { schema, chunks: Vec::new(), index: HashMap::new() }
    }

    /// Builds a table of `schema` row by row; `key` names the key columns.
    pub fn builder(schema: SchemaRef, key: &[String]) -> Result<LookupTableBuilder> {
        let key_columns = key
            .iter()
            .map(|k| {
                schema.index_of(k).map_err(|_| Error::Schema {
                    what: format!("lookup key `{k}`"),
                    reason: format!(
                        "not a column of the lookup; expected one of: {}",
                        schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    ),
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok(LookupTableBuilder { table: LookupTable::empty(schema), key_columns, pending: Vec::new() })
    }

    /// Rows held (one per distinct key).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No row.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The rows' schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// About how many bytes the table holds (columns and index).
    pub fn memory_bytes(&self) -> usize {
        let columns: usize = self.chunks.iter().map(RecordBatch::get_array_memory_size).sum();
        // Each key's own allocation (rounded as an allocator does), then the
        // hash table's slots (a boxed key, a row address, a control byte).
        let keys: usize = self.index.keys().map(|k| (k.len() + 8).next_multiple_of(16)).sum();
        let slots = self.index.capacity() * 8 / 7 * (16 + 8 + 1);
        columns + keys + slots
    }

    /// The row of one key (cells in the schema's order), if any.
    pub fn get(&self, key: &[CqlValue]) -> Option<(usize, usize)> {
        let (c, r) = *self.index.get(key_bytes(key)?.as_slice())?;
        Some((c as usize, r as usize))
    }

    /// The rows of `keys` (those that have one, in the order asked) as one
    /// batch of the table's schema, with how many keys had a row.
    pub fn rows(&self, keys: &[Vec<CqlValue>]) -> Result<(RecordBatch, usize)> {
        let at: Vec<(usize, usize)> = keys.iter().filter_map(|k| self.get(k)).collect();
        if at.is_empty() {
            return Ok((RecordBatch::new_empty(self.schema.clone()), 0));
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for j in 0..self.schema.fields().len() {
            let parts: Vec<&dyn Array> = self.chunks.iter().map(|c| c.column(j).as_ref()).collect();
            columns.push(interleave(&parts, &at).map_err(|e| Error::Schema {
                what: format!("lookup column `{}`", self.schema.field(j).name()),
                reason: e.to_string(),
            })?);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::Schema { what: "lookup rows".into(), reason: e.to_string() })?;
        Ok((batch, at.len()))
    }
}

/// Builds a [`LookupTable`] ([`LookupTable::builder`]).
#[derive(Debug)]
pub struct LookupTableBuilder {
    table: LookupTable,
    key_columns: Vec<usize>,
    pending: Vec<Vec<Option<CqlValue>>>,
}

impl LookupTableBuilder {
    /// Adds a row (cells in the schema's order). A later row with the same
    /// key replaces an earlier one; a row with a NULL key cell matches
    /// nothing and is left out.
    pub fn push(&mut self, row: Vec<Option<CqlValue>>) -> Result<()> {
        self.pending.push(row);
        if self.pending.len() >= TABLE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// The table of every row pushed.
    pub fn finish(mut self) -> Result<LookupTable> {
        self.flush()?;
        self.table.index.shrink_to_fit();
        Ok(self.table)
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        // The keys are encoded from the converted columns, the same way
        // the keys asked are (Arrow of the declared types, then CQL), so a
        // `bigint` column declared `int`, say, still matches.
        let batch = rows_to_batch(self.table.schema.clone(), &rows)?;
        let keys = batch
            .project(&self.key_columns)
            .map_err(|e| Error::Schema { what: "lookup key columns".into(), reason: e.to_string() })?;
        let chunk = self.table.chunks.len() as u32;
        for (i, key) in batch_to_rows(&keys)?.into_iter().enumerate() {
            let Some(key) = key.into_iter().collect::<Option<Vec<CqlValue>>>() else { continue };
            if let Some(k) = key_bytes(&key) {
                self.table.index.insert(k.into_boxed_slice(), (chunk, i as u32));
            }
        }
        self.table.chunks.push(batch);
        Ok(())
    }
}

/// Reads all of `keyspace.table` into a [`LookupTable`] of `schema` (only
/// its columns are selected), `page_size` rows a page, at `LOCAL_QUORUM`.
pub async fn load_table(
    session: &CassandraSession,
    keyspace: &str,
    table: &str,
    schema: SchemaRef,
    key: &[String],
    page_size: i32,
) -> Result<LookupTable> {
    use futures::TryStreamExt;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let cql = super::schema::select_all_cql(keyspace, table, &names)?;
    let mut statement = Statement::new(cql.clone());
    statement.set_page_size(page_size.max(1));
    statement.set_consistency(Consistency::LocalQuorum);
    statement.set_is_idempotent(true);
    let op = format!("load the lookup table `{keyspace}.{table}`: {cql}");
    let pager = session.inner().query_iter(statement, ()).await.map_err(query_err(op.clone()))?;
    let mut stream = pager.rows_stream::<Row>().map_err(query_err(op.clone()))?;
    let mut builder = LookupTable::builder(schema, key)?;
    while let Some(row) = stream.try_next().await.map_err(query_err(op.clone()))? {
        builder.push(row.columns)?;
    }
    builder.finish()
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

    /// The time the tests start from.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
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
        let cache = Mutex::new(LookupCache::new(100, Expiry::default()));
        let t = Table::new();
        let keys = vec![text("a1"), text("b"), text("a1"), text("abc")];
        let got = batched(&cache, &keys, 8, t0(), |k| t.read(k)).await.unwrap();
        let len = |n: i32| Some(vec![Some(CqlValue::Int(n))]);
        assert_eq!(got.rows, vec![len(2), None, len(2), len(3)]);
        assert_eq!((got.hits, got.misses), (0, 3), "a1 asked twice is read once");
        assert_eq!(t.reads.load(Ordering::SeqCst), 3);
        // The next batch: hits (absent keys too) first, only the new key is read.
        let keys = vec![text("b"), text("abc"), text("a12345")];
        let got = batched(&cache, &keys, 8, t0(), |k| t.read(k)).await.unwrap();
        assert_eq!(got.rows, vec![None, len(3), len(6)]);
        assert_eq!((got.hits, got.misses), (2, 1));
        assert_eq!(t.reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn misses_are_read_with_bounded_concurrency() {
        let cache = Mutex::new(LookupCache::new(1000, Expiry::default()));
        let t = Table::new();
        let keys: Vec<Vec<CqlValue>> = (0..200).map(|i| text(&format!("a{i}"))).collect();
        let got = batched(&cache, &keys, 4, t0(), |k| t.read(k)).await.unwrap();
        assert_eq!(got.misses, 200);
        assert!(got.rows.iter().all(Option::is_some));
        let most = t.most.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "at most 4 reads at once, and more than one: {most}");
        // Concurrency 0 still makes progress, one at a time.
        let t = Table::new();
        let cache = Mutex::new(LookupCache::new(10, Expiry::default()));
        batched(&cache, &keys[..10], 0, t0(), |k| t.read(k)).await.unwrap();
        assert_eq!(t.most.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_small_cache_still_answers_every_key_of_a_big_batch() {
        let cache = Mutex::new(LookupCache::new(3, Expiry::default()));
        let t = Table::new();
        let keys: Vec<Vec<CqlValue>> = (0..50).map(|i| text(&format!("a{i}"))).collect();
        let got = batched(&cache, &keys, 8, t0(), |k| t.read(k)).await.unwrap();
        assert!(got.rows.iter().all(Option::is_some));
        assert_eq!(cache.lock().unwrap().len(), 3, "the cache stays bounded");
    }

    #[tokio::test]
    async fn a_failed_read_fails_the_batch_and_uncacheable_keys_are_read_every_time() {
        let cache = Mutex::new(LookupCache::new(10, Expiry::default()));
        let t = Table::new();
        let err = batched(&cache, &[text("a"), text("boom")], 2, t0(), |k| t.read(k)).await.unwrap_err();
        assert!(err.to_string().contains("the table is down"), "{err}");
        let t = Table::new();
        let odd = vec![CqlValue::List(vec![])];
        for _ in 0..2 {
            let got = batched(&cache, std::slice::from_ref(&odd), 2, t0(), |k| t.read(k)).await.unwrap();
            assert_eq!((got.hits, got.misses), (0, 1));
        }
        assert_eq!(t.reads.load(Ordering::SeqCst), 2);
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn absent_keys_expire_after_their_own_time_and_rows_after_theirs() {
        let mut c = LookupCache::new(10, Expiry { found: Some(secs(600)), missing: Some(secs(30)) });
        let row = Some(vec![Some(CqlValue::Int(1))]);
        c.insert(b"found".to_vec(), row.clone(), t0());
        c.insert(b"absent".to_vec(), None, t0());
        assert_eq!(c.get(b"absent", t0() + secs(29)), Some(None), "still good just before");
        assert_eq!(c.get(b"absent", t0() + secs(30)), None, "an absence is forgotten after 30 s");
        assert_eq!(c.len(), 1, "the expired entry is dropped when asked for");
        assert_eq!(c.get(b"found", t0() + secs(599)), Some(row.clone()));
        assert_eq!(c.get(b"found", t0() + secs(600)), None);
        // Re-read: good again from the new read.
        c.insert(b"found".to_vec(), row.clone(), t0() + secs(600));
        assert_eq!(c.get(b"found", t0() + secs(1199)), Some(row));
    }

    #[test]
    fn no_expiry_keeps_answers_until_evicted_and_zero_caches_no_absence() {
        let mut c = LookupCache::new(10, Expiry::default());
        c.insert(b"a".to_vec(), None, t0());
        assert_eq!(c.get(b"a", t0() + secs(1_000_000)), Some(None));
        let mut c = LookupCache::new(10, Expiry { found: None, missing: Some(Duration::ZERO) });
        c.insert(b"a".to_vec(), None, t0());
        assert!(c.is_empty(), "absent keys are not cached with a zero expiry");
        c.insert(b"b".to_vec(), Some(vec![]), t0());
        c.insert(b"b".to_vec(), None, t0());
        assert!(c.is_empty(), "a row that vanished is forgotten, not kept");
        assert_eq!(c.expiry().missing, Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_row_added_after_its_absence_was_cached_is_seen_once_the_absence_expires() {
        let cache = Mutex::new(LookupCache::new(100, Expiry { found: None, missing: Some(secs(60)) }));
        let t = Table::new();
        let got = batched(&cache, &[text("b")], 4, t0(), |k| t.read(k)).await.unwrap();
        assert_eq!((got.rows[0].clone(), got.misses), (None, 1));
        // Within the minute the absence is answered from the cache ...
        let got = batched(&cache, &[text("b")], 4, t0() + secs(59), |k| t.read(k)).await.unwrap();
        assert_eq!((got.hits, got.misses), (1, 0));
        // ... after it the table is read again, and a row there now is seen.
        let got = batched(&cache, &[text("b")], 4, t0() + secs(60), |k| async move {
            let _ = k;
            Ok(Some(vec![Some(CqlValue::Int(9))]))
        })
        .await
        .unwrap();
        assert_eq!((got.hits, got.misses), (0, 1));
        assert_eq!(got.rows[0], Some(vec![Some(CqlValue::Int(9))]));
        // Rows found never expire here: an hour later, still a hit.
        let got = batched(&cache, &[text("b")], 4, t0() + secs(3600), |k| t.read(k)).await.unwrap();
        assert_eq!((got.hits, got.misses), (1, 0));
    }

    fn homes_schema() -> SchemaRef {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        Arc::new(Schema::new(vec![
            Field::new("card_id", DataType::Utf8, true),
            Field::new("home", DataType::Utf8, true),
            Field::new("since", DataType::Int64, true),
        ]))
    }

    #[test]
    fn a_full_table_answers_keys_from_memory_across_chunks() {
        use datafusion::arrow::array::{AsArray, Int64Array};
        let mut b = LookupTable::builder(homes_schema(), &["card_id".to_string()]).unwrap();
        let n = TABLE_CHUNK * 2 + 10;
        for i in 0..n {
            b.push(vec![
                Some(CqlValue::Text(format!("c{i}"))),
                Some(CqlValue::Text(if i % 2 == 0 { "FR".into() } else { "DE".into() })),
                (i % 3 != 0).then_some(CqlValue::BigInt(i as i64)),
            ])
            .unwrap();
        }
        // A NULL key matches nothing; a later row replaces an earlier one.
        b.push(vec![None, Some(CqlValue::Text("XX".into())), None]).unwrap();
        b.push(vec![Some(CqlValue::Text("c1".into())), Some(CqlValue::Text("IT".into())), None]).unwrap();
        let table = b.finish().unwrap();
        assert_eq!(table.len(), n);
        assert!(table.memory_bytes() > n * 8, "{}", table.memory_bytes());
        let keys: Vec<Vec<CqlValue>> = ["c8200", "nope", "c1", "c16390", "c3"].iter().map(|k| text(k)).collect();
        let (rows, found) = table.rows(&keys).unwrap();
        assert_eq!((found, rows.num_rows()), (4, 4));
        let ids: Vec<&str> = rows.column(0).as_string::<i32>().iter().map(Option::unwrap).collect();
        assert_eq!(ids, ["c8200", "c1", "c16390", "c3"]);
        let homes: Vec<&str> = rows.column(1).as_string::<i32>().iter().map(Option::unwrap).collect();
        assert_eq!(homes, ["FR", "IT", "FR", "DE"]);
        let since = rows.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(since.iter().collect::<Vec<_>>(), [Some(8200), None, Some(16390), None]);
        let (none, found) = table.rows(&[text("nope")]).unwrap();
        assert_eq!((none.num_rows(), found, none.schema()), (0, 0, homes_schema()));
        assert!(LookupTable::empty(homes_schema()).is_empty());
    }

    #[test]
    fn a_full_table_key_must_be_a_column() {
        let e = LookupTable::builder(homes_schema(), &["card".to_string()]).unwrap_err().to_string();
        assert!(e.contains("lookup key `card`") && e.contains("card_id, home, since"), "{e}");
    }

    #[test]
    fn cache_keys_are_unambiguous() {
        let a = key_bytes(&[CqlValue::Text("ab".into()), CqlValue::Text("c".into())]).unwrap();
        let b = key_bytes(&[CqlValue::Text("a".into()), CqlValue::Text("bc".into())]).unwrap();
        assert_ne!(a, b);
        let i = key_bytes(&[CqlValue::Int(1)]).unwrap();
        let l = key_bytes(&[CqlValue::BigInt(1)]).unwrap();
        assert_ne!(i, l);
        assert!(key_bytes(&[CqlValue::Timestamp(CqlTimestamp(1))]).is_some());
        assert!(key_bytes(&[CqlValue::List(vec![])]).is_none());
    }
}
