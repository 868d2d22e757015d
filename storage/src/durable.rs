//! Crash-safe small-file writes: write a temp file in the same directory,
//! fsync it, rename it over the target, fsync the directory.
//!
//! After [`write_atomic`] returns, a crash leaves either the old contents or
//! the new ones, never a mix. A crash in the middle leaves at most a temp file
//! whose name starts with `.` and contains [`TEMP_MARKER`]; readers never see
//! it (it has another name) and [`remove_temp_files`] cleans it up, which the
//! stores built on this module do when they open their directory.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// The part of a temp file's name that marks it as a leftover-to-be when a
/// write does not finish: `.<name>.smack-tmp.<pid>.<n>`.
pub const TEMP_MARKER: &str = ".smack-tmp.";

/// How much of the target's name a temp file's name keeps (for a human
/// looking at leftovers); the rest is the marker, the pid and a counter, so
/// the temp name stays short even when the target's name is long.
const TEMP_NAME_KEEP: usize = 64;

/// Makes temp names unique among the threads of this process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Whether a file name is one of our temp files (a write that never finished,
/// or one in flight).
pub fn is_temp_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either
/// the old file or the new one: temp file in the same directory, fsync,
/// rename over, fsync the directory. The directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let context = || format!("writing {}", path.display());
    let name = path.file_name().ok_or_else(|| {
        Error::io(context(), io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))
    })?;
    let dir = parent_dir(path);
    let kept: String = name.to_string_lossy().chars().take(TEMP_NAME_KEEP).collect();
    let tmp =
        dir.join(format!(".{kept}{TEMP_MARKER}{}.{}", std::process::id(), NEXT_TEMP.fetch_add(1, Ordering::Relaxed)));

    let result = write_and_rename(&tmp, path, bytes);
    if result.is_err() {
        // Best effort: the temp file is garbage now; a later open cleans it
        // up if this fails too.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|source| Error::io(context(), source))?;
    sync_dir(dir)
}

fn write_and_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
}

/// Reads a whole file; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes `value` as pretty JSON (one trailing newline) with [`write_atomic`].
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|source| Error::Encode { path: path.to_path_buf(), source })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads a JSON file; `None` when it does not exist. A file that exists but
/// does not decode is an [`Error::Decode`] naming the path and the serde
/// error (with line and column), never treated as absent.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| Error::Decode { path: path.to_path_buf(), source })
}

/// Flushes a directory's entries (new, renamed or removed files) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Creates `dir` and any missing parents, and fsyncs the parent of each
/// directory it created so the new entries survive a crash.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| !a.exists())
        .map(Path::to_path_buf)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating directory {}", dir.display()), e))?;
    for created in missing.iter().rev() {
        sync_dir(parent_dir(created))?;
    }
    Ok(())
}

/// Removes the temp files a crashed [`write_atomic`] left in `dir` and
/// returns how many it removed. A missing directory has none.
///
/// Call it when a store opens a directory it owns, not while another process
/// may be writing there: an in-flight write's temp file looks the same.
pub fn remove_temp_files(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if !is_temp_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing leftover temp file {}", path.display()), e)),
        }
    }
    if removed > 0 {
        tracing::debug!(dir = %dir.display(), removed, "removed leftover temp files");
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// The directory a path's entry lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        name: String,
        n: u32,
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(read_optional(&p).unwrap().as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn overwrite_replaces_whole_contents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"a much longer first version").unwrap();
        write_atomic(&p, b"short").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"short");
    }

    #[test]
    fn empty_contents_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"").unwrap();
        assert_eq!(read_optional(&p).unwrap(), Some(vec![]));
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_optional(&dir.path().join("nope")).unwrap(), None);
        assert_eq!(read_json::<Rec>(&dir.path().join("nope")).unwrap(), None);
    }

    #[test]
    fn reading_a_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_optional(dir.path()).unwrap_err();
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn no_temp_file_is_left_after_a_write() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            write_atomic(&dir.path().join("f"), format!("{i}").as_bytes()).unwrap();
        }
        assert_eq!(names(dir.path()), vec!["f"]);
    }

    #[test]
    fn writing_into_a_missing_directory_fails_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/f");
        let err = write_atomic(&p, b"x").unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    }

    #[test]
    fn a_path_without_file_name_is_refused() {
        let err = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert!(err.to_string().contains("no file name"), "{err}");
    }

    #[test]
    fn long_names_get_short_temp_names() {
        let dir = tempfile::tempdir().unwrap();
        let name = "k".repeat(250);
        write_atomic(&dir.path().join(&name), b"x").unwrap();
        assert_eq!(names(dir.path()), vec![name]);
    }

    #[test]
    fn crash_leftovers_are_invisible_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_json_atomic(&p, &Rec { name: "old".into(), n: 1 }).unwrap();
        // A crash after the temp file was written but before the rename.
        let leftover = dir.path().join(format!(".state.json{TEMP_MARKER}4242.7"));
        fs::write(&leftover, b"{ half a rec").unwrap();
        fs::write(dir.path().join("other"), b"keep me").unwrap();

        let rec: Rec = read_json(&p).unwrap().unwrap();
        assert_eq!(rec, Rec { name: "old".into(), n: 1 });

        assert_eq!(remove_temp_files(dir.path()).unwrap(), 1);
        assert_eq!(names(dir.path()), vec!["other", "state.json"]);
        assert_eq!(remove_temp_files(dir.path()).unwrap(), 0);
    }

    #[test]
    fn remove_temp_files_in_a_missing_dir_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(remove_temp_files(&dir.path().join("gone")).unwrap(), 0);
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp_name(OsStr::new(".f.smack-tmp.1.2")));
        assert!(!is_temp_name(OsStr::new("f.smack-tmp.1.2")));
        assert!(!is_temp_name(OsStr::new(".hidden")));
        assert!(!is_temp_name(OsStr::new("checkpoint-3")));
    }

    #[test]
    fn json_round_trips_and_is_pretty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let rec = Rec { name: "a".into(), n: 7 };
        write_json_atomic(&p, &rec).unwrap();
        assert_eq!(read_json::<Rec>(&p).unwrap(), Some(rec));
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.ends_with("}\n") && text.contains("\n  \"name\""), "{text}");
    }

    #[test]
    fn corrupt_json_is_an_error_naming_path_and_serde_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        fs::write(&p, b"{\"name\": \"a\",\n \"n\": oops}").unwrap();
        let err = read_json::<Rec>(&p).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&p.display().to_string()), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn json_of_the_wrong_shape_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        fs::write(&p, b"{\"name\": \"a\"}").unwrap();
        let err = read_json::<Rec>(&p).unwrap_err();
        assert!(err.to_string().contains("missing field `n`"), "{err}");
    }

    #[test]
    fn unencodable_values_are_an_encode_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let mut m = BTreeMap::new();
        m.insert((1, 2), "tuple keys are not JSON object keys");
        let err = write_json_atomic(&p, &m).unwrap_err();
        assert!(matches!(err, Error::Encode { .. }), "{err:?}");
        assert!(!p.exists());
    }

    #[test]
    fn ensure_dir_creates_nested_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b/c");
        ensure_dir(&d).unwrap();
        assert!(d.is_dir());
        ensure_dir(&d).unwrap();
    }

    #[test]
    fn ensure_dir_over_a_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        assert!(ensure_dir(&f.join("sub")).is_err());
    }

    #[test]
    fn concurrent_writers_never_tear_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(p, &[t; 4096]).unwrap();
                    }
                });
            }
        });
        let bytes = fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|b| *b == bytes[0]));
        assert_eq!(names(dir.path()), vec!["f"]);
    }

    #[test]
    fn parent_of_a_bare_name_is_the_current_dir() {
        assert_eq!(parent_dir(Path::new("f")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/f")), Path::new("/a"));
    }
}
