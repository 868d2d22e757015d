//! Tests of the state stores: one conformance suite run against both, then
//! what only the file store has (files, re-open, crash leftovers).

use std::fs;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::file::{decode, encode};
use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TaskRecord {
    id: String,
    agent: String,
    state: String,
}

fn task(id: &str) -> TaskRecord {
    TaskRecord { id: id.into(), agent: "a1".into(), state: "STARTING".into() }
}

/// Runs `check` against a fresh store of each kind.
fn each_store(check: impl Fn(&dyn StateStore)) {
    check(&MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    check(&FileStore::open(dir.path().join("store")).unwrap());
}

#[test]
fn missing_key_is_none() {
    each_store(|s| assert_eq!(s.get("master/agents/a1").unwrap(), None));
}

#[test]
fn put_get_overwrite() {
    each_store(|s| {
        s.put("master/agents/a1", b"first").unwrap();
        assert_eq!(s.get("master/agents/a1").unwrap().as_deref(), Some(&b"first"[..]));
        s.put("master/agents/a1", b"2nd").unwrap();
        assert_eq!(s.get("master/agents/a1").unwrap().as_deref(), Some(&b"2nd"[..]));
        s.put("empty", b"").unwrap();
        assert_eq!(s.get("empty").unwrap(), Some(vec![]));
    });
}

#[test]
fn delete_removes_and_missing_delete_is_ok() {
    each_store(|s| {
        s.put("k", b"v").unwrap();
        s.delete("k").unwrap();
        assert_eq!(s.get("k").unwrap(), None);
        s.delete("k").unwrap();
        s.delete("never").unwrap();
        assert!(s.list("").unwrap().is_empty());
    });
}

#[test]
fn list_by_prefix_is_sorted() {
    each_store(|s| {
        for key in [
            "frameworks/f1/tasks/t2",
            "frameworks/f1/tasks/t1",
            "frameworks/f10/tasks/t1",
            "frameworks/f1/plans/deploy",
            "master/agents/a1",
            "master/agents/a2",
            "frameworks",
        ] {
            s.put(key, key.as_bytes()).unwrap();
        }
        assert_eq!(s.list("frameworks/f1/tasks/").unwrap(), vec!["frameworks/f1/tasks/t1", "frameworks/f1/tasks/t2"]);
        assert_eq!(
            s.list("frameworks/f1/").unwrap(),
            vec!["frameworks/f1/plans/deploy", "frameworks/f1/tasks/t1", "frameworks/f1/tasks/t2"]
        );
        // A plain string prefix, not aligned to segments.
        assert_eq!(s.list("frameworks/f1").unwrap().len(), 4);
        assert_eq!(s.list("master/").unwrap(), vec!["master/agents/a1", "master/agents/a2"]);
        assert_eq!(s.list("").unwrap().len(), 7);
        assert!(s.list("nothing/").unwrap().is_empty());
    });
}

#[test]
fn keys_with_odd_characters_round_trip() {
    each_store(|s| {
        let keys = ["a b/c%d", ".hidden", "..", "x/../../etc/passwd", "zoné/ünïcode/🚀", "trailing/", "k.v.w", "%2F"];
        for key in keys {
            s.put(key, key.as_bytes()).unwrap();
        }
        for key in keys {
            assert_eq!(s.get(key).unwrap().as_deref(), Some(key.as_bytes()), "{key}");
        }
        let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        want.sort();
        assert_eq!(s.list("").unwrap(), want);
    });
}

#[test]
fn invalid_keys_are_refused_alike() {
    each_store(|s| {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let escaped_long = "/".repeat(MAX_KEY_BYTES / 3 + 1);
        for key in ["", "a\nb", "nul\0", long.as_str(), escaped_long.as_str()] {
            let err = s.put(key, b"v").unwrap_err().to_string();
            assert!(err.starts_with("invalid state key"), "{key:?}: {err}");
            assert!(s.get(key).is_err() && s.delete(key).is_err(), "{key:?}");
        }
        s.put(&"k".repeat(MAX_KEY_BYTES), b"v").unwrap();
        assert!(s.list("").unwrap().len() == 1);
    });
}

#[test]
fn invalid_key_error_says_why() {
    let err = MemoryStore::new().put("", b"v").unwrap_err().to_string();
    assert_eq!(err, "invalid state key \"\": a key must not be empty");
    let err = MemoryStore::new().put(&"/".repeat(81), b"v").unwrap_err().to_string();
    assert!(err.ends_with("at most 240 bytes once escaped, this is 243"), "{err}");
}

#[test]
fn json_helpers_round_trip() {
    each_store(|s| {
        s.put_json("frameworks/f1/tasks/t1", &task("t1")).unwrap();
        let got: Option<TaskRecord> = s.get_json("frameworks/f1/tasks/t1").unwrap();
        assert_eq!(got, Some(task("t1")));
        assert_eq!(s.get_json::<TaskRecord>("frameworks/f1/tasks/t9").unwrap(), None);
    });
}

#[test]
fn corrupt_json_is_a_codec_error_naming_the_key() {
    each_store(|s| {
        s.put("frameworks/f1/tasks/t1", b"{\"id\": \"t1\", \"agent\": ").unwrap();
        let err = s.get_json::<TaskRecord>("frameworks/f1/tasks/t1").unwrap_err();
        assert!(matches!(err, Error::Codec { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with("state record frameworks/f1/tasks/t1: "), "{text}");
        assert!(text.contains("EOF"), "{text}");
    });
}

#[test]
fn unencodable_json_is_a_codec_error() {
    each_store(|s| {
        let mut m = std::collections::HashMap::new();
        m.insert(vec![1u8], 1);
        let err = s.put_json("m", &m).unwrap_err();
        assert!(matches!(err, Error::Codec { ref key, .. } if key == "m"), "{err:?}");
        assert_eq!(s.get("m").unwrap(), None);
    });
}

#[test]
fn usable_as_shared_trait_objects() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Arc<dyn StateStore>> =
        vec![Arc::new(MemoryStore::new()), Arc::new(FileStore::open(dir.path()).unwrap())];
    for store in stores {
        std::thread::scope(|scope| {
            for t in 0..4 {
                let store = Arc::clone(&store);
                scope.spawn(move || {
                    for i in 0..10 {
                        store.put_json(&format!("t{t}/k{i}"), &task(&format!("{t}-{i}"))).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.list("").unwrap().len(), 40);
        assert_eq!(store.list("t2/").unwrap().len(), 10);
    }
}

#[test]
fn file_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = FileStore::open(dir.path()).unwrap();
        s.put_json("master/agents/a1", &task("a1")).unwrap();
        s.put("master/agents/a2", b"x").unwrap();
        s.put("gone", b"x").unwrap();
        s.delete("gone").unwrap();
    }
    let s = FileStore::open(dir.path()).unwrap();
    assert_eq!(s.list("").unwrap(), vec!["master/agents/a1", "master/agents/a2"]);
    assert_eq!(s.get_json::<TaskRecord>("master/agents/a1").unwrap(), Some(task("a1")));
}

#[test]
fn file_store_keeps_one_readable_file_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStore::open(dir.path()).unwrap();
    s.put_json("frameworks/f1/tasks/t1", &task("t1")).unwrap();
    let path = s.path_of("frameworks/f1/tasks/t1").unwrap();
    assert_eq!(path, dir.path().join("frameworks%2Ff1%2Ftasks%2Ft1"));
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"state\": \"STARTING\""), "{text}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn file_store_ignores_and_cleans_crash_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStore::open(dir.path()).unwrap();
    s.put("k", b"committed").unwrap();
    // A put that crashed after writing its temp file, before the rename.
    let leftover = dir.path().join(format!(".k{}4242.0", smack_storage::durable::TEMP_MARKER));
    fs::write(&leftover, b"uncommitted").unwrap();
    assert_eq!(s.list("").unwrap(), vec!["k"]);
    assert_eq!(s.get("k").unwrap().as_deref(), Some(&b"committed"[..]));
    let s = FileStore::open(dir.path()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(s.list("").unwrap(), vec!["k"]);
}

#[test]
fn file_store_skips_foreign_entries() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStore::open(dir.path()).unwrap();
    fs::write(dir.path().join("not%ZZescaped"), b"x").unwrap();
    fs::write(dir.path().join("a%2fb"), b"x").unwrap(); // lower-case escape: not ours
    fs::write(dir.path().join(".editor.swp"), b"x").unwrap();
    fs::create_dir(dir.path().join("subdir")).unwrap();
    s.put("real", b"v").unwrap();
    assert_eq!(s.list("").unwrap(), vec!["real"]);
}

#[test]
fn file_store_open_creates_nested_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state/store");
    let s = FileStore::open(&root).unwrap();
    assert!(root.is_dir());
    assert_eq!(s.root(), root);
}

#[test]
fn file_store_open_over_a_file_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("file");
    fs::write(&f, b"x").unwrap();
    let err = FileStore::open(f.join("store")).unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    assert!(err.to_string().contains("file"), "{err}");
}

#[test]
fn encoding_is_safe_and_reversible() {
    for key in ["a/b", "..", ".x", "a..b", "%", "é", "a b", "-_.", "x.y"] {
        let name = encode(key);
        assert!(!name.contains('/') && !name.starts_with('.') && name != "..", "{key} → {name}");
        assert_eq!(decode(&name).as_deref(), Some(key), "{key} → {name}");
    }
    assert_eq!(encode("master/agents/a1"), "master%2Fagents%2Fa1");
    assert_eq!(encode("a.b"), "a.b");
    assert_eq!(encode(".."), "%2E.");
    for bad in ["", "%", "%2", "%zz", "%2f", "%41", ".x", "a/b", "%FF"] {
        assert_eq!(decode(bad), None, "{bad}");
    }
}

#[test]
fn memory_store_counts() {
    let s = MemoryStore::new();
    assert!(s.is_empty());
    s.put("a", b"1").unwrap();
    s.put("b", b"2").unwrap();
    assert_eq!(s.len(), 2);
}

#[test]
fn an_exclusive_file_store_refuses_a_second_exclusive_open_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("master");
    let first = FileStore::open_exclusive(&root).unwrap();
    let held = first.clone();
    drop(first);
    let err = FileStore::open_exclusive(&root).unwrap_err();
    assert!(matches!(&err, Error::StateDirInUse { path } if *path == root), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&root.display().to_string()) && msg.contains("--state-dir"), "{msg}");
    held.put("k", b"v").unwrap();
    drop(held);
    let again = FileStore::open_exclusive(&root).unwrap();
    assert_eq!(again.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}
