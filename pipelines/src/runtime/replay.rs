//! Rebuilding window state by replay, for a stage task that lost its volume.
//!
//! Each open window remembers, per source partition it was fed from, the
//! lowest offset that contributed to it ([`LowWater`]; at micro-batch
//! granularity: the first offset of the batch, which is never above the
//! row's own). The minimum over every open window of a stage task is its
//! **low-water offset** per partition: everything an open window holds came
//! from that offset or later. The task commits it to Kafka at each
//! checkpoint, with a [`ResumePoint`] in the commit's metadata.
//!
//! A task that starts on a fresh volume reads both back, seeks to the
//! low-water offsets and calls [`crate::runtime::StageRuntime::begin_replay`].
//! While it replays (each partition up to the checkpoint's position) every
//! watermark is held at its minimum, so no window closes and no row is
//! late, and nothing is emitted: every sink row and dead letter those
//! records produced was flushed before the checkpoint. Then
//! [`crate::runtime::StageRuntime::end_replay`] puts back the checkpoint's
//! partition clocks and, per stage, its input watermark, and drops the
//! windows closed at that watermark: those were emitted before the
//! checkpoint (the replay saw only part of them). The windows left are the
//! ones open at the checkpoint, each rebuilt from all of its records:
//! - a record that counted in an open window was counted when it came (the
//!   window was open then too, watermarks only rise) and has an offset at or
//!   above the low-water offset, so the replay counts it again;
//! - a record below the low-water offset counted in no open window;
//! - a record that was late at the time has all its windows closed at the
//!   checkpoint: they are dropped.
//!
//! Limits, exactly: session windows are rebuilt exactly unless a record
//! that was late (or that came after a neighbouring session had been
//! emitted) falls within the gap of a session still open at the
//! checkpoint: the replay then merges what the original run kept apart.
//! Rows a join stage buffers, and per-batch rows not yet evaluated by a
//! join, are not rebuilt (only windowed state is).

use super::time::PartitionClock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A source partition, by the source's position among the pipeline's
/// sources (stable for a given pipeline file) and the partition id.
pub type Origin = (u32, i32);

/// Per source partition, the lowest offset that fed something (a window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LowWater(Vec<(Origin, i64)>);

impl LowWater {
    /// Records that `origin` fed this at `offset` (keeps the lowest).
    #[inline]
    pub fn note(&mut self, origin: Origin, offset: i64) {
        for (o, off) in self.0.iter_mut() {
            if *o == origin {
                if offset < *off {
                    *off = offset;
                }
                return;
            }
        }
        self.0.push((origin, offset));
    }

    /// Folds another low-water in (a session merge).
    pub fn merge(&mut self, other: &LowWater) {
        for (o, off) in &other.0 {
            self.note(*o, *off);
        }
    }

    /// The lowest offset of `origin`, if it fed this.
    pub fn get(&self, origin: Origin) -> Option<i64> {
        self.0.iter().find(|(o, _)| *o == origin).map(|(_, off)| *off)
    }

    /// Orders the entries by origin (for comparisons and stable output).
    pub fn sort(&mut self) {
        self.0.sort_unstable();
    }

    /// Whether nothing fed this.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every (origin, offset).
    pub fn iter(&self) -> impl Iterator<Item = (Origin, i64)> + '_ {
        self.0.iter().copied()
    }
}

/// What a stage was at a checkpoint, for a replay to come back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMark {
    /// A windowed stage's input watermark (windows closed at it were emitted).
    pub wm_in: i64,
    /// The stage's output watermark.
    pub out_wm: i64,
}

/// What a task stores in Kafka's commit metadata at each checkpoint, one per
/// partition: with the committed (low-water) offset, enough to rebuild its
/// state on a fresh volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// The format's version (1).
    pub v: u32,
    /// The partition's position at the checkpoint (the next offset to read):
    /// records below it were processed and their output flushed.
    pub pos: i64,
    /// The partition's largest event time at the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<i64>,
    /// Per stage of the task, its watermarks at the checkpoint.
    #[serde(default)]
    pub stages: BTreeMap<String, StageMark>,
    /// Per partition of the source's dead-letter topic, its end at the
    /// checkpoint: what lies beyond was sent after it (and is not sent again).
    #[serde(default)]
    pub dead_letters: BTreeMap<i32, i64>,
}

/// The prefix of commit metadata written by smack.
const PREFIX: &str = "smack-resume ";

impl ResumePoint {
    /// The metadata string: `smack-resume ` and compact JSON.
    pub fn encode(&self) -> String {
        format!("{PREFIX}{}", serde_json::to_string(self).unwrap_or_default())
    }

    /// Reads metadata written by [`ResumePoint::encode`]; None for anything
    /// else (no metadata, another writer's, another version).
    pub fn decode(metadata: &str) -> Option<ResumePoint> {
        let p: ResumePoint = serde_json::from_str(metadata.strip_prefix(PREFIX)?).ok()?;
        (p.v == 1).then_some(p)
    }

    /// The partition clock it restores.
    pub fn partition_clock(&self) -> PartitionClock {
        PartitionClock { max_event_time: self.clock, idle: false }
    }
}

/// A replay in progress: per (source, partition), the clock to restore;
/// per stage, its mark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Per (source, partition): the largest event time at the checkpoint.
    pub clocks: BTreeMap<(String, i32), Option<i64>>,
    /// Per stage, its watermarks at the checkpoint.
    pub stages: BTreeMap<String, StageMark>,
}

impl Replay {
    /// Adds one partition's resume point (stage marks agree across the
    /// partitions of one checkpoint; the lowest is kept if they do not).
    pub fn add(&mut self, source: &str, partition: i32, point: &ResumePoint) {
        self.clocks.insert((source.to_string(), partition), point.clock);
        for (stage, m) in &point.stages {
            self.stages
                .entry(stage.clone())
                .and_modify(|have| {
                    have.wm_in = have.wm_in.min(m.wm_in);
                    have.out_wm = have.out_wm.min(m.out_wm);
                })
                .or_insert(*m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_water_keeps_the_lowest_offset_per_origin() {
        let mut l = LowWater::default();
        assert!(l.is_empty());
        l.note((0, 3), 40);
        l.note((0, 3), 50);
        l.note((0, 1), 7);
        l.note((0, 3), 12);
        assert_eq!(l.get((0, 3)), Some(12));
        assert_eq!(l.get((0, 1)), Some(7));
        assert_eq!(l.get((1, 3)), None);
        let mut m = LowWater::default();
        m.note((0, 1), 9);
        m.note((1, 3), 2);
        m.merge(&l);
        assert_eq!(m.get((0, 1)), Some(7));
        assert_eq!(m.get((1, 3)), Some(2));
        assert_eq!(m.iter().count(), 3);
    }

    #[test]
    fn resume_points_round_trip_through_commit_metadata() {
        let p = ResumePoint {
            v: 1,
            pos: 1234,
            clock: Some(1_700_000_000_000),
            stages: [("card_velocity".to_string(), StageMark { wm_in: 5, out_wm: -5 })].into(),
            dead_letters: [(0, 17)].into(),
        };
        let text = p.encode();
        assert!(text.starts_with("smack-resume {"), "{text}");
        assert!(text.len() < 4096, "Kafka's default offset.metadata.max.bytes");
        assert_eq!(ResumePoint::decode(&text), Some(p.clone()));
        assert_eq!(ResumePoint::decode(""), None);
        assert_eq!(ResumePoint::decode("something else"), None);
        assert_eq!(ResumePoint::decode("smack-resume {\"v\":2,\"pos\":1}"), None);
        assert_eq!(ResumePoint::decode("smack-resume {\"v\":1,\"pos\":1}").map(|p| p.pos), Some(1));
        assert_eq!(p.partition_clock().max_event_time, Some(1_700_000_000_000));
    }

    /// One transaction per event time, on card `c1` (other columns null).
    fn transactions(rt: &crate::runtime::StageRuntime, times: &[i64]) -> datafusion::arrow::array::RecordBatch {
        use datafusion::arrow::array::{
            new_null_array, ArrayRef, Float64Array, StringArray, TimestampMillisecondArray,
        };
        use std::sync::Arc;
        let n = times.len();
        let schema = rt.source_schema("transactions").expect("the fraud example's source");
        let text = |v: &str| Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n))) as ArrayRef;
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "card_id" => text("c1"),
                "merchant" => text("m1"),
                "country" => text("FR"),
                "amount" => Arc::new(Float64Array::from_iter_values(std::iter::repeat_n(1.0, n))) as ArrayRef,
                "ts" => {
                    Arc::new(TimestampMillisecondArray::from_iter_values(times.iter().copied()).with_timezone("UTC"))
                }
                _ => new_null_array(f.data_type(), n),
            })
            .collect();
        datafusion::arrow::array::RecordBatch::try_new(schema, columns).expect("a batch of the source's schema")
    }

    /// The fraud example's runtime, with partitions 0 and 1 of `transactions`.
    async fn fraud_runtime() -> crate::runtime::StageRuntime {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fraud-detection/pipeline.yaml");
        let spec = crate::load(&path).expect("the fraud example");
        let mut rt = crate::runtime::StageRuntime::with_lookups(&spec, &crate::runtime::lookup::empty_lookups(&spec))
            .await
            .expect("runtime");
        rt.assign_partitions("transactions", &[0, 1]).expect("assign");
        rt
    }

    #[tokio::test]
    async fn a_partition_marked_idle_during_the_replay_stays_idle_after_it() {
        // The task marks a silent partition at its end idle while others
        // still replay; the end of the replay restores the checkpoint's
        // clocks and must keep that mark, or the partition holds the
        // watermark back until it gets records again (with none coming,
        // no window would ever close).
        let mut rt = fraud_runtime().await;
        let t0 = 1_704_067_200_000;
        let point = |pos, clock| ResumePoint {
            v: 1,
            pos,
            clock: Some(clock),
            stages: [("card_velocity".to_string(), StageMark { wm_in: t0, out_wm: t0 - 10_000 })].into(),
            dead_letters: BTreeMap::new(),
        };
        let mut replay = Replay::default();
        replay.add("transactions", 0, &point(3, t0 + 120_000));
        replay.add("transactions", 1, &point(1, t0 + 10_000));
        rt.begin_replay(replay);
        let b = transactions(&rt, &[t0 + 100_000, t0 + 110_000, t0 + 120_000]);
        assert!(rt.push_range("transactions", 0, 0, 3, b).await.expect("replayed").sinks.is_empty());
        rt.set_idle("transactions", 1, true).expect("idle");
        assert!(rt.end_replay().await.expect("replay ended").sinks.is_empty());
        assert_eq!(
            rt.watermark("transactions"),
            Some(t0 + 115_000),
            "partition 1 is idle: only partition 0 (120 s − 5 s) holds the watermark"
        );
        // Partition 1 active again (a record came): it holds the watermark.
        let b = transactions(&rt, &[t0 + 20_000]);
        rt.push_range("transactions", 1, 1, 2, b).await.expect("pushed");
        assert_eq!(rt.watermark("transactions"), Some(t0 + 15_000));
    }

    #[tokio::test]
    async fn an_active_partition_holds_the_watermark_after_a_replay() {
        let mut rt = fraud_runtime().await;
        let t0 = 1_704_067_200_000;
        let mut replay = Replay::default();
        for (p, clock) in [(0, t0 + 120_000), (1, t0 + 10_000)] {
            let point = ResumePoint {
                v: 1,
                pos: 1,
                clock: Some(clock),
                stages: BTreeMap::new(),
                dead_letters: BTreeMap::new(),
            };
            replay.add("transactions", p, &point);
        }
        rt.begin_replay(replay);
        assert_eq!(rt.watermark("transactions"), Some(crate::runtime::time::MIN_WATERMARK), "held during a replay");
        rt.end_replay().await.expect("replay ended");
        assert_eq!(rt.watermark("transactions"), Some(t0 + 5_000), "the checkpoint's clocks are back");
    }

    #[test]
    fn a_replay_gathers_clocks_and_the_lowest_stage_marks() {
        let point = |pos, clock, wm| ResumePoint {
            v: 1,
            pos,
            clock,
            stages: [("s".to_string(), StageMark { wm_in: wm, out_wm: wm - 1 })].into(),
            dead_letters: BTreeMap::new(),
        };
        let mut r = Replay::default();
        r.add("tx", 0, &point(10, Some(100), 90));
        r.add("tx", 1, &point(20, None, 80));
        assert_eq!(r.clocks[&("tx".to_string(), 0)], Some(100));
        assert_eq!(r.clocks[&("tx".to_string(), 1)], None);
        assert_eq!(r.stages["s"], StageMark { wm_in: 80, out_wm: 79 });
    }
}
