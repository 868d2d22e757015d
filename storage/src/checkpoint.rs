//! A stage's checkpoint store on its persistent volume: numbered checkpoint
//! files plus a `LATEST` pointer, each written atomically.
//!
//! A commit writes `checkpoint-<epoch>` with [`write_atomic`], then points
//! `LATEST` at it (also atomically) — that second rename is the commit
//! point. A crash before it leaves the previous checkpoint as the latest; the
//! orphaned file is ignored and removed by the next commit. The store keeps
//! the latest two checkpoints so a human can look at the one before.
//!
//! One writer per directory: a stage task owns its volume.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::durable::{ensure_dir, read_optional, remove_temp_files, sync_dir, write_atomic};
use crate::{Error, Result};

/// The pointer file naming the latest committed epoch.
pub const LATEST: &str = "LATEST";
/// Checkpoint files are named `checkpoint-<epoch>` (epoch in plain decimal).
pub const CHECKPOINT_PREFIX: &str = "checkpoint-";
/// How many committed checkpoints are kept.
pub const KEEP: usize = 2;

/// The checkpoints of one stage task, in one directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// Opens (creating if needed) the store in `dir` and removes temp files a
    /// crashed commit left behind.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        ensure_dir(&dir)?;
        remove_temp_files(&dir)?;
        Ok(CheckpointStore { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durably commits `bytes` as checkpoint `epoch`, which must be greater
    /// than the latest committed epoch ([`Error::StaleEpoch`] otherwise).
    /// When this returns, [`latest`](Self::latest) answers this checkpoint,
    /// across crashes. Older checkpoints beyond the last [`KEEP`] are removed.
    pub fn commit(&self, epoch: u64, bytes: &[u8]) -> Result<()> {
        if let Some(latest) = self.latest_epoch()? {
            if epoch <= latest {
                return Err(Error::StaleEpoch { epoch, latest });
            }
        }
        write_atomic(&self.checkpoint_path(epoch), bytes)?;
        write_atomic(&self.dir.join(LATEST), format!("{epoch}\n").as_bytes())?;
        // The commit is durable; pruning is housekeeping.
        if let Err(e) = self.prune(epoch) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not prune old checkpoints");
        }
        Ok(())
    }

    /// The latest committed checkpoint, `None` if nothing was ever committed.
    /// A `LATEST` that is unreadable or names a missing checkpoint is
    /// [`Error::Corrupt`], never treated as "no checkpoint".
    pub fn latest(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(epoch) = self.latest_epoch()? else {
            return Ok(None);
        };
        let path = self.checkpoint_path(epoch);
        match read_optional(&path)? {
            Some(bytes) => Ok(Some((epoch, bytes))),
            None => Err(Error::Corrupt {
                path: self.dir.join(LATEST),
                reason: format!("it names epoch {epoch} but {} is missing", path.display()),
            }),
        }
    }

    /// The latest committed epoch, `None` if nothing was ever committed.
    pub fn latest_epoch(&self) -> Result<Option<u64>> {
        let path = self.dir.join(LATEST);
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| Error::Corrupt { reason: format!("expected an epoch number, found {:?}", text.trim()), path })
    }

    /// The bytes of checkpoint `epoch` if it is still kept (or is an
    /// uncommitted leftover — check against [`latest_epoch`](Self::latest_epoch)).
    pub fn read(&self, epoch: u64) -> Result<Option<Vec<u8>>> {
        read_optional(&self.checkpoint_path(epoch))
    }

    /// The epochs of the checkpoint files present, ascending.
    pub fn epochs(&self) -> Result<Vec<u64>> {
        let listing = |e| Error::io(format!("listing {}", self.dir.display()), e);
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(listing(e)),
        };
        let mut epochs = Vec::new();
        for entry in entries {
            let name = entry.map_err(listing)?.file_name();
            if let Some(epoch) = name.to_str().and_then(parse_checkpoint_name) {
                epochs.push(epoch);
            }
        }
        epochs.sort_unstable();
        Ok(epochs)
    }

    fn checkpoint_path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("{CHECKPOINT_PREFIX}{epoch}"))
    }

    /// Keeps `latest` and the newest `KEEP - 1` epochs below it; removes the
    /// rest, including uncommitted leftovers above `latest`.
    fn prune(&self, latest: u64) -> Result<()> {
        let epochs = self.epochs()?;
        let keep: Vec<u64> = epochs.iter().rev().copied().filter(|e| *e <= latest).take(KEEP).collect();
        let mut removed = false;
        for epoch in epochs.into_iter().filter(|e| !keep.contains(e)) {
            let path = self.checkpoint_path(epoch);
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// The epoch in a `checkpoint-<epoch>` name written by this module (plain
/// decimal, no sign, no leading zeros).
fn parse_checkpoint_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(CHECKPOINT_PREFIX)?;
    let epoch = digits.parse::<u64>().ok()?;
    (epoch.to_string() == digits).then_some(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::TEMP_MARKER;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn empty_store_has_no_latest() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().join("ckpt")).unwrap();
        assert!(store.dir().is_dir());
        assert_eq!(store.latest().unwrap(), None);
        assert_eq!(store.latest_epoch().unwrap(), None);
        assert!(store.epochs().unwrap().is_empty());
    }

    #[test]
    fn latest_after_three_commits_keeps_last_two() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store.commit(1, b"one").unwrap();
        store.commit(2, b"two").unwrap();
        store.commit(3, b"three").unwrap();
        assert_eq!(store.latest().unwrap(), Some((3, b"three".to_vec())));
        assert_eq!(store.epochs().unwrap(), vec![2, 3]);
        assert_eq!(store.read(2).unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(store.read(1).unwrap(), None);
        assert_eq!(names(dir.path()), vec!["LATEST", "checkpoint-2", "checkpoint-3"]);
    }

    #[test]
    fn latest_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        CheckpointStore::open(dir.path()).unwrap().commit(10, b"state+offsets").unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(store.latest().unwrap(), Some((10, b"state+offsets".to_vec())));
    }

    #[test]
    fn epochs_may_skip_but_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store.commit(5, b"a").unwrap();
        store.commit(9, b"b").unwrap();
        for stale in [9, 5, 0] {
            let err = store.commit(stale, b"x").unwrap_err();
            assert!(matches!(err, Error::StaleEpoch { latest: 9, .. }), "{err:?}");
        }
        assert_eq!(
            store.commit(3, b"x").unwrap_err().to_string(),
            "checkpoint epoch 3 is not after the latest committed epoch 9"
        );
        assert_eq!(store.latest().unwrap(), Some((9, b"b".to_vec())));
    }

    #[test]
    fn epoch_zero_is_a_valid_first_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store.commit(0, b"").unwrap();
        assert_eq!(store.latest().unwrap(), Some((0, vec![])));
    }

    #[test]
    fn crash_before_latest_update_keeps_previous_and_is_cleaned_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store.commit(1, b"one").unwrap();
        // Crash after checkpoint-2 was written, before LATEST moved.
        fs::write(dir.path().join("checkpoint-2"), b"uncommitted").unwrap();
        assert_eq!(store.latest().unwrap(), Some((1, b"one".to_vec())));
        // The stage resumes from 1 and commits 2 again: it replaces the orphan.
        store.commit(2, b"two").unwrap();
        assert_eq!(store.latest().unwrap(), Some((2, b"two".to_vec())));
    }

    #[test]
    fn orphans_above_latest_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store.commit(1, b"one").unwrap();
        fs::write(dir.path().join("checkpoint-7"), b"uncommitted").unwrap();
        store.commit(2, b"two").unwrap();
        assert_eq!(store.epochs().unwrap(), vec![1, 2]);
    }

    #[test]
    fn first_crash_before_any_latest_means_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("checkpoint-1"), b"uncommitted").unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(store.latest().unwrap(), None);
    }

    #[test]
    fn temp_leftovers_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        CheckpointStore::open(dir.path()).unwrap().commit(1, b"one").unwrap();
        fs::write(dir.path().join(format!(".LATEST{TEMP_MARKER}99.0")), b"2").unwrap();
        fs::write(dir.path().join(format!(".checkpoint-2{TEMP_MARKER}99.1")), b"half").unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(names(dir.path()), vec!["LATEST", "checkpoint-1"]);
        assert_eq!(store.latest().unwrap(), Some((1, b"one".to_vec())));
    }

    #[test]
    fn corrupt_latest_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(dir.path().join(LATEST), b"seven\n").unwrap();
        let err = store.latest().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("LATEST") && text.contains("\"seven\""), "{text}");
        assert!(store.commit(1, b"x").is_err(), "no commit over a corrupt pointer");
    }

    #[test]
    fn latest_naming_a_missing_checkpoint_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(dir.path().join(LATEST), b"4\n").unwrap();
        let err = store.latest().unwrap_err().to_string();
        assert!(err.contains("names epoch 4") && err.contains("checkpoint-4"), "{err}");
    }

    #[test]
    fn foreign_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        for name in ["checkpoint-01", "checkpoint-x", "checkpoint-", "notes.txt"] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        for e in 1..=4 {
            store.commit(e, b"c").unwrap();
        }
        assert_eq!(store.epochs().unwrap(), vec![3, 4]);
        assert!(dir.path().join("checkpoint-01").exists());
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn checkpoint_names_parse_strictly() {
        assert_eq!(parse_checkpoint_name("checkpoint-0"), Some(0));
        assert_eq!(parse_checkpoint_name("checkpoint-18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_checkpoint_name("checkpoint-007"), None);
        assert_eq!(parse_checkpoint_name("checkpoint-+7"), None);
        assert_eq!(parse_checkpoint_name("LATEST"), None);
    }
}
