//! Writers' temp files in the store: how they are named, the lock each
//! carries while its writer lives, and removing those a dead writer left.
//!
//! A writer stages a new shard (or BigFile) in `.des-tmp-*.part` beside it
//! and renames it into place. A writer killed before that (kill -9, an
//! evicted pod) leaves the temp file behind, up to a whole shard of bytes.
//! On Unix each temp file is locked (`flock`) by its writer until just
//! before its rename; the kernel drops the lock when the writer dies. A temp
//! file nobody holds and unchanged for `min_age` is therefore a dead
//! writer's. The age also covers the instants a temp file is unlocked (made,
//! not yet locked; unlocked, not yet renamed) and writers of earlier
//! versions, which did not lock.

use crate::error::{DesError, Result};
use std::path::Path;
use std::time::Duration;
use tempfile::NamedTempFile;

/// Start and end of a temp file's name: never a shard's (`*.des`) or a BigFile's (a sha256).
const PREFIX: &str = ".des-tmp-";
const SUFFIX: &str = ".part";

/// True for the name of a writer's temp file.
pub fn is_temp_name(name: &str) -> bool {
  name.len() > PREFIX.len() + SUFFIX.len() && name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// A new temp file beside `target` (its folder made if missing), locked for
/// its writer.
pub(crate) fn temp_beside(target: &Path) -> Result<NamedTempFile> {
  let dir = target.parent().unwrap_or_else(|| Path::new("."));
  std::fs::create_dir_all(dir).map_err(|e| DesError::io(format!("create {}", dir.display()), e))?;
  let mut builder = tempfile::Builder::new();
  builder.prefix(PREFIX).suffix(SUFFIX);
  // Shards are read by other users (a server's account): 0644 less the
  // umask, like any file, not the 0600 of a private temp file.
  #[cfg(unix)]
  builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
  let tmp = builder
    .tempfile_in(dir)
    .map_err(|e| DesError::io(format!("create temp file in {}", dir.display()), e))?;
  // Windows locks are mandatory and the sweep is Unix-only: locked on Unix alone.
  #[cfg(unix)]
  tmp
    .as_file()
    .lock()
    .map_err(|e| DesError::io(format!("lock temp file in {}", dir.display()), e))?;
  Ok(tmp)
}

/// Lets go of a temp file's lock just before it is renamed into place: the
/// file becomes a shard, which readers and writers lock for their own turns.
pub(crate) fn release(tmp: &NamedTempFile) {
  #[cfg(unix)]
  let _ = tmp.as_file().unlock();
  #[cfg(not(unix))]
  let _ = tmp;
}

/// Removes the temp files in `dir` that no writer holds and that have not
/// changed for `min_age`; returns how many. A missing folder holds none.
/// Elsewhere than Unix temp files carry no lock: nothing is removed.
pub fn remove_stale_temps(dir: &Path, min_age: Duration) -> Result<u64> {
  let shown = || dir.display().to_string();
  let entries = match std::fs::read_dir(dir) {
    Ok(e) => e,
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
    Err(e) => return Err(DesError::io(format!("list {}", shown()), e)),
  };
  let mut removed = 0;
  for entry in entries {
    let entry = entry.map_err(|e| DesError::io(format!("list {}", shown()), e))?;
    let name = entry.file_name();
    if !name.to_str().is_some_and(is_temp_name) {
      continue;
    }
    if remove_if_stale(&entry.path(), min_age)? {
      removed += 1;
    }
  }
  Ok(removed)
}

/// Removes one temp file when it is stale (see `remove_stale_temps`).
#[cfg(unix)]
fn remove_if_stale(path: &Path, min_age: Duration) -> Result<bool> {
  use std::fs::File;
  use std::os::unix::fs::MetadataExt;
  use std::time::SystemTime;
  let shown = || path.display().to_string();
  let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
  let file = match File::open(path) {
    Ok(f) => f,
    // Renamed into place or removed since the folder was listed.
    Err(e) if gone(&e) => return Ok(false),
    Err(e) => return Err(DesError::io(format!("open {}", shown()), e)),
  };
  match file.try_lock() {
    Ok(()) => {}
    Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
    Err(std::fs::TryLockError::Error(e)) => {
      return Err(DesError::io(format!("lock {}", shown()), e))
    }
  }
  let held = file
    .metadata()
    .map_err(|e| DesError::io(format!("stat {}", shown()), e))?;
  let age = held
    .modified()
    .ok()
    .and_then(|m| SystemTime::now().duration_since(m).ok());
  if age.is_none_or(|a| a < min_age) {
    return Ok(false);
  }
  // Still the file we locked at that name (not a temp file made since).
  match std::fs::symlink_metadata(path) {
    Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {}
    Ok(_) => return Ok(false),
    Err(e) if gone(&e) => return Ok(false),
    Err(e) => return Err(DesError::io(format!("stat {}", shown()), e)),
  }
  match std::fs::remove_file(path) {
    Ok(()) => Ok(true),
    Err(e) if gone(&e) => Ok(false),
    Err(e) => Err(DesError::io(format!("remove {}", shown()), e)),
  }
}

#[cfg(not(unix))]
fn remove_if_stale(_path: &Path, _min_age: Duration) -> Result<bool> {
  Ok(false)
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;
  use std::fs::{File, FileTimes};
  use std::time::SystemTime;

  fn backdate(path: &Path, by: Duration) {
    let then = SystemTime::now() - by;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_times(FileTimes::new().set_modified(then).set_accessed(then))
      .unwrap();
  }

  const HOUR: Duration = Duration::from_secs(3600);
  const MIN_AGE: Duration = Duration::from_secs(900);

  #[test]
  fn a_dead_writers_old_temp_file_is_removed_a_live_or_recent_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("0a.des");
    // A live writer's temp file: locked, however old.
    let live = temp_beside(&target).unwrap();
    backdate(live.path(), HOUR);
    // Dead writers': nobody holds them; one old, one just written.
    let dead_old = dir.path().join(".des-tmp-dead1.part");
    let dead_new = dir.path().join(".des-tmp-dead2.part");
    std::fs::write(&dead_old, b"half a shard").unwrap();
    std::fs::write(&dead_new, b"").unwrap();
    backdate(&dead_old, HOUR);
    // Not temp files, however old: a shard, a name that only looks close.
    let shard = dir.path().join("0b.des");
    let other = dir.path().join(".des-tmp-.part.des");
    for p in [&shard, &other] {
      std::fs::write(p, b"x").unwrap();
      backdate(p, HOUR);
    }
    assert_eq!(remove_stale_temps(dir.path(), MIN_AGE).unwrap(), 1);
    assert!(!dead_old.exists());
    assert!(dead_new.exists() && live.path().exists() && shard.exists() && other.exists());
    // The live writer dies (its lock goes with it, not its file): removed next time.
    let (file, path) = live.into_parts();
    let kept = path.keep().unwrap();
    drop(file);
    assert_eq!(remove_stale_temps(dir.path(), MIN_AGE).unwrap(), 1);
    assert!(!kept.exists());
  }

  #[test]
  fn a_temp_file_is_unlocked_for_its_rename_and_a_missing_folder_holds_none() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = temp_beside(&dir.path().join("0a.des")).unwrap();
    let other = File::open(tmp.path()).unwrap();
    assert!(matches!(
      other.try_lock_shared(),
      Err(std::fs::TryLockError::WouldBlock)
    ));
    release(&tmp);
    other.try_lock_shared().unwrap();
    assert_eq!(
      remove_stale_temps(&dir.path().join("no-such"), MIN_AGE).unwrap(),
      0
    );
  }

  #[test]
  fn temp_names() {
    assert!(is_temp_name(".des-tmp-abc123.part"));
    assert!(!is_temp_name(".des-tmp-.part"));
    assert!(!is_temp_name(".des-tmp-abc.part.des"));
    assert!(!is_temp_name("des-tmp-abc.part"));
  }
}
