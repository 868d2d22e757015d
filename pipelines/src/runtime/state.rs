//! Keyed window state with incremental aggregates.
//!
//! One [`WindowState`] per windowed stage holds, for every open (window,
//! key), one accumulator per aggregate of the stage's SQL: `COUNT(*)`,
//! `COUNT(x)`, `COUNT(DISTINCT x)`, `SUM`, `MIN`, `MAX` and `AVG`. Records are
//! folded in as they come ([`WindowState::update`]); a window is emitted and
//! dropped once the watermark passes its end plus the allowed lateness
//! ([`WindowState::close`]). Session windows merge when a record bridges
//! them.
//!
//! Values are held as [`Value`]s: integers of any width as `Int` (`UInt` for
//! unsigned), floats by their bits (so a checkpoint restores them exactly),
//! text as `Str`.
//!
//! Sized for millions of keys per window (a card population at tens of
//! thousands of events a second): keys hash with a fixed-seed fast hasher,
//! `COUNT(DISTINCT)` keeps a small vector until it grows, a window closes
//! without sorting its keys (the runtime orders only the rows its HAVING
//! keeps), and checkpoints use a compact binary encoding written straight
//! from the state ([`WindowState::encode`]). The serde form
//! ([`WindowSnapshot`]) is kept for tests and for checkpoints written before
//! the binary encoding.

use super::codec::{Reader as CodecReader, Writer};
use super::replay::{LowWater, Origin};
use super::time::{closed, WindowFn};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The hasher of keyed state: fast, and the same in every process.
pub(crate) type FastHash = foldhash::fast::FixedState;
type FastMap<K, V> = HashMap<K, V, FastHash>;
/// A set of keys with the state's hasher.
pub type FastSet<K> = HashSet<K, FastHash>;

/// One scalar of a key or an aggregate's input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer, or a timestamp's raw value.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A float, by its bits (see [`Value::float`]).
    Float(u64),
    /// Text.
    Str(String),
}

impl Value {
    /// A float value.
    pub fn float(f: f64) -> Value {
        Value::Float(f.to_bits())
    }

    /// The value as a float, for sums and averages.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(b) => Some(f64::from_bits(*b)),
            _ => None,
        }
    }

    /// SQL ordering, for MIN and MAX (floats by value, not by bits).
    pub fn sql_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => f64::from_bits(*a).total_cmp(&f64::from_bits(*b)),
            _ => self.cmp(other),
        }
    }
}

/// An aggregate function of a windowed stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggKind {
    /// `COUNT(*)`.
    CountStar,
    /// `COUNT(x)`: non-null values.
    Count,
    /// `COUNT(DISTINCT x)`: distinct non-null values.
    CountDistinct,
    /// `SUM(x)`.
    Sum,
    /// `MIN(x)`.
    Min,
    /// `MAX(x)`.
    Max,
    /// `AVG(x)`.
    Avg,
}

/// An aggregate's running value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acc {
    /// `COUNT(*)` and `COUNT(x)`.
    Count(i64),
    /// `COUNT(DISTINCT x)`: the values seen.
    Distinct(DistinctSet),
    /// `SUM` of integers (NULL until a value is seen).
    SumInt(Option<i64>),
    /// `SUM` of unsigned integers.
    SumUInt(Option<u64>),
    /// `SUM` of floats, by bits.
    SumFloat(Option<u64>),
    /// `MIN`.
    Min(Option<Value>),
    /// `MAX`.
    Max(Option<Value>),
    /// `AVG`: the float sum (bits) and the count.
    Avg(u64, i64),
}

/// What kind of numbers an aggregate's input holds, for `SUM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NumClass {
    /// Signed integers.
    Int,
    /// Unsigned integers.
    UInt,
    /// Floats.
    Float,
    /// Anything else (not summable).
    Other,
}

impl Acc {
    /// The empty accumulator of an aggregate.
    pub fn new(kind: AggKind, class: NumClass) -> Acc {
        match kind {
            AggKind::CountStar | AggKind::Count => Acc::Count(0),
            AggKind::CountDistinct => Acc::Distinct(DistinctSet::default()),
            AggKind::Sum => match class {
                NumClass::UInt => Acc::SumUInt(None),
                NumClass::Float => Acc::SumFloat(None),
                _ => Acc::SumInt(None),
            },
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
            AggKind::Avg => Acc::Avg(0f64.to_bits(), 0),
        }
    }

    /// Folds one input value in (`COUNT(*)` ignores it).
    pub fn update(&mut self, kind: AggKind, v: &Value) {
        if kind == AggKind::CountStar {
            if let Acc::Count(n) = self {
                *n += 1;
            }
            return;
        }
        if *v == Value::Null {
            return;
        }
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Distinct(set) => set.insert(v),
            Acc::SumInt(s) => {
                if let Value::Int(i) = v {
                    *s = Some(s.unwrap_or(0).wrapping_add(*i));
                }
            }
            Acc::SumUInt(s) => {
                if let Value::UInt(u) = v {
                    *s = Some(s.unwrap_or(0).wrapping_add(*u));
                }
            }
            Acc::SumFloat(s) => {
                if let Some(f) = v.as_f64() {
                    *s = Some((s.map_or(0.0, f64::from_bits) + f).to_bits());
                }
            }
            Acc::Min(m) => {
                if m.as_ref().is_none_or(|m| v.sql_cmp(m) == Ordering::Less) {
                    *m = Some(v.clone());
                }
            }
            Acc::Max(m) => {
                if m.as_ref().is_none_or(|m| v.sql_cmp(m) == Ordering::Greater) {
                    *m = Some(v.clone());
                }
            }
            Acc::Avg(sum, n) => {
                if let Some(f) = v.as_f64() {
                    *sum = (f64::from_bits(*sum) + f).to_bits();
                    *n += 1;
                }
            }
        }
    }

    /// Merges another accumulator of the same aggregate in (session merges).
    pub fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Distinct(a), Acc::Distinct(b)) => {
                for v in b.into_values() {
                    a.insert(&v);
                }
            }
            (Acc::SumInt(a), Acc::SumInt(b)) => *a = merge_opt(*a, b, i64::wrapping_add),
            (Acc::SumUInt(a), Acc::SumUInt(b)) => *a = merge_opt(*a, b, u64::wrapping_add),
            (Acc::SumFloat(a), Acc::SumFloat(b)) => {
                *a = merge_opt(*a, b, |x, y| (f64::from_bits(x) + f64::from_bits(y)).to_bits())
            }
            (Acc::Min(a), Acc::Min(Some(b))) if a.as_ref().is_none_or(|a| b.sql_cmp(a) == Ordering::Less) => {
                *a = Some(b);
            }
            (Acc::Max(a), Acc::Max(Some(b))) if a.as_ref().is_none_or(|a| b.sql_cmp(a) == Ordering::Greater) => {
                *a = Some(b);
            }
            (Acc::Avg(s, n), Acc::Avg(s2, n2)) => {
                *s = (f64::from_bits(*s) + f64::from_bits(s2)).to_bits();
                *n += n2;
            }
            _ => {}
        }
    }

    /// The aggregate's result.
    pub fn result(&self) -> Value {
        match self {
            Acc::Count(n) => Value::Int(*n),
            Acc::Distinct(s) => Value::Int(s.len() as i64),
            Acc::SumInt(s) => s.map_or(Value::Null, Value::Int),
            Acc::SumUInt(s) => s.map_or(Value::Null, Value::UInt),
            Acc::SumFloat(s) => s.map_or(Value::Null, Value::Float),
            Acc::Min(m) | Acc::Max(m) => m.clone().unwrap_or(Value::Null),
            Acc::Avg(s, n) if *n > 0 => Value::float(f64::from_bits(*s) / *n as f64),
            Acc::Avg(..) => Value::Null,
        }
    }
}

/// The values a `COUNT(DISTINCT)` has seen: a short vector while there are
/// few (a card's countries in a minute), a hash set beyond
/// [`DistinctSet::SMALL`]. Serialized as a sorted sequence, as the
/// `BTreeSet` it replaces was.
#[derive(Debug, Clone)]
pub enum DistinctSet {
    /// Up to [`DistinctSet::SMALL`] values, unordered.
    Small(Vec<Value>),
    /// More.
    Large(HashSet<Value, FastHash>),
}

impl Default for DistinctSet {
    fn default() -> Self {
        DistinctSet::Small(Vec::new())
    }
}

impl DistinctSet {
    /// The most values kept in a vector.
    pub const SMALL: usize = 16;

    /// Adds a value (nothing when it is there already).
    pub fn insert(&mut self, v: &Value) {
        match self {
            DistinctSet::Small(vs) => {
                if vs.contains(v) {
                    return;
                }
                if vs.len() < Self::SMALL {
                    vs.push(v.clone());
                } else {
                    let mut set: HashSet<Value, FastHash> = std::mem::take(vs).into_iter().collect();
                    set.insert(v.clone());
                    *self = DistinctSet::Large(set);
                }
            }
            DistinctSet::Large(set) => {
                if !set.contains(v) {
                    set.insert(v.clone());
                }
            }
        }
    }

    /// How many distinct values.
    pub fn len(&self) -> usize {
        match self {
            DistinctSet::Small(vs) => vs.len(),
            DistinctSet::Large(set) => set.len(),
        }
    }

    /// True when no value was seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values, in no particular order.
    pub fn values(&self) -> Box<dyn Iterator<Item = &Value> + '_> {
        match self {
            DistinctSet::Small(vs) => Box::new(vs.iter()),
            DistinctSet::Large(set) => Box::new(set.iter()),
        }
    }

    fn into_values(self) -> Vec<Value> {
        match self {
            DistinctSet::Small(vs) => vs,
            DistinctSet::Large(set) => set.into_iter().collect(),
        }
    }

    fn sorted(&self) -> Vec<&Value> {
        let mut vs: Vec<&Value> = self.values().collect();
        vs.sort();
        vs
    }
}

impl PartialEq for DistinctSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.sorted() == other.sorted()
    }
}
impl Eq for DistinctSet {}

impl Serialize for DistinctSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.sorted())
    }
}

impl<'de> Deserialize<'de> for DistinctSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let values = Vec::<Value>::deserialize(d)?;
        let mut set = DistinctSet::default();
        for v in &values {
            set.insert(v);
        }
        Ok(set)
    }
}

fn merge_opt<T: Copy>(a: Option<T>, b: Option<T>, f: impl Fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// A window that closed: its key, bounds and aggregate results.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    /// The GROUP BY values (without the window).
    pub key: Vec<Value>,
    /// `window_start`, epoch ms.
    pub start: i64,
    /// `window_end`, epoch ms.
    pub end: i64,
    /// One result per aggregate.
    pub results: Vec<Value>,
}

/// A pre-closed window that closed: (start, end), and the keys changed
/// since its pre-close.
pub type PreClosed = ((i64, i64), FastSet<Vec<Value>>);

/// What [`WindowState::close_after_pre`] closed.
#[derive(Debug, Default)]
pub struct Closing {
    /// Rows to compute: every key of a window closed without a pre-close,
    /// the changed keys of a pre-closed one.
    pub rows: Vec<ClosedWindow>,
    /// Pre-closed windows now closed: (start, end), and the keys changed
    /// since their pre-close (their pre-computed rows are stale).
    pub pre_closed: Vec<PreClosed>,
}

/// Drops a large value on a thread of its own: freeing millions of keys
/// takes a task a fraction of a second it should spend on records.
fn drop_later<T: Send + 'static>(value: T) {
    let spawned = std::thread::Builder::new().name("smack-drop".into()).spawn(move || drop(value));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "could not start a thread to free closed state; it was freed inline");
    }
}

impl ClosedWindow {
    /// The order closed windows' rows are emitted in: (end, start, key).
    pub fn order(&self, other: &ClosedWindow) -> Ordering {
        (self.end, self.start, &self.key).cmp(&(other.end, other.start, &other.key))
    }
}

/// One open session of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    start: i64,
    end: i64,
    accs: Vec<Acc>,
    low: LowWater,
}

/// One open tumbling or hopping window: its keys, and what fed it.
#[derive(Debug, Clone, Default, PartialEq)]
struct FixedWindow {
    keys: FastMap<Vec<Value>, Vec<Acc>>,
    low: LowWater,
    /// Set when the window's rows were computed ahead of its close
    /// ([`WindowState::pre_close`]): the keys updated since, whose rows must
    /// be computed again when it closes.
    changed: Option<FastSet<Vec<Value>>>,
}

/// The open windows of a stage, keyed, with their accumulators.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowState {
    window: WindowFn,
    allowed_lateness: i64,
    aggs: Vec<(AggKind, NumClass)>,
    /// Tumbling and hopping windows, by (end, start): closing pops the front.
    fixed: BTreeMap<(i64, i64), FixedWindow>,
    /// Session windows, per key, sorted by start, never overlapping.
    sessions: FastMap<Vec<Value>, Vec<Session>>,
    scratch: Vec<(i64, i64)>,
    /// The most keys a closed fixed window had: a new window's map starts
    /// that large, so it does not rehash millions of keys as it fills (a
    /// stall of a few hundred milliseconds each time it doubles).
    keys_hint: usize,
    /// The source partition and first offset of the rows being folded in.
    origin: Option<(Origin, i64)>,
}

/// The serialized form of a [`WindowState`] (its open windows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSnapshot {
    /// Open windows: (start, end, key, accumulators), in (end, start, key) order.
    pub windows: Vec<(i64, i64, Vec<Value>, Vec<Acc>)>,
    /// What fed the open windows ([`LowWater`]): (start, end, the key for a
    /// session, none for a fixed window shared by its keys, low-water).
    #[serde(default)]
    pub lows: Vec<(i64, i64, Option<Vec<Value>>, LowWater)>,
}

/// Why a record was not added to any window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// The latest window the record belonged to.
    pub start: i64,
    /// Its end.
    pub end: i64,
}

impl WindowState {
    /// Empty state for a window function, lateness (ms) and aggregates.
    pub fn new(window: WindowFn, allowed_lateness: i64, aggs: Vec<(AggKind, NumClass)>) -> WindowState {
        WindowState {
            window,
            allowed_lateness,
            aggs,
            fixed: BTreeMap::new(),
            sessions: FastMap::default(),
            scratch: Vec::new(),
            keys_hint: 0,
            origin: None,
        }
    }

    /// Sets where the next updates' rows come from (a source partition and
    /// the first offset of its batch), so open windows know the lowest
    /// offset a replay must start from; None for rows of unknown origin.
    pub fn set_origin(&mut self, origin: Option<(Origin, i64)>) {
        self.origin = origin;
    }

    /// Over every open window, per source partition, the lowest offset
    /// that fed it (see [`super::replay`]).
    pub fn low_water(&self) -> LowWater {
        let mut low = LowWater::default();
        for w in self.fixed.values() {
            low.merge(&w.low);
        }
        for s in self.sessions.values().flatten() {
            low.merge(&s.low);
        }
        low.sort();
        low
    }

    /// How many (window, key) pairs are open.
    pub fn open_windows(&self) -> usize {
        self.fixed.values().map(|w| w.keys.len()).sum::<usize>() + self.sessions.values().map(Vec::len).sum::<usize>()
    }

    /// Folds a record (event time `t`, aggregate inputs `args`, one per
    /// aggregate) into its windows for `key`, at watermark `w`. Windows that
    /// are already closed are skipped; when all of them are, the record is
    /// late and nothing changes.
    pub fn update(&mut self, key: &[Value], t: i64, args: &[Value], w: i64) -> Result<(), Late> {
        if let WindowFn::Session { .. } = self.window {
            return self.update_session(key, t, args, w);
        }
        let mut windows = std::mem::take(&mut self.scratch);
        self.window.assign(t, &mut windows);
        let mut accepted = false;
        for &(start, end) in &windows {
            if closed(end, self.allowed_lateness, w) {
                continue;
            }
            accepted = true;
            let hint = self.keys_hint;
            let FixedWindow { keys, low, changed } = self.fixed.entry((end, start)).or_insert_with(|| FixedWindow {
                keys: FastMap::with_capacity_and_hasher(hint, FastHash::default()),
                ..FixedWindow::default()
            });
            if let Some((o, off)) = self.origin {
                low.note(o, off);
            }
            let accs = match keys.get_mut(key) {
                Some(a) => a,
                None => keys.entry(key.to_vec()).or_insert_with(|| new_accs(&self.aggs)),
            };
            fold(&self.aggs, accs, args);
            if let Some(changed) = changed {
                if !changed.contains(key) {
                    changed.insert(key.to_vec());
                }
            }
        }
        let last = windows.last().copied();
        self.scratch = windows;
        match (accepted, last) {
            (false, Some((start, end))) => Err(Late { start, end }),
            _ => Ok(()),
        }
    }

    fn update_session(&mut self, key: &[Value], t: i64, args: &[Value], w: i64) -> Result<(), Late> {
        let Some((mut start, mut end)) = self.window.session_of(t) else { return Ok(()) };
        let sessions = match self.sessions.get_mut(key) {
            Some(s) => s,
            None => self.sessions.entry(key.to_vec()).or_default(),
        };
        // Sessions overlapping [t, t + gap) merge with it.
        let overlapping: Vec<usize> =
            (0..sessions.len()).filter(|&i| sessions[i].start < end && start < sessions[i].end).collect();
        for &i in &overlapping {
            start = start.min(sessions[i].start);
            end = end.max(sessions[i].end);
        }
        if closed(end, self.allowed_lateness, w) {
            if sessions.is_empty() {
                self.sessions.remove(key);
            }
            return Err(Late { start, end });
        }
        let mut accs = new_accs(&self.aggs);
        let mut low = LowWater::default();
        for i in overlapping.into_iter().rev() {
            let old = sessions.remove(i);
            for (a, b) in accs.iter_mut().zip(old.accs) {
                a.merge(b);
            }
            low.merge(&old.low);
        }
        if let Some((o, off)) = self.origin {
            low.note(o, off);
        }
        fold(&self.aggs, &mut accs, args);
        let at = sessions.partition_point(|s| s.start < start);
        sessions.insert(at, Session { start, end, accs, low });
        Ok(())
    }

    /// Removes and returns every window closed at watermark `w`, ordered by
    /// (end, start); the keys of one window come in no particular order
    /// (sorting millions of them would stall the task: callers order the
    /// few rows they keep, see [`ClosedWindow::order`]).
    pub fn close(&mut self, w: i64) -> Vec<ClosedWindow> {
        let mut out = Vec::new();
        while let Some(entry) = self.fixed.first_entry() {
            let (end, start) = *entry.key();
            if !closed(end, self.allowed_lateness, w) {
                break;
            }
            let keys = entry.remove().keys;
            self.keys_hint = self.keys_hint.max(keys.len());
            out.reserve(keys.len());
            out.extend(keys.into_iter().map(|(key, accs)| ClosedWindow {
                key,
                start,
                end,
                results: accs.iter().map(Acc::result).collect(),
            }));
        }
        if !self.sessions.is_empty() {
            let lateness = self.allowed_lateness;
            self.sessions.retain(|key, sessions| {
                sessions.retain(|s| {
                    if closed(s.end, lateness, w) {
                        out.push(ClosedWindow {
                            key: key.clone(),
                            start: s.start,
                            end: s.end,
                            results: s.accs.iter().map(Acc::result).collect(),
                        });
                        false
                    } else {
                        true
                    }
                });
                !sessions.is_empty()
            });
            out.sort_by_key(|c| (c.end, c.start));
        }
        out
    }

    /// Fixed windows whose end the watermark `w` has passed but which stay
    /// open for their allowed lateness, and were not pre-closed yet: from
    /// now on, the keys updated in them are noted, so their rows can be
    /// computed now, off the path of their close, and only the keys changed
    /// meanwhile again when they close ([`WindowState::close_after_pre`]).
    /// Returns their (start, end).
    pub fn pre_close(&mut self, w: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        if self.allowed_lateness <= 0 {
            return out;
        }
        for (&(end, start), win) in self.fixed.iter_mut() {
            if end > w {
                break;
            }
            if !closed(end, self.allowed_lateness, w) && win.changed.is_none() {
                win.changed = Some(FastSet::default());
                out.push((start, end));
            }
        }
        out
    }

    /// When (in event time: the watermark it needs) the next fixed window
    /// closes; None without one.
    pub fn next_close(&self) -> Option<i64> {
        self.fixed.keys().next().map(|&(end, _)| end.saturating_add(self.allowed_lateness))
    }

    /// The keys of an open fixed window with their accumulators, in no
    /// particular order.
    pub fn window_keys(&self, start: i64, end: i64) -> Vec<(&[Value], &[Acc])> {
        self.fixed
            .get(&(end, start))
            .map(|w| w.keys.iter().map(|(k, a)| (k.as_slice(), a.as_slice())).collect())
            .unwrap_or_default()
    }

    /// Like [`WindowState::close`], for a caller that pre-closes: a window
    /// that was pre-closed gives rows only for the keys changed since (its
    /// other rows are the caller's, computed at the pre-close), and is
    /// listed in [`Closing::pre_closed`] with those keys.
    pub fn close_after_pre(&mut self, w: i64) -> Closing {
        let mut out = Closing::default();
        while let Some(entry) = self.fixed.first_entry() {
            let (end, start) = *entry.key();
            if !closed(end, self.allowed_lateness, w) {
                break;
            }
            let FixedWindow { mut keys, changed, .. } = entry.remove();
            self.keys_hint = self.keys_hint.max(keys.len());
            let Some(changed) = changed else {
                out.rows.reserve(keys.len());
                out.rows.extend(keys.into_iter().map(|(key, accs)| ClosedWindow {
                    key,
                    start,
                    end,
                    results: accs.iter().map(Acc::result).collect(),
                }));
                continue;
            };
            for key in &changed {
                if let Some(accs) = keys.remove(key) {
                    out.rows.push(ClosedWindow {
                        key: key.clone(),
                        start,
                        end,
                        results: accs.iter().map(Acc::result).collect(),
                    });
                }
            }
            out.pre_closed.push(((start, end), changed));
            drop_later(keys);
        }
        // Sessions (the fixed windows closed are gone).
        out.rows.extend(self.close(w));
        out
    }

    /// The open windows, for a checkpoint.
    pub fn snapshot(&self) -> WindowSnapshot {
        let mut windows = Vec::with_capacity(self.open_windows());
        let mut lows = Vec::new();
        for (&(end, start), win) in &self.fixed {
            if !win.low.is_empty() {
                lows.push((start, end, None, win.low.clone()));
            }
            let mut keys: Vec<_> = win.keys.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            windows.extend(keys.into_iter().map(|(k, a)| (start, end, k.clone(), a.clone())));
        }
        let mut sessions: Vec<_> = self
            .sessions
            .iter()
            .flat_map(|(k, ss)| ss.iter().map(move |s| (s.start, s.end, k.clone(), s.accs.clone(), s.low.clone())))
            .collect();
        sessions.sort_by(|a, b| (a.1, a.0, &a.2).cmp(&(b.1, b.0, &b.2)));
        for (start, end, key, accs, low) in sessions {
            if !low.is_empty() {
                lows.push((start, end, Some(key.clone()), low));
            }
            windows.push((start, end, key, accs));
        }
        WindowSnapshot { windows, lows }
    }

    /// Replaces the open windows with a snapshot's.
    pub fn restore(&mut self, snapshot: WindowSnapshot) -> Result<(), String> {
        self.fixed.clear();
        self.sessions.clear();
        for (start, end, key, accs) in snapshot.windows {
            if accs.len() != self.aggs.len() {
                return Err(format!(
                    "window [{start}, {end}) has {} aggregates, the stage has {}",
                    accs.len(),
                    self.aggs.len()
                ));
            }
            match self.window {
                WindowFn::Session { .. } => {
                    let ss = self.sessions.entry(key).or_default();
                    let at = ss.partition_point(|s| s.start < start);
                    ss.insert(at, Session { start, end, accs, low: LowWater::default() });
                }
                _ => {
                    self.fixed.entry((end, start)).or_default().keys.insert(key, accs);
                }
            }
        }
        for (start, end, key, low) in snapshot.lows {
            match key {
                None => {
                    if let Some(w) = self.fixed.get_mut(&(end, start)) {
                        w.low = low;
                    }
                }
                Some(key) => {
                    let s = self.sessions.get_mut(&key).and_then(|ss| ss.iter_mut().find(|s| s.start == start));
                    if let Some(s) = s {
                        s.low = low;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Leads the binary encoding of a [`WindowState`].
const STATE_MAGIC: &[u8; 8] = b"SMACKWS1";

impl WindowState {
    /// Appends the open windows in the binary form of [`super::codec`]: the
    /// fixed windows (bounds, what fed them, their keys and accumulators),
    /// then the sessions per key. Nothing is copied or sorted first.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(STATE_MAGIC);
        let mut w = Writer(out);
        w.len(self.fixed.len());
        for (&(end, start), win) in &self.fixed {
            w.i64(start);
            w.i64(end);
            w.low(&win.low);
            w.len(win.keys.len());
            for (key, accs) in &win.keys {
                w.values(key);
                w.accs(accs);
            }
        }
        w.len(self.sessions.len());
        for (key, sessions) in &self.sessions {
            w.values(key);
            w.len(sessions.len());
            for s in sessions {
                w.i64(s.start);
                w.i64(s.end);
                w.low(&s.low);
                w.accs(&s.accs);
            }
        }
    }

    /// Replaces the open windows with what [`WindowState::encode`] wrote.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(), String> {
        let body = bytes
            .strip_prefix(STATE_MAGIC.as_slice())
            .ok_or_else(|| "window state: expected it to start with SMACKWS1".to_string())?;
        let mut r = CodecReader::new(body);
        let mut fixed = BTreeMap::new();
        for _ in 0..r.len(24)? {
            let start = r.i64()?;
            let end = r.i64()?;
            let low = r.low()?;
            let n = r.len(8)?;
            let mut keys = FastMap::with_capacity_and_hasher(n, FastHash::default());
            for _ in 0..n {
                let key = r.values()?;
                let accs = self.checked_accs(r.accs()?, start, end)?;
                keys.insert(key, accs);
            }
            fixed.insert((end, start), FixedWindow { keys, low, changed: None });
        }
        let mut sessions = FastMap::default();
        for _ in 0..r.len(12)? {
            let key = r.values()?;
            let mut ss = Vec::new();
            for _ in 0..r.len(20)? {
                let start = r.i64()?;
                let end = r.i64()?;
                let low = r.low()?;
                let accs = self.checked_accs(r.accs()?, start, end)?;
                ss.push(Session { start, end, accs, low });
            }
            sessions.insert(key, ss);
        }
        if !r.is_done() {
            return Err("window state: bytes left over after the last session".into());
        }
        self.fixed = fixed;
        self.sessions = sessions;
        Ok(())
    }

    fn checked_accs(&self, accs: Vec<Acc>, start: i64, end: i64) -> Result<Vec<Acc>, String> {
        if accs.len() != self.aggs.len() {
            return Err(format!(
                "window [{start}, {end}) has {} aggregates, the stage has {}",
                accs.len(),
                self.aggs.len()
            ));
        }
        Ok(accs)
    }
}

fn new_accs(aggs: &[(AggKind, NumClass)]) -> Vec<Acc> {
    aggs.iter().map(|(k, c)| Acc::new(*k, *c)).collect()
}

fn fold(aggs: &[(AggKind, NumClass)], accs: &mut [Acc], args: &[Value]) {
    for ((acc, (kind, _)), v) in accs.iter_mut().zip(aggs).zip(args) {
        acc.update(*kind, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn aggs() -> Vec<(AggKind, NumClass)> {
        vec![
            (AggKind::CountStar, NumClass::Other),
            (AggKind::Sum, NumClass::Float),
            (AggKind::CountDistinct, NumClass::Other),
            (AggKind::Min, NumClass::Float),
            (AggKind::Max, NumClass::Float),
            (AggKind::Avg, NumClass::Float),
            (AggKind::Count, NumClass::Other),
        ]
    }

    fn args(amount: f64, country: &str) -> Vec<Value> {
        let a = Value::float(amount);
        let c = if country.is_empty() { Value::Null } else { Value::Str(country.into()) };
        vec![Value::Null, a.clone(), c.clone(), a.clone(), a.clone(), a, c]
    }

    fn key(k: &str) -> Vec<Value> {
        vec![Value::Str(k.into())]
    }

    #[test]
    fn tumbling_windows_aggregate_per_key_and_close_on_the_watermark() {
        let mut s = WindowState::new(WindowFn::Tumble { size: MIN }, 10_000, aggs());
        s.update(&key("c1"), 1_000, &args(10.0, "FR"), i64::MIN).unwrap();
        s.update(&key("c1"), 5_000, &args(-2.5, "DE"), i64::MIN).unwrap();
        s.update(&key("c1"), 9_000, &args(4.0, "FR"), i64::MIN).unwrap();
        s.update(&key("c1"), 7_000, &args(1.0, ""), i64::MIN).unwrap();
        s.update(&key("c2"), 61_000, &args(1.0, "FR"), i64::MIN).unwrap();
        assert_eq!(s.open_windows(), 2);
        assert!(s.close(69_999).is_empty(), "end + lateness not yet passed");
        let closed = s.close(70_000);
        assert_eq!(closed.len(), 1);
        let w = &closed[0];
        assert_eq!((w.start, w.end, &w.key), (0, MIN, &key("c1")));
        assert_eq!(
            w.results,
            vec![
                Value::Int(4),
                Value::float(12.5),
                Value::Int(2),
                Value::float(-2.5),
                Value::float(10.0),
                Value::float(12.5 / 4.0),
                Value::Int(3),
            ]
        );
        // A record for the closed window is late and changes nothing.
        assert_eq!(s.update(&key("c1"), 30_000, &args(1.0, "FR"), 70_000), Err(Late { start: 0, end: MIN }));
        // One for an open window still counts, however far behind the watermark.
        s.update(&key("c2"), 62_000, &args(1.0, "FR"), 70_000).unwrap();
        let rest = s.close(i64::MAX);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].results[0], Value::Int(2));
        assert_eq!(s.open_windows(), 0);
    }

    #[test]
    fn hopping_windows_get_every_record_they_contain() {
        let mut s = WindowState::new(WindowFn::Hop { slide: 30_000, size: MIN }, 0, aggs());
        for t in [1_000, 20_000, 31_000, 42_000] {
            s.update(&key("c1"), t, &args(1.0, "FR"), i64::MIN).unwrap();
        }
        let counts: Vec<(i64, Value)> =
            s.close(i64::MAX).into_iter().map(|w| (w.start, w.results[0].clone())).collect();
        assert_eq!(counts, vec![(-30_000, Value::Int(2)), (0, Value::Int(4)), (30_000, Value::Int(2))]);
        // Partly late: a record whose earlier window closed still lands in the later one.
        let mut s = WindowState::new(WindowFn::Hop { slide: 30_000, size: MIN }, 0, aggs());
        s.update(&key("c1"), 45_000, &args(1.0, "FR"), 60_000).unwrap();
        let starts: Vec<i64> = s.close(i64::MAX).into_iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![30_000]);
    }

    #[test]
    fn sessions_merge_when_a_record_bridges_them() {
        let mut s = WindowState::new(WindowFn::Session { gap: 10_000 }, 0, aggs());
        s.update(&key("u"), 0, &args(1.0, "A"), i64::MIN).unwrap();
        s.update(&key("u"), 25_000, &args(2.0, "B"), i64::MIN).unwrap();
        assert_eq!(s.open_windows(), 2);
        // 12s opens [12s, 22s): overlaps [0, 10s)? no; [25s, 35s)? no.
        s.update(&key("u"), 12_000, &args(4.0, "A"), i64::MIN).unwrap();
        assert_eq!(s.open_windows(), 3);
        // 8s opens [8s, 18s): bridges [0, 10s) and [12s, 22s).
        s.update(&key("u"), 8_000, &args(8.0, "C"), i64::MIN).unwrap();
        assert_eq!(s.open_windows(), 2);
        s.update(&key("v"), 8_000, &args(1.0, "C"), i64::MIN).unwrap();
        let closed = s.close(22_000);
        let got: Vec<(i64, i64, &Vec<Value>, &Value, &Value)> =
            closed.iter().map(|w| (w.start, w.end, &w.key, &w.results[0], &w.results[1])).collect();
        assert_eq!(
            got,
            vec![
                (8_000, 18_000, &key("v"), &Value::Int(1), &Value::float(1.0)),
                (0, 22_000, &key("u"), &Value::Int(3), &Value::float(13.0)),
            ]
        );
        assert_eq!(closed[1].results[2], Value::Int(2), "distinct countries A and C");
        // A record that would open a session that is already closed is late...
        assert_eq!(s.update(&key("u"), 1_000, &args(1.0, "A"), 22_000), Err(Late { start: 1_000, end: 11_000 }));
        // ...but one that joins an open session is not.
        s.update(&key("u"), 20_000, &args(1.0, "A"), 22_000).unwrap();
        let closed = s.close(i64::MAX);
        assert_eq!((closed[0].start, closed[0].end, &closed[0].results[0]), (20_000, 35_000, &Value::Int(2)));
    }

    #[test]
    fn state_round_trips_through_a_snapshot_exactly() {
        for window in [WindowFn::Hop { slide: 20_000, size: MIN }, WindowFn::Session { gap: 5_000 }] {
            let mut s = WindowState::new(window, 1_000, aggs());
            for (i, t) in [3_000i64, 17_000, 41_000, 44_000, 90_000].into_iter().enumerate() {
                let k = key(if i % 2 == 0 { "a" } else { "b" });
                s.update(&k, t, &args(0.1 * i as f64 + 1e-17, ["FR", "DE", ""][i % 3]), i64::MIN).unwrap();
            }
            let snap = s.snapshot();
            let json = serde_json::to_vec(&snap).unwrap();
            let mut restored = WindowState::new(window, 1_000, aggs());
            restored.restore(serde_json::from_slice(&json).unwrap()).unwrap();
            assert_eq!(restored.snapshot(), snap);
            assert_eq!(sorted(restored.close(i64::MAX)), sorted(s.close(i64::MAX)));
        }
        let mut s = WindowState::new(WindowFn::Tumble { size: 10 }, 0, aggs());
        let bad = WindowSnapshot { windows: vec![(0, 10, key("a"), vec![Acc::Count(1)])], lows: Vec::new() };
        assert!(s.restore(bad).unwrap_err().contains("has 1 aggregates, the stage has 7"));
    }

    fn sorted(mut closed: Vec<ClosedWindow>) -> Vec<ClosedWindow> {
        closed.sort_by(|a, b| a.order(b));
        closed
    }

    #[test]
    fn state_round_trips_through_its_binary_form_exactly() {
        for window in [WindowFn::Hop { slide: 20_000, size: MIN }, WindowFn::Session { gap: 5_000 }] {
            let mut s = WindowState::new(window, 1_000, aggs());
            for i in 0..400i64 {
                s.set_origin(Some(((0, (i % 3) as i32), 100 + i)));
                let k = key(&format!("card-{}", i % 37));
                // Up to 40 countries per key: past the small distinct set.
                let country = format!("C{}", i % 40);
                s.update(&k, i * 300, &args(0.1 * i as f64 + 1e-17, &country), i64::MIN).unwrap();
            }
            let mut bytes = Vec::new();
            s.encode(&mut bytes);
            let mut restored = WindowState::new(window, 1_000, aggs());
            restored.decode(&bytes).unwrap();
            assert_eq!(restored.snapshot(), s.snapshot());
            assert_eq!(restored.low_water(), s.low_water());
            assert_eq!(sorted(restored.close(i64::MAX)), sorted(s.close(i64::MAX)));
            // Damage is refused, never half-restored.
            let mut other = WindowState::new(window, 1_000, aggs());
            assert!(other.decode(&bytes[..bytes.len() - 3]).unwrap_err().contains("truncated"));
            assert!(other.decode(b"SMACKRT1").unwrap_err().contains("SMACKWS1"));
            assert_eq!(other.open_windows(), 0);
            let mut fewer = WindowState::new(window, 1_000, aggs()[..2].to_vec());
            assert!(fewer.decode(&bytes).unwrap_err().contains("the stage has 2"));
        }
    }

    #[test]
    fn the_next_close_is_the_earliest_window_end_plus_the_lateness() {
        let mut s = WindowState::new(WindowFn::Hop { slide: 30_000, size: MIN }, 10_000, aggs());
        assert_eq!(s.next_close(), None);
        s.update(&key("a"), 45_000, &args(1.0, "FR"), i64::MIN).unwrap();
        // In [0, 60 s) and [30 s, 90 s): the first closes at 70 s.
        assert_eq!(s.next_close(), Some(70_000));
        assert_eq!(s.pre_close(61_000), vec![(0, MIN)]);
        assert_eq!(s.pre_close(62_000), Vec::<(i64, i64)>::new(), "once");
        let closing = s.close_after_pre(70_000);
        assert!(closing.rows.is_empty() && closing.pre_closed.len() == 1);
        assert_eq!(s.next_close(), Some(100_000));
    }

    #[test]
    fn distinct_sets_grow_past_the_small_vector_and_compare_as_sets() {
        let mut a = DistinctSet::default();
        let mut b = DistinctSet::default();
        for i in 0..50 {
            a.insert(&Value::Int(i));
            b.insert(&Value::Int(49 - i));
            a.insert(&Value::Int(i / 2));
        }
        assert!(matches!(a, DistinctSet::Large(_)));
        assert_eq!(a.len(), 50);
        assert_eq!(a, b);
        let json = serde_json::to_string(&Acc::Distinct(a)).unwrap();
        let back: Acc = serde_json::from_str(&json).unwrap();
        assert_eq!(back.result(), Value::Int(50));
    }

    #[test]
    fn open_windows_know_the_lowest_offset_that_fed_them() {
        let mut s = WindowState::new(WindowFn::Tumble { size: MIN }, 0, aggs());
        assert!(s.low_water().is_empty());
        s.set_origin(Some(((0, 0), 100)));
        s.update(&key("a"), 1_000, &args(1.0, "FR"), i64::MIN).unwrap();
        s.set_origin(Some(((0, 1), 7)));
        s.update(&key("b"), 2_000, &args(1.0, "FR"), i64::MIN).unwrap();
        s.set_origin(Some(((0, 0), 150)));
        s.update(&key("a"), 61_000, &args(1.0, "FR"), i64::MIN).unwrap();
        let low = s.low_water();
        assert_eq!((low.get((0, 0)), low.get((0, 1))), (Some(100), Some(7)));
        // Once [0, 1 min) is emitted, only what fed [1 min, 2 min) is needed.
        assert_eq!(s.close(MIN).len(), 2);
        let low = s.low_water();
        assert_eq!((low.get((0, 0)), low.get((0, 1))), (Some(150), None));
        // A late record feeds nothing.
        s.set_origin(Some(((0, 1), 3)));
        assert!(s.update(&key("b"), 2_000, &args(1.0, "FR"), MIN).is_err());
        assert_eq!(s.low_water().get((0, 1)), None);
        // Rows of unknown origin feed without a mark.
        s.set_origin(None);
        s.update(&key("c"), 62_000, &args(1.0, "FR"), MIN).unwrap();
        assert_eq!(s.low_water().get((0, 0)), Some(150));
        s.close(i64::MAX);
        assert!(s.low_water().is_empty());
    }

    #[test]
    fn hopping_windows_hold_a_record_until_its_last_window_closes() {
        let mut s = WindowState::new(WindowFn::Hop { slide: 30_000, size: MIN }, 0, aggs());
        s.set_origin(Some(((0, 0), 10)));
        s.update(&key("a"), 45_000, &args(1.0, "FR"), i64::MIN).unwrap();
        s.set_origin(Some(((0, 0), 20)));
        s.update(&key("a"), 75_000, &args(1.0, "FR"), i64::MIN).unwrap();
        s.close(60_000);
        assert_eq!(s.low_water().get((0, 0)), Some(10), "[30 s, 90 s) still holds offset 10");
        s.close(90_000);
        assert_eq!(s.low_water().get((0, 0)), Some(20));
    }

    #[test]
    fn merged_sessions_keep_the_lowest_offset_of_each() {
        let mut s = WindowState::new(WindowFn::Session { gap: 10_000 }, 0, aggs());
        s.set_origin(Some(((0, 0), 50)));
        s.update(&key("u"), 0, &args(1.0, "A"), i64::MIN).unwrap();
        s.set_origin(Some(((0, 0), 60)));
        s.update(&key("u"), 25_000, &args(1.0, "A"), i64::MIN).unwrap();
        s.set_origin(Some(((1, 2), 5)));
        s.update(&key("v"), 40_000, &args(1.0, "A"), i64::MIN).unwrap();
        assert_eq!(s.low_water().get((0, 0)), Some(50));
        s.close(10_000);
        assert_eq!(s.low_water().get((0, 0)), Some(60));
        s.set_origin(Some(((0, 0), 70)));
        s.update(&key("u"), 33_000, &args(1.0, "A"), 10_000).unwrap();
        s.update(&key("u"), 45_000, &args(1.0, "A"), 10_000).unwrap();
        assert_eq!(s.open_windows(), 3);
        assert_eq!(s.low_water().get((0, 0)), Some(60), "merged into the session fed at 60");
        assert_eq!(s.low_water().get((1, 2)), Some(5));
    }

    #[test]
    fn low_water_survives_a_snapshot() {
        for window in [WindowFn::Hop { slide: 20_000, size: MIN }, WindowFn::Session { gap: 5_000 }] {
            let mut s = WindowState::new(window, 0, aggs());
            for (i, t) in [3_000i64, 17_000, 41_000, 44_000].into_iter().enumerate() {
                s.set_origin(Some(((0, (i % 2) as i32), 100 + i as i64)));
                s.update(&key(if i % 2 == 0 { "a" } else { "b" }), t, &args(1.0, "FR"), i64::MIN).unwrap();
            }
            let snap = s.snapshot();
            let mut restored = WindowState::new(window, 0, aggs());
            restored.restore(serde_json::from_slice(&serde_json::to_vec(&snap).unwrap()).unwrap()).unwrap();
            assert_eq!(restored.low_water(), s.low_water());
            assert_eq!(restored.close(20_000), s.close(20_000));
            assert_eq!(restored.low_water(), s.low_water());
        }
    }

    #[test]
    fn sums_keep_their_number_class_and_nulls() {
        let mut a = Acc::new(AggKind::Sum, NumClass::Int);
        assert_eq!(a.result(), Value::Null);
        a.update(AggKind::Sum, &Value::Int(5));
        a.update(AggKind::Sum, &Value::Null);
        a.update(AggKind::Sum, &Value::Int(-7));
        assert_eq!(a.result(), Value::Int(-2));
        let mut m = Acc::new(AggKind::Min, NumClass::Float);
        m.update(AggKind::Min, &Value::float(1.0));
        m.update(AggKind::Min, &Value::float(-3.0));
        assert_eq!(m.result(), Value::float(-3.0));
        let mut b = Acc::new(AggKind::Min, NumClass::Float);
        b.update(AggKind::Min, &Value::float(-4.0));
        m.merge(b);
        assert_eq!(m.result(), Value::float(-4.0));
    }
}
