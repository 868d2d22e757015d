//! The state store: where the master and frameworks keep what must survive a
//! restart.
//!
//! [`StateStore`] is a small key/value seam — `get`, `put`, `delete`, `list`
//! by prefix — over `/`-separated keys such as `master/agents/a1` or
//! `frameworks/f1/tasks/t1`, with opaque byte values. [`StateStoreExt`] adds
//! typed JSON helpers. The embedded default is [`FileStore`] (one file per
//! key in the state dir, each put fsynced); [`MemoryStore`] is for unit
//! tests; [`EtcdStore`] keeps the state of masters that run as an HA group
//! in etcd, where an [`Election`] picks their leader and fences the writes of
//! a deposed one. Nothing above the trait knows which store it has.
//!
//! Keys: not empty, no control characters, at most [`MAX_KEY_BYTES`] bytes
//! once escaped for a file name (ASCII letters, digits, `-`, `_` and `.`
//! count one byte each, anything else three per byte). Every store enforces
//! the same rule, so a key that works in tests works on disk.

mod etcd;
mod file;
mod memory;

pub use etcd::{Election, EtcdStore, Fence, Leadership, DEFAULT_ETCD_TIMEOUT};
pub use file::FileStore;
pub use memory::MemoryStore;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// The longest key, in bytes once escaped into a file name.
pub const MAX_KEY_BYTES: usize = 240;

/// A durable key/value store for master and framework state. Object safe:
/// pass it around as `Arc<dyn StateStore>`.
pub trait StateStore: Send + Sync {
    /// The value at `key`, `None` if there is none.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `value` at `key`, replacing any value; durable when it returns.
    fn put(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Removes `key`; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Every key that starts with `prefix` (plain string prefix; `""` lists
    /// all), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// Typed helpers on every [`StateStore`], including `dyn StateStore`.
pub trait StateStoreExt: StateStore {
    /// The value at `key` decoded from JSON; a value that does not decode is
    /// [`Error::Codec`] naming the key, never treated as absent.
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(bytes) = self.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|source| Error::Codec { key: key.to_string(), source })
    }

    /// Stores `value` at `key` as JSON (pretty, so the file store stays
    /// readable by a human).
    fn put_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Codec { key: key.to_string(), source })?;
        self.put(key, &bytes)
    }
}

impl<S: StateStore + ?Sized> StateStoreExt for S {}

/// Checks a key against the rule every store shares (see the module doc).
pub fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        Some("a key must not be empty".to_string())
    } else if key.chars().any(char::is_control) {
        Some("a key must not contain control characters".to_string())
    } else {
        let len = file::encoded_len(key);
        (len > MAX_KEY_BYTES)
            .then(|| format!("a key must be at most {MAX_KEY_BYTES} bytes once escaped, this is {len}"))
    };
    match reason {
        Some(reason) => Err(Error::Other(format!("invalid state key {key:?}: {reason}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
