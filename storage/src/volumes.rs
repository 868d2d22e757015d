//! Persistent volumes on an agent's disks: ROOT volumes (directories under
//! the agent's work dir) and MOUNT volumes (a whole configured disk).
//!
//! A ROOT volume lives at `<work_dir>/volumes/roles/<role>/<volume_id>`. A
//! MOUNT volume is a whole mount path, claimed by writing a small
//! [`MARKER`] file there that names the volume id. Creating is idempotent
//! and never touches data; a volume's data is removed only by
//! [`VolumeManager::destroy`].

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::durable::{self, ensure_dir, read_optional, sync_dir, write_atomic};
use crate::{Error, Result};

/// The file that marks a MOUNT path as holding a smack volume; it holds the
/// volume id and a newline.
pub const MARKER: &str = ".smack-volume";

/// A directory a MOUNT disk may carry from `mkfs`; it does not count as data.
const LOST_AND_FOUND: &str = "lost+found";

/// Which kind of persistent volume a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// A directory on the agent's ROOT disk.
    Root,
    /// A whole MOUNT disk.
    Mount,
}

/// Creates, destroys and accounts for the persistent volumes of one agent.
#[derive(Debug, Clone)]
pub struct VolumeManager {
    work_dir: PathBuf,
}

impl VolumeManager {
    /// A manager for the agent whose work dir is `work_dir`. Touches nothing
    /// on disk until a volume is created.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        VolumeManager { work_dir: work_dir.into() }
    }

    /// The agent's work dir.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Where ROOT volumes live: `<work_dir>/volumes/roles`.
    pub fn roles_dir(&self) -> PathBuf {
        self.work_dir.join("volumes").join("roles")
    }

    /// The path a ROOT volume has (or would have), after checking both names.
    pub fn root_path(&self, role: &str, id: &str) -> Result<PathBuf> {
        validate_name("role", role)?;
        validate_name("volume id", id)?;
        Ok(self.roles_dir().join(role).join(id))
    }

    /// Creates the ROOT volume `id` of `role` and returns its path. If it
    /// already exists, its data is kept and the same path is returned.
    pub fn create_root(&self, role: &str, id: &str) -> Result<PathBuf> {
        let path = self.root_path(role, id)?;
        ensure_dir(&path)?;
        tracing::debug!(path = %path.display(), "ROOT volume ready");
        Ok(path)
    }

    /// Claims the MOUNT disk at `path` for volume `id` and returns the path.
    ///
    /// The mount point is created if missing, then marked with [`MARKER`].
    /// Claiming it again for the same id is a no-op that keeps the data;
    /// claiming it for another id is [`Error::VolumeInUse`]; an unmarked
    /// mount point that already holds data (other than `lost+found`) is
    /// [`Error::MountNotEmpty`], so destroy can never wipe foreign data.
    pub fn create_mount(&self, path: &Path, id: &str) -> Result<PathBuf> {
        validate_name("volume id", id)?;
        ensure_dir(path)?;
        match mount_volume_id(path)? {
            Some(existing) if existing == id => return Ok(path.to_path_buf()),
            Some(existing) => {
                return Err(Error::VolumeInUse { path: path.to_path_buf(), existing, requested: id.to_string() })
            }
            None => {}
        }
        let listing = |e| Error::io(format!("listing {}", path.display()), e);
        for entry in fs::read_dir(path).map_err(listing)? {
            let name = entry.map_err(listing)?.file_name();
            if name != LOST_AND_FOUND && !durable::is_temp_name(&name) {
                return Err(Error::MountNotEmpty { path: path.to_path_buf() });
            }
        }
        durable::remove_temp_files(path)?;
        write_atomic(&path.join(MARKER), format!("{id}\n").as_bytes())?;
        tracing::debug!(path = %path.display(), id, "MOUNT volume claimed");
        Ok(path.to_path_buf())
    }

    /// Which kind of volume `path` is, if it is one that exists.
    pub fn kind(&self, path: &Path) -> Result<Option<VolumeKind>> {
        if self.root_parts(path).is_some() {
            return Ok(path.is_dir().then_some(VolumeKind::Root));
        }
        Ok(mount_volume_id(path)?.map(|_| VolumeKind::Mount))
    }

    /// Whether `path` is an existing volume (a ROOT volume directory, or a
    /// MOUNT path carrying a marker). Unreadable markers count as absent.
    pub fn exists(&self, path: &Path) -> bool {
        matches!(self.kind(path), Ok(Some(_)))
    }

    /// Destroys the volume at `path`: a ROOT volume's directory is removed;
    /// a MOUNT volume's contents are removed but the mount point stays, and
    /// its marker goes last, so a crash midway leaves a volume that can be
    /// destroyed again. A path that does not exist is already destroyed. Any
    /// other path is refused with [`Error::NotAVolume`].
    pub fn destroy(&self, path: &Path) -> Result<()> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
        };
        if self.root_parts(path).is_some() {
            let removed = if meta.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
            removed.map_err(|e| Error::io(format!("destroying volume {}", path.display()), e))?;
            sync_dir(durable::parent_dir(path))?;
            tracing::info!(path = %path.display(), "ROOT volume destroyed");
            return Ok(());
        }
        if mount_volume_id(path)?.is_none() {
            return Err(Error::NotAVolume { path: path.to_path_buf(), roles_dir: self.roles_dir() });
        }
        let listing = |e| Error::io(format!("listing {}", path.display()), e);
        for entry in fs::read_dir(path).map_err(listing)? {
            let entry = entry.map_err(listing)?;
            if entry.file_name() == MARKER {
                continue;
            }
            let child = entry.path();
            let is_dir = entry.file_type().map_err(listing)?.is_dir();
            let removed = if is_dir { fs::remove_dir_all(&child) } else { fs::remove_file(&child) };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", child.display()), e)),
            }
        }
        sync_dir(path)?;
        let marker = path.join(MARKER);
        fs::remove_file(&marker).map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
        sync_dir(path)?;
        tracing::info!(path = %path.display(), "MOUNT volume destroyed");
        Ok(())
    }

    /// Bytes used by the files under `path` (not following symlinks, not
    /// counting the MOUNT marker). Files that vanish during the walk — a
    /// task may be writing — are skipped. A missing path uses 0 bytes.
    pub fn usage_bytes(&self, path: &Path) -> Result<u64> {
        let mut total = 0u64;
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
                if dir == path && entry.file_name() == MARKER {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("inspecting {}", entry.path().display()), e)),
                };
                if meta.is_dir() {
                    stack.push(entry.path());
                } else if meta.is_file() {
                    total = total.saturating_add(meta.len());
                }
            }
        }
        Ok(total)
    }

    /// The ROOT volumes on this agent as `(role, volume id)`, sorted — what an
    /// agent reports after a restart.
    pub fn list_root(&self) -> Result<Vec<(String, String)>> {
        let mut volumes = Vec::new();
        for role in list_dirs(&self.roles_dir())? {
            for id in list_dirs(&self.roles_dir().join(&role))? {
                volumes.push((role.clone(), id));
            }
        }
        volumes.sort();
        Ok(volumes)
    }

    /// `(role, id)` when `path` is exactly `<roles_dir>/<role>/<id>` with
    /// valid names.
    fn root_parts<'p>(&self, path: &'p Path) -> Option<(&'p str, &'p str)> {
        let rest = path.strip_prefix(self.roles_dir()).ok()?;
        let mut parts = rest.components();
        let (Some(Component::Normal(role)), Some(Component::Normal(id)), None) =
            (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let (role, id) = (role.to_str()?, id.to_str()?);
        (validate_name("role", role).is_ok() && validate_name("volume id", id).is_ok()).then_some((role, id))
    }
}

/// The volume id a MOUNT path's marker names, `None` when it has no marker.
pub fn mount_volume_id(path: &Path) -> Result<Option<String>> {
    let marker = path.join(MARKER);
    let Some(bytes) = read_optional(&marker)? else {
        return Ok(None);
    };
    let id =
        String::from_utf8(bytes).map_err(|_| Error::Corrupt { path: marker.clone(), reason: "not UTF-8".into() })?;
    let id = id.trim();
    if validate_name("volume id", id).is_err() {
        return Err(Error::Corrupt { path: marker, reason: format!("{id:?} is not a valid volume id") });
    }
    Ok(Some(id.to_string()))
}

/// Checks that `name` is usable as exactly one path component: not empty, no
/// `/` or `\`, no `..`, not `.`, no NUL or control characters, at most 255
/// bytes.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.contains('/') || name.contains('\\') {
        Some("must not contain a path separator")
    } else if name.contains("..") {
        Some("must not contain \"..\"")
    } else if name == "." {
        Some("must not be \".\"")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else if name.len() > 255 {
        Some("must be at most 255 bytes")
    } else if name.trim() != name {
        Some("must not start or end with whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName { what, name: name.to_string(), reason }),
        None => Ok(()),
    }
}

/// Names of the subdirectories of `dir` that are valid names (empty if the
/// directory is missing).
fn list_dirs(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            if validate_name("volume id", name).is_ok() {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, VolumeManager) {
        let dir = tempfile::tempdir().unwrap();
        let vm = VolumeManager::new(dir.path().join("agent"));
        (dir, vm)
    }

    #[test]
    fn root_volume_lives_under_roles_dir() {
        let (dir, vm) = setup();
        let p = vm.create_root("fraud", "kafka-0-data").unwrap();
        assert_eq!(p, dir.path().join("agent/volumes/roles/fraud/kafka-0-data"));
        assert!(p.is_dir());
        assert!(vm.exists(&p));
        assert_eq!(vm.kind(&p).unwrap(), Some(VolumeKind::Root));
    }

    #[test]
    fn create_root_again_keeps_data() {
        let (_dir, vm) = setup();
        let p = vm.create_root("r", "v").unwrap();
        fs::write(p.join("segment"), b"data").unwrap();
        assert_eq!(vm.create_root("r", "v").unwrap(), p);
        assert_eq!(fs::read(p.join("segment")).unwrap(), b"data");
    }

    #[test]
    fn traversal_in_role_or_id_is_refused() {
        let (dir, vm) = setup();
        let bad = ["", ".", "..", "../x", "a/b", "/abs", "a\\b", "x..", "a\0b", "a\nb", " a"];
        for name in bad {
            let err = vm.create_root(name, "v").unwrap_err();
            assert!(matches!(err, Error::InvalidName { what: "role", .. }), "{name:?}: {err}");
            assert!(err.to_string().starts_with("invalid role"), "{err}");
            let err = vm.create_root("r", name).unwrap_err();
            assert!(matches!(err, Error::InvalidName { what: "volume id", .. }), "{name:?}");
            assert!(err.to_string().contains("invalid volume id"), "{err}");
        }
        assert!(!dir.path().join("agent").exists(), "nothing may be created");
    }

    #[test]
    fn traversal_error_says_why() {
        let (_dir, vm) = setup();
        let err = vm.create_root("..", "v").unwrap_err().to_string();
        assert_eq!(err, "invalid role \"..\": must not contain \"..\"");
        let err = vm.create_root("r", "").unwrap_err().to_string();
        assert_eq!(err, "invalid volume id \"\": must not be empty");
        let err = vm.create_root("r", &"v".repeat(256)).unwrap_err().to_string();
        assert!(err.ends_with("must be at most 255 bytes"), "{err}");
    }

    #[test]
    fn destroy_root_removes_it_and_is_idempotent() {
        let (_dir, vm) = setup();
        let p = vm.create_root("r", "v").unwrap();
        fs::create_dir_all(p.join("a/b")).unwrap();
        fs::write(p.join("a/b/f"), b"x").unwrap();
        let sibling = vm.create_root("r", "w").unwrap();
        vm.destroy(&p).unwrap();
        assert!(!p.exists());
        assert!(!vm.exists(&p));
        assert!(sibling.is_dir());
        vm.destroy(&p).unwrap();
    }

    #[test]
    fn destroy_root_does_not_follow_a_symlinked_volume() {
        let (dir, vm) = setup();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("precious"), b"x").unwrap();
        let role_dir = vm.roles_dir().join("r");
        fs::create_dir_all(&role_dir).unwrap();
        std::os::unix::fs::symlink(&outside, role_dir.join("v")).unwrap();
        vm.destroy(&role_dir.join("v")).unwrap();
        assert!(outside.join("precious").exists());
        assert!(!role_dir.join("v").exists());
    }

    #[test]
    fn mount_is_marked_with_the_volume_id() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("mnt/disk1");
        assert_eq!(vm.create_mount(&mnt, "cass-0").unwrap(), mnt);
        assert_eq!(fs::read_to_string(mnt.join(MARKER)).unwrap(), "cass-0\n");
        assert_eq!(mount_volume_id(&mnt).unwrap().as_deref(), Some("cass-0"));
        assert_eq!(vm.kind(&mnt).unwrap(), Some(VolumeKind::Mount));
        assert!(vm.exists(&mnt));
    }

    #[test]
    fn mount_reuse_with_same_id_keeps_data() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        vm.create_mount(&mnt, "v1").unwrap();
        fs::write(mnt.join("sstable"), b"rows").unwrap();
        vm.create_mount(&mnt, "v1").unwrap();
        assert_eq!(fs::read(mnt.join("sstable")).unwrap(), b"rows");
    }

    #[test]
    fn mount_reuse_with_another_id_is_refused() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        vm.create_mount(&mnt, "v1").unwrap();
        let err = vm.create_mount(&mnt, "v2").unwrap_err();
        assert!(matches!(err, Error::VolumeInUse { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("\"v1\"") && text.contains("\"v2\""), "{text}");
        assert!(text.contains(&mnt.display().to_string()), "{text}");
        assert_eq!(mount_volume_id(&mnt).unwrap().as_deref(), Some("v1"));
    }

    #[test]
    fn unmarked_mount_with_data_is_refused() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        fs::create_dir(&mnt).unwrap();
        fs::write(mnt.join("someone-elses"), b"x").unwrap();
        let err = vm.create_mount(&mnt, "v1").unwrap_err();
        assert!(matches!(err, Error::MountNotEmpty { .. }), "{err:?}");
        assert!(!mnt.join(MARKER).exists());
    }

    #[test]
    fn mount_with_only_lost_and_found_or_leftovers_is_claimed() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        fs::create_dir_all(mnt.join(LOST_AND_FOUND)).unwrap();
        fs::write(mnt.join(format!(".{MARKER}{}1.0", durable::TEMP_MARKER)), b"v0").unwrap();
        vm.create_mount(&mnt, "v1").unwrap();
        let mut names: Vec<_> = fs::read_dir(&mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, vec![MARKER, LOST_AND_FOUND]);
    }

    #[test]
    fn mount_with_bad_id_is_refused_before_touching_disk() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        assert!(matches!(vm.create_mount(&mnt, "../x"), Err(Error::InvalidName { .. })));
        assert!(!mnt.exists());
    }

    #[test]
    fn corrupt_marker_is_an_error() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        fs::create_dir(&mnt).unwrap();
        fs::write(mnt.join(MARKER), b"a/b\n").unwrap();
        let err = vm.create_mount(&mnt, "v1").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains(MARKER), "{err}");
    }

    #[test]
    fn destroy_mount_keeps_the_mount_point() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        vm.create_mount(&mnt, "v1").unwrap();
        fs::create_dir_all(mnt.join("data/ks/t")).unwrap();
        fs::write(mnt.join("data/ks/t/sst"), b"rows").unwrap();
        fs::write(mnt.join("commitlog"), b"log").unwrap();
        fs::write(mnt.join(".hidden"), b"h").unwrap();
        vm.destroy(&mnt).unwrap();
        assert!(mnt.is_dir(), "the mount point stays");
        assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0);
        assert!(!vm.exists(&mnt));
        // The disk can now hold another volume.
        vm.create_mount(&mnt, "v2").unwrap();
        assert_eq!(mount_volume_id(&mnt).unwrap().as_deref(), Some("v2"));
    }

    #[test]
    fn destroy_mount_removes_symlinks_not_their_targets() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("precious"), b"x").unwrap();
        vm.create_mount(&mnt, "v1").unwrap();
        std::os::unix::fs::symlink(&outside, mnt.join("link")).unwrap();
        vm.destroy(&mnt).unwrap();
        assert!(outside.join("precious").exists());
        assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0);
    }

    #[test]
    fn destroy_refuses_a_path_that_is_not_a_volume() {
        let (dir, vm) = setup();
        let plain = dir.path().join("home");
        fs::create_dir(&plain).unwrap();
        fs::write(plain.join("thesis.tex"), b"x").unwrap();
        let err = vm.destroy(&plain).unwrap_err();
        assert!(matches!(err, Error::NotAVolume { .. }), "{err:?}");
        assert!(err.to_string().contains("refusing to destroy"), "{err}");
        assert!(plain.join("thesis.tex").exists());
        // The roles dir itself and a role dir are not volumes either.
        let p = vm.create_root("r", "v").unwrap();
        assert!(vm.destroy(&vm.roles_dir()).is_err());
        assert!(vm.destroy(&vm.roles_dir().join("r")).is_err());
        fs::create_dir(p.join("sub")).unwrap();
        assert!(vm.destroy(&p.join("sub")).is_err());
        assert!(p.is_dir());
    }

    #[test]
    fn destroy_of_a_missing_path_is_a_no_op() {
        let (dir, vm) = setup();
        vm.destroy(&dir.path().join("never-was")).unwrap();
    }

    #[test]
    fn usage_sums_nested_files_without_the_marker() {
        let (dir, vm) = setup();
        let mnt = dir.path().join("disk");
        vm.create_mount(&mnt, "v1").unwrap();
        assert_eq!(vm.usage_bytes(&mnt).unwrap(), 0);
        fs::create_dir_all(mnt.join("a/b")).unwrap();
        fs::write(mnt.join("f"), vec![0u8; 100]).unwrap();
        fs::write(mnt.join("a/g"), vec![0u8; 20]).unwrap();
        fs::write(mnt.join("a/b/h"), vec![0u8; 3]).unwrap();
        assert_eq!(vm.usage_bytes(&mnt).unwrap(), 123);
    }

    #[test]
    fn usage_does_not_follow_symlinks() {
        let (dir, vm) = setup();
        let p = vm.create_root("r", "v").unwrap();
        let outside = dir.path().join("big");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("f"), vec![0u8; 1000]).unwrap();
        std::os::unix::fs::symlink(&outside, p.join("link")).unwrap();
        fs::write(p.join("own"), vec![0u8; 7]).unwrap();
        assert_eq!(vm.usage_bytes(&p).unwrap(), 7);
    }

    #[test]
    fn usage_of_a_missing_path_is_zero() {
        let (dir, vm) = setup();
        assert_eq!(vm.usage_bytes(&dir.path().join("nope")).unwrap(), 0);
    }

    #[test]
    fn list_root_reports_role_and_id() {
        let (_dir, vm) = setup();
        assert!(vm.list_root().unwrap().is_empty());
        vm.create_root("b", "v2").unwrap();
        vm.create_root("a", "v1").unwrap();
        vm.create_root("b", "v1").unwrap();
        let want = [("a", "v1"), ("b", "v1"), ("b", "v2")].map(|(r, v)| (r.to_string(), v.to_string()));
        assert_eq!(vm.list_root().unwrap(), want);
    }

    #[test]
    fn root_path_checks_names() {
        let (_dir, vm) = setup();
        assert!(vm.root_path("r", "v").unwrap().ends_with("volumes/roles/r/v"));
        assert!(vm.root_path("r", "v/../../x").is_err());
    }
}
