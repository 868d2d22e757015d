//! Which partitions of a topic stage task i of N owns: a fixed, pure
//! assignment (no consumer-group rebalancing), so a task recovered on its own
//! disk resumes the very partitions its checkpoint holds offsets for.

use super::{Error, Result};

/// The partitions (ids) of a topic with `partitions` partitions that task
/// `task_index` of `task_count` owns: partition p goes to task p mod N.
///
/// Every partition is owned by exactly one task; a task may own none when
/// there are more tasks than partitions. Errors when `task_count` is 0, the
/// index is out of range, or the partition count is negative.
pub fn assign_partitions(partitions: i32, task_index: u32, task_count: u32) -> Result<Vec<i32>> {
    if partitions < 0 {
        return Err(Error::Invalid {
            what: "partition assignment".into(),
            reason: format!("a topic cannot have {partitions} partitions (expected 0 or more)"),
        });
    }
    assign_partition_ids(&(0..partitions).collect::<Vec<_>>(), task_index, task_count)
}

/// Like [`assign_partitions`], over an explicit list of partition ids (as the
/// cluster's metadata lists them). The ids are sorted first, so the answer
/// does not depend on the order the metadata came in; each id's owner is its
/// rank modulo `task_count`.
pub fn assign_partition_ids(ids: &[i32], task_index: u32, task_count: u32) -> Result<Vec<i32>> {
    if task_count == 0 {
        return Err(Error::Invalid {
            what: "partition assignment".into(),
            reason: "the stage has 0 tasks (expected 1 or more)".into(),
        });
    }
    if task_index >= task_count {
        return Err(Error::Invalid {
            what: "partition assignment".into(),
            reason: format!(
                "task index {task_index} is out of range for {task_count} task(s) (expected 0..{task_count})"
            ),
        });
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(sorted
        .into_iter()
        .enumerate()
        .filter(|(rank, _)| *rank as u64 % u64::from(task_count) == u64::from(task_index))
        .map(|(_, p)| p)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for partitions in 0..20 {
            for tasks in 1..8u32 {
                let mut seen = Vec::new();
                for t in 0..tasks {
                    seen.extend(assign_partitions(partitions, t, tasks).unwrap());
                }
                seen.sort_unstable();
                assert_eq!(seen, (0..partitions).collect::<Vec<_>>(), "{partitions} partitions over {tasks} tasks");
            }
        }
    }

    #[test]
    fn round_robin_and_balanced() {
        assert_eq!(assign_partitions(6, 0, 3).unwrap(), vec![0, 3]);
        assert_eq!(assign_partitions(6, 2, 3).unwrap(), vec![2, 5]);
        assert_eq!(assign_partitions(7, 0, 3).unwrap(), vec![0, 3, 6]);
        assert_eq!(assign_partitions(1, 0, 1).unwrap(), vec![0]);
    }

    #[test]
    fn more_tasks_than_partitions_leaves_some_idle() {
        assert_eq!(assign_partitions(2, 3, 4).unwrap(), Vec::<i32>::new());
        assert_eq!(assign_partitions(2, 1, 4).unwrap(), vec![1]);
    }

    #[test]
    fn explicit_ids_are_sorted_and_deduplicated() {
        assert_eq!(assign_partition_ids(&[5, 1, 3, 1], 0, 2).unwrap(), vec![1, 5]);
        assert_eq!(assign_partition_ids(&[5, 1, 3], 1, 2).unwrap(), vec![3]);
    }

    #[test]
    fn bad_arguments_say_what_was_expected() {
        let e = assign_partitions(4, 0, 0).unwrap_err().to_string();
        assert!(e.contains("0 tasks"), "{e}");
        let e = assign_partitions(4, 3, 3).unwrap_err().to_string();
        assert!(e.contains("task index 3 is out of range for 3 task(s)"), "{e}");
        let e = assign_partitions(-1, 0, 1).unwrap_err().to_string();
        assert!(e.contains("-1 partitions"), "{e}");
    }
}
