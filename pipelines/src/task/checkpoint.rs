//! What a stage task stores at each checkpoint: who wrote it (pipeline,
//! stage, task i of N), the end offsets of its dead-letter topics once they
//! were flushed, and the runtime's own bytes (window state and source
//! offsets, [`crate::runtime::StageRuntime::checkpoint_state`]) — together in
//! one blob, so one atomic write of the checkpoint store covers all of it.
//!
//! Format: `SMACKTK1`, a little-endian u64 length, a JSON header
//! ([`TaskCheckpoint`]), then the runtime's bytes to the end.

use super::TaskError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MAGIC: &[u8; 8] = b"SMACKTK1";

/// The header of a task checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCheckpoint {
    /// Format version (1).
    pub version: u32,
    /// The pipeline's name.
    pub pipeline: String,
    /// The stage.
    pub stage: String,
    /// This task's index.
    pub task_index: u32,
    /// The stage's task count when the checkpoint was written: the partition
    /// assignment depends on it.
    pub task_count: u32,
    /// Per dead-letter topic, per partition, the offset after the last
    /// record acknowledged before this checkpoint. On restart, what lies
    /// beyond was sent by the run that crashed and is not sent again.
    pub dead_letter_ends: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl TaskCheckpoint {
    /// The blob to store: header, then `runtime` bytes.
    pub fn encode(&self, runtime: &[u8]) -> Result<Vec<u8>, TaskError> {
        let json =
            serde_json::to_vec(self).map_err(|e| TaskError::Checkpoint(format!("encoding the task header: {e}")))?;
        let mut out = Vec::with_capacity(16 + json.len() + runtime.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(runtime);
        Ok(out)
    }

    /// Splits a stored blob into its header and the runtime's bytes.
    pub fn decode(bytes: &[u8]) -> Result<(TaskCheckpoint, &[u8]), TaskError> {
        let bad = |m: String| TaskError::Checkpoint(m);
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not a stage task checkpoint (expected it to start with SMACKTK1)".into()))?;
        let len = rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| bad("truncated before the header length".into()))? as usize;
        let json = rest
            .get(8..8usize.saturating_add(len))
            .ok_or_else(|| bad(format!("truncated: the header says {len} bytes")))?;
        let header: TaskCheckpoint =
            serde_json::from_slice(json).map_err(|e| bad(format!("reading the task header: {e}")))?;
        if header.version != 1 {
            return Err(bad(format!("version {}, expected 1", header.version)));
        }
        Ok((header, &rest[8 + len..]))
    }

    /// Refuses a checkpoint written by another stage, task, or task count
    /// (its offsets would be for partitions this task no longer owns).
    pub fn check_owner(&self, pipeline: &str, stage: &str, task_index: u32, task_count: u32) -> Result<(), TaskError> {
        if self.pipeline != pipeline || self.stage != stage {
            return Err(TaskError::Checkpoint(format!(
                "the volume holds a checkpoint of {}/{}, expected {pipeline}/{stage}",
                self.pipeline, self.stage
            )));
        }
        if self.task_index != task_index || self.task_count != task_count {
            return Err(TaskError::Checkpoint(format!(
                "the volume holds the checkpoint of task {} of {}, this is task {task_index} of {task_count}; \
                 changing a stage's parallelism needs a fresh volume (it then resumes from the committed offsets)",
                self.task_index, self.task_count
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> TaskCheckpoint {
        TaskCheckpoint {
            version: 1,
            pipeline: "p".into(),
            stage: "s".into(),
            task_index: 1,
            task_count: 3,
            dead_letter_ends: [("p.t.dead-letter".to_string(), [(0, 17)].into())].into(),
        }
    }

    #[test]
    fn round_trip_keeps_header_and_runtime_bytes() {
        let blob = header().encode(b"SMACKRT1...").unwrap();
        let (h, rt) = TaskCheckpoint::decode(&blob).unwrap();
        assert_eq!(h, header());
        assert_eq!(rt, b"SMACKRT1...");
        let empty = header().encode(b"").unwrap();
        assert_eq!(TaskCheckpoint::decode(&empty).unwrap().1, b"");
    }

    #[test]
    fn damaged_blobs_are_refused_with_the_reason() {
        let e = TaskCheckpoint::decode(b"SMACKRT1").unwrap_err().to_string();
        assert!(e.contains("SMACKTK1"), "{e}");
        let blob = header().encode(b"x").unwrap();
        let e = TaskCheckpoint::decode(&blob[..12]).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = TaskCheckpoint::decode(&blob[..30]).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let mut v2 = header();
        v2.version = 2;
        let e = TaskCheckpoint::decode(&v2.encode(b"").unwrap()).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn a_checkpoint_belongs_to_one_task_of_one_stage() {
        let h = header();
        h.check_owner("p", "s", 1, 3).unwrap();
        assert!(h.check_owner("p", "other", 1, 3).unwrap_err().to_string().contains("p/s"));
        let e = h.check_owner("p", "s", 1, 4).unwrap_err().to_string();
        assert!(e.contains("task 1 of 3") && e.contains("task 1 of 4"), "{e}");
    }
}
