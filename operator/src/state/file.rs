//! [`FileStore`]: the embedded, crash-safe default state store — one file per
//! key in one directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use smack_storage::durable::{self, ensure_dir, read_optional, sync_dir, write_atomic};

use super::{validate_key, StateStore};
use crate::{Error, Result};

/// The embedded state store: one file per key, directly under a root
/// directory, each value replaced with `smack_storage::durable::write_atomic`
/// (temp file, fsync, rename, fsync the directory), so every `put` is durable
/// when it returns and a crash leaves each key either old or new.
///
/// We chose our own file-per-key store over an embedded database crate (sled,
/// redb, RocksDB): master and framework state is small (agents, frameworks,
/// tasks, plans — thousands of records, not millions), a human can inspect
/// and repair it with `ls` and `cat`, and it costs no extra dependency or
/// on-disk format to migrate. When that stops being true — HA masters — the
/// [`StateStore`] trait is where etcd plugs in.
///
/// A key is escaped into a file name: ASCII letters, digits, `-`, `_` and
/// (not first) `.` stay as they are, every other byte becomes `%XX`, so
/// `frameworks/f1/tasks/t1` is the file `frameworks%2Ff1%2Ftasks%2Ft1`. File
/// names never start with `.`, which keeps them apart from temp files.
///
/// Give the store a directory of its own (e.g. `<state dir>/store`): every
/// file in it whose name decodes is a key. One process owns the directory at
/// a time; within it, any number of threads may share the store.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    /// With [`FileStore::open_exclusive`]: the root directory, open and
    /// `flock`ed for as long as any clone of the store lives (the kernel
    /// drops the lock when the process dies, however it dies).
    _lock: Option<Arc<fs::File>>,
}

impl FileStore {
    /// Opens the store at `root`, creating the directory if needed and
    /// removing temp files a crash left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        ensure_dir(&root)?;
        let removed = durable::remove_temp_files(&root)?;
        if removed > 0 {
            tracing::info!(root = %root.display(), removed, "state store: removed unfinished writes");
        }
        Ok(FileStore { root, _lock: None })
    }

    /// Opens the store as [`FileStore::open`] does, and holds an exclusive
    /// lock on its directory so that no second process (a second master, a
    /// second `smack up` on the same state dir) can open it exclusively while
    /// this one runs. A held lock is [`Error::StateDirInUse`], at once: it
    /// never waits.
    pub fn open_exclusive(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        ensure_dir(&root)?;
        let dir = fs::File::open(&root).map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
        match dir.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::StateDirInUse { path: root }),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(format!("locking {}", root.display()), e)),
        }
        let mut store = FileStore::open(root)?;
        store._lock = Some(Arc::new(dir));
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key` (whether or not it exists).
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(encode(key)))
    }
}

impl StateStore for FileStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(read_optional(&self.path_of(key)?)?)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        Ok(write_atomic(&self.path_of(key)?, value)?)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(sync_dir(&self.root)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(smack_storage::Error::io(format!("deleting state key {key:?} ({})", path.display()), e).into())
            }
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let listing = |e| smack_storage::Error::io(format!("listing the state store {}", self.root.display()), e);
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(listing)? {
            let entry = entry.map_err(listing)?;
            let name = entry.file_name();
            if durable::is_temp_name(&name) || !entry.file_type().map_err(listing)?.is_file() {
                continue;
            }
            match name.to_str().and_then(decode) {
                Some(key) if key.starts_with(prefix) => keys.push(key),
                Some(_) => {}
                None => tracing::debug!(
                    root = %self.root.display(),
                    file = %name.to_string_lossy(),
                    "state store: ignoring a file that is not an escaped key"
                ),
            }
        }
        keys.sort();
        Ok(keys)
    }
}

fn keeps(i: usize, b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0)
}

/// The file name for `key`.
pub(super) fn encode(key: &str) -> String {
    let mut out = String::with_capacity(encoded_len(key));
    for (i, b) in key.bytes().enumerate() {
        if keeps(i, b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The length of [`encode`]`(key)` without building it.
pub(super) fn encoded_len(key: &str) -> usize {
    key.bytes().enumerate().map(|(i, b)| if keeps(i, b) { 1 } else { 3 }).sum()
}

/// The key a file name stands for; `None` unless `name` is exactly what
/// [`encode`] makes of some key.
pub(super) fn decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let key = String::from_utf8(out).ok()?;
    (!key.is_empty() && encode(&key) == name).then_some(key)
}
