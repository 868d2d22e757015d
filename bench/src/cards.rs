//! The fraud generator's card population in the lookups: answered from
//! memory for the CPU phases, and written to Cassandra lookup tables
//! (filled once per seed and card count, a marker row says so) for the
//! Kafka and latency phases.

use crate::measure::now_ms;
use crate::{refuse, BenchError, Context};
use futures::{StreamExt, TryStreamExt};
use scylla::statement::batch::{Batch, BatchType};
use smack_connectors::arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch, StringArray};
use smack_connectors::arrow::compute::cast;
use smack_connectors::arrow::datatypes::{DataType, SchemaRef};
use smack_connectors::cassandra::{CassandraSession, Consistency, CqlTimestamp};
use smack_connectors::kafka::KafkaAdmin;
use smack_pipelines::runtime::lookup::{lookup_schema, LookupProviders};
use smack_pipelines::runtime::{LookupFetch, LookupProvider};
use smack_pipelines::spec::{Lookup, PipelineSpec};
use smack_pipelines::task::{card_home_lookups, prepare, PrepareOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A lookup answered from memory: each bench card's home country, for a
/// lookup keyed by `card_id` with a `home_country` column ([`card_home_lookups`]).
pub(crate) struct CardHomes {
    pub(crate) schema: SchemaRef,
    pub(crate) homes: Arc<HashMap<String, &'static str>>,
}

/// A batch of `schema` (a card lookup's) holding `rows`; columns other
/// than `card_id` and `home_country` are null.
pub(crate) fn card_batch(schema: &SchemaRef, rows: &[(&str, &str)]) -> Result<RecordBatch, String> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "card_id" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                "home_country" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                _ => new_null_array(f.data_type(), rows.len()),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

impl LookupProvider for CardHomes {
    fn fetch<'a>(&'a self, keys: &'a RecordBatch) -> LookupFetch<'a> {
        Box::pin(async move {
            let col = keys.column_by_name("card_id").ok_or("the keys have no `card_id` column")?;
            let col = cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
            let col = col.as_string::<i32>();
            // One row per card, whatever the keys repeat (a repeated row
            // would multiply the joined transactions).
            let mut seen = std::collections::HashSet::new();
            let found: Vec<(&str, &str)> = (0..col.len())
                .filter(|i| !col.is_null(*i) && seen.insert(col.value(*i)))
                .filter_map(|i| self.homes.get(col.value(i)).map(|h| (col.value(i), *h)))
                .collect();
            card_batch(&self.schema, &found)
        })
    }
}

/// In-memory providers for the lookups of `spec`; each must be one the
/// fraud generator's cards answer.
pub(crate) fn memory_lookups(
    spec: &PipelineSpec,
    cards: &[(String, &'static str)],
) -> Result<LookupProviders, BenchError> {
    let answerable = card_home_lookups(spec);
    let mut out = LookupProviders::new();
    if spec.lookups.is_empty() {
        return Ok(out);
    }
    let homes: HashMap<String, &'static str> = cards.iter().cloned().collect();
    let homes = Arc::new(homes);
    for (name, l) in &spec.lookups {
        if !answerable.contains(name) {
            refuse!("lookup `{name}`: the bench only answers the fraud generator's card_id → home_country lookups");
        }
        let p = CardHomes { schema: lookup_schema(l), homes: homes.clone() };
        out.insert(name.clone(), Arc::new(p) as Arc<dyn LookupProvider>);
    }
    Ok(out)
}

/// The card population of a run: the generator's seed and card count
/// (the cards and their homes follow from these two alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Population {
    pub(crate) seed: u64,
    pub(crate) cards: u64,
}

/// Cassandra's longest table name.
pub(crate) const MAX_TABLE_NAME: usize = 48;

impl Population {
    /// The table of this population's cards for a lookup of table `base`:
    /// `<base>_s<seed>_c<cards>`, `base` cut short so the name fits.
    pub(crate) fn table(&self, base: &str) -> String {
        let suffix = format!("_s{}_c{}", self.seed, self.cards);
        let base: String = base.chars().take(MAX_TABLE_NAME.saturating_sub(suffix.len())).collect();
        format!("{base}{suffix}")
    }
}

/// The keyspace of the card tables of lookups in `keyspace` (kept between
/// runs, see the module doc).
pub(crate) fn cards_keyspace(keyspace: &str) -> String {
    format!("{keyspace}_benchcards")
}

/// How the card lookup tables are filled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillOptions {
    /// Rows per unlogged batch.
    pub(crate) batch: usize,
    /// Batches in flight at most.
    pub(crate) in_flight: usize,
    /// Fill even when the marker says it was.
    pub(crate) refill: bool,
}

/// The table of fill markers in a cards keyspace: one row per card table
/// that a run filled completely.
pub(crate) const FILL_MARKERS: &str = "bench_fills";

/// Why a card table must be filled, or `None` when it holds the cards
/// already: its marker (the seed and card count of the fill that
/// completed, if any) against `population`, and how many of `samples`
/// sample cards were read back with their home.
pub(crate) fn fill_reason(
    marker: Option<(i64, i64)>,
    population: Population,
    found: usize,
    samples: usize,
    refill: bool,
) -> Option<&'static str> {
    if refill {
        return Some("--refill");
    }
    match marker {
        None => Some("no run has filled it yet"),
        Some((seed, cards)) if seed != population.seed as i64 || cards != population.cards as i64 => {
            Some("its marker is of other cards")
        }
        Some(_) if found < samples => Some("sample cards are missing"),
        Some(_) => None,
    }
}

/// The cards read back to check a filled table: the first, the middle
/// and the last of `n`.
pub(crate) fn sample_cards(n: usize) -> Vec<usize> {
    let mut v = vec![0, n / 2, n.saturating_sub(1)];
    v.retain(|i| *i < n);
    v.dedup();
    v
}

/// Creates the topics, keyspaces and tables of `spec` and fills its card
/// lookups with `cards` (of `population`), unless a marker says an earlier
/// run did (see the module doc).
pub(crate) async fn prepare_bench(
    spec: &PipelineSpec,
    admin: &KafkaAdmin,
    session: &CassandraSession,
    dc: &str,
    cards: &[(String, &'static str)],
    population: Population,
    fill: FillOptions,
) -> Result<(), BenchError> {
    prepare(spec, admin, Some(session), &PrepareOptions::new(dc, 1)).await?;
    for name in card_home_lookups(spec) {
        let Lookup::Cassandra(c) = &spec.lookups[&name];
        let (ks, table) = (c.keyspace.as_str(), c.table.as_str());
        session
            .execute_ddl(&format!(
                "CREATE TABLE IF NOT EXISTS {ks}.{FILL_MARKERS} \
                 (table_name text PRIMARY KEY, seed bigint, cards bigint, filled_at timestamp, seconds double)"
            ))
            .await?;
        let cql = format!("SELECT seed, cards FROM {ks}.{FILL_MARKERS} WHERE table_name = ?");
        let marker = session
            .inner()
            .query_unpaged(cql.as_str(), (table,))
            .await
            .with_context(|| cql.clone())?
            .into_rows_result()
            .with_context(|| cql.clone())?
            .maybe_first_row::<(Option<i64>, Option<i64>)>()
            .with_context(|| cql.clone())?
            .and_then(|(seed, n)| Some((seed?, n?)));
        let samples = sample_cards(cards.len());
        let mut found = 0;
        let cql = format!("SELECT home_country FROM {ks}.{table} WHERE card_id = ?");
        for i in &samples {
            let (id, home) = &cards[*i];
            let row = session
                .inner()
                .query_unpaged(cql.as_str(), (id.as_str(),))
                .await
                .with_context(|| cql.clone())?
                .into_rows_result()
                .with_context(|| cql.clone())?
                .maybe_first_row::<(Option<String>,)>()
                .with_context(|| cql.clone())?;
            if row.and_then(|r| r.0).as_deref() == Some(*home) {
                found += 1;
            }
        }
        let Some(why) = fill_reason(marker, population, found, samples.len(), fill.refill) else {
            println!(
                "lookup `{name}`: {ks}.{table} holds the {} cards of seed {} already (its marker in {ks}.{FILL_MARKERS}, \
                 {found} sample cards read back): fill skipped",
                population.cards, population.seed
            );
            continue;
        };
        println!("lookup `{name}`: filling {ks}.{table} with {} cards ({why})", cards.len());
        let took = fill_cards(session, ks, table, cards, fill).await?;
        let cql = format!(
            "INSERT INTO {ks}.{FILL_MARKERS} (table_name, seed, cards, filled_at, seconds) VALUES (?, ?, ?, ?, ?)"
        );
        let values =
            (table, population.seed as i64, population.cards as i64, CqlTimestamp(now_ms()), took.as_secs_f64());
        session.inner().query_unpaged(cql.as_str(), values).await.with_context(|| cql.clone())?;
        println!(
            "lookup `{name}`: {} cards written to {ks}.{table} in {:.1} s: {:.0} rows/s (unlogged batches of {}, {} in flight)",
            cards.len(),
            took.as_secs_f64(),
            cards.len() as f64 / took.as_secs_f64(),
            fill.batch.max(1),
            fill.in_flight.max(1)
        );
    }
    Ok(())
}

/// Upserts every card into `keyspace.table` (`card_id`, `home_country`;
/// other columns stay null) in unlogged batches of `fill.batch` rows,
/// `fill.in_flight` batches at once, each retried a few times; prints the
/// progress every tenth. Returns how long it took.
pub(crate) async fn fill_cards(
    session: &CassandraSession,
    keyspace: &str,
    table: &str,
    cards: &[(String, &'static str)],
    fill: FillOptions,
) -> Result<Duration, BenchError> {
    let cql = format!("INSERT INTO {keyspace}.{table} (card_id, home_country) VALUES (?, ?)");
    let mut insert = session.inner().prepare(cql.as_str()).await.with_context(|| format!("prepare `{cql}`"))?;
    insert.set_consistency(Consistency::LocalQuorum);
    insert.set_is_idempotent(true);
    let size = fill.batch.max(1);
    let batch_of = |rows: usize| {
        let mut b = Batch::new(BatchType::Unlogged);
        for _ in 0..rows {
            b.append_statement(insert.clone());
        }
        b.set_consistency(Consistency::LocalQuorum);
        b.set_is_idempotent(true);
        b
    };
    let (full, last) = (batch_of(size), batch_of(cards.len() % size));
    let s = session.inner();
    let started = Instant::now();
    let tenth = (cards.len() / 10).max(1);
    futures::stream::iter(cards.chunks(size))
        .map(|chunk| {
            let batch = if chunk.len() == size { &full } else { &last };
            async move {
                let values: Vec<(&str, &str)> = chunk.iter().map(|(id, home)| (id.as_str(), *home)).collect();
                let mut attempt = 0u32;
                loop {
                    match s.batch(batch, &values).await {
                        Ok(_) => return Ok::<_, BenchError>(chunk.len()),
                        Err(e) if attempt < 5 => {
                            attempt += 1;
                            tracing::debug!(error = %e, attempt, "a batch of cards was not written; retrying");
                            tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                        }
                        Err(e) => {
                            refuse!(
                                "write {} cards into {keyspace}.{table} (after {attempt} retries): {e}",
                                chunk.len()
                            )
                        }
                    }
                }
            }
        })
        .buffer_unordered(fill.in_flight.max(1))
        .try_fold(0usize, |done, n| async move {
            if (done + n) / tenth > done / tenth {
                let t = started.elapsed().as_secs_f64();
                println!("  {} of {} cards in {t:.1} s ({:.0} rows/s)", done + n, cards.len(), (done + n) as f64 / t);
            }
            Ok(done + n)
        })
        .await?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_table_is_named_by_its_population_and_fits_cassandra() {
        assert_eq!(Population { seed: 7, cards: 100_000 }.table("card_homes"), "card_homes_s7_c100000");
        let long = Population { seed: u64::MAX, cards: u64::MAX }.table("card_homes");
        assert_eq!(long.len(), MAX_TABLE_NAME, "{long}");
        assert!(long.starts_with("card_s") && long.ends_with(&format!("_c{}", u64::MAX)), "{long}");
        let other = Population { seed: 8, cards: 100_000 }.table("card_homes");
        assert_ne!(other, "card_homes_s7_c100000");
    }

    #[test]
    fn a_card_table_is_filled_unless_its_marker_and_samples_say_it_holds_the_cards() {
        let p = Population { seed: 42, cards: 3_000_000 };
        assert_eq!(fill_reason(Some((42, 3_000_000)), p, 3, 3, false), None);
        assert_eq!(fill_reason(Some((42, 3_000_000)), p, 3, 3, true), Some("--refill"));
        assert_eq!(fill_reason(None, p, 3, 3, false), Some("no run has filled it yet"));
        assert_eq!(fill_reason(Some((42, 100_000)), p, 3, 3, false), Some("its marker is of other cards"));
        assert_eq!(fill_reason(Some((41, 3_000_000)), p, 3, 3, false), Some("its marker is of other cards"));
        assert_eq!(fill_reason(Some((42, 3_000_000)), p, 2, 3, false), Some("sample cards are missing"));
    }

    #[test]
    fn sample_cards_are_the_first_middle_and_last() {
        assert_eq!(sample_cards(3_000_000), vec![0, 1_500_000, 2_999_999]);
        assert_eq!(sample_cards(2), vec![0, 1]);
        assert_eq!(sample_cards(1), vec![0]);
        assert!(sample_cards(0).is_empty());
    }
}
