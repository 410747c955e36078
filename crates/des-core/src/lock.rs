//! Taking turns on one shard file without leaving anything in the store.
//!
//! On Unix a writer locks the shard file itself (`flock`, advisory: readers
//! never wait). A writer that waited may find that the holder renamed a new
//! version over the path meanwhile; it then locks that version instead, so
//! it always builds on the newest one. A shard that does not exist yet has
//! nothing to lock: its writer creates it with a no-clobber rename and, if
//! another writer created it first, appends to that one (see `ShardWriter`).
//!
//! Elsewhere (Windows locks are mandatory and would block readers) a writer
//! locks a `<shard>.lock` file beside the shard instead.

use crate::error::{DesError, Result};
use std::fs::File;
use std::path::Path;

/// An exclusive claim on one shard path, held until dropped.
#[derive(Debug)]
pub(crate) struct ShardLock {
  _file: File,
}

impl ShardLock {
  /// The file locked (on Unix, the shard itself).
  pub(crate) fn file(&self) -> &File {
    &self._file
  }
}

/// What a writer found when it took its turn on a path.
#[derive(Debug)]
pub(crate) enum Turn {
  /// The shard exists; the lock is on the version the path names now.
  Existing(ShardLock),
  /// No shard there. On Unix no lock is held (the file is created with a
  /// no-clobber rename); elsewhere the `.lock` file's lock is.
  Absent(Option<ShardLock>),
}

/// Takes this writer's turn on `target`: waiting for any other writer, or,
/// without `wait`, None at once when another writer holds it. A process
/// that holds other shards' turns must not wait (two runs each holding what
/// the other waits for would wait for ever): it tries, and waits only once
/// it holds nothing.
#[cfg(unix)]
pub(crate) fn take_turn(target: &Path, wait: bool) -> Result<Option<Turn>> {
  use std::os::unix::fs::MetadataExt;
  let shown = || target.display().to_string();
  loop {
    let file = match File::open(target) {
      Ok(f) => f,
      Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Turn::Absent(None))),
      Err(e) => return Err(DesError::io(format!("open {}", shown()), e)),
    };
    if !lock(&file, wait).map_err(|e| DesError::io(format!("lock {}", shown()), e))? {
      return Ok(None);
    }
    let held = file
      .metadata()
      .map_err(|e| DesError::io(format!("stat {}", shown()), e))?;
    match std::fs::metadata(target) {
      Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {
        return Ok(Some(Turn::Existing(ShardLock { _file: file })))
      }
      // Replaced (or removed) while we waited: take our turn on what is there now.
      Ok(_) => continue,
      Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Turn::Absent(None))),
      Err(e) => return Err(DesError::io(format!("stat {}", shown()), e)),
    }
  }
}

/// Locks `file` exclusively: waiting for it, or, without `wait`, false at
/// once when another holds it.
fn lock(file: &File, wait: bool) -> std::io::Result<bool> {
  if wait {
    return file.lock().map(|()| true);
  }
  match file.try_lock() {
    Ok(()) => Ok(true),
    Err(std::fs::TryLockError::WouldBlock) => Ok(false),
    Err(std::fs::TryLockError::Error(e)) => Err(e),
  }
}

/// How long a reader that met a footer being rewritten waits for the writer's
/// turn to end. A footer is rewritten in an instant, then the turn ends with
/// a sync: anything longer is no writer at work but a lock held by someone
/// else (any process that may read the file may lock it), and the reader
/// reports what it read rather than hang.
#[cfg(all(unix, not(test)))]
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Short in this crate's own tests, which wait it out.
#[cfg(all(unix, test))]
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits until no writer holds its turn on `file` (an append in place is then
/// finished or abandoned), for a reader that met a footer being rewritten,
/// at most `WRITER_WAIT`. True when the reader should read again: the turn
/// ended, or the wait ran out (what the file holds by then is what it
/// reports). False where writers do not lock the shard itself (nothing to
/// wait for) or the lock cannot be asked about.
pub(crate) fn wait_for_writer(file: &File) -> bool {
  #[cfg(unix)]
  {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + WRITER_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
      match file.try_lock_shared() {
        Ok(()) => return file.unlock().is_ok(),
        Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
          std::thread::sleep(pause);
          pause = (pause * 2).min(Duration::from_millis(50));
        }
        Err(std::fs::TryLockError::WouldBlock) => return true,
        Err(_) => return false,
      }
    }
  }
  #[cfg(not(unix))]
  {
    let _ = file;
    false
  }
}

/// True while a writer holds its turn on `file`: a live process (a turn ends
/// with the process that held it), so bytes past the shard's index are an
/// append under way, not an interrupted one. False where writers do not lock
/// the shard itself or the lock cannot be asked about.
pub(crate) fn writer_holds(file: &File) -> bool {
  #[cfg(unix)]
  {
    match file.try_lock_shared() {
      Ok(()) => {
        let _ = file.unlock();
        false
      }
      Err(std::fs::TryLockError::WouldBlock) => true,
      Err(_) => false,
    }
  }
  #[cfg(not(unix))]
  {
    let _ = file;
    false
  }
}

/// Takes this writer's turn on `target` through a `<target>.lock` file
/// (`wait` as on Unix).
#[cfg(not(unix))]
pub(crate) fn take_turn(target: &Path, wait: bool) -> Result<Option<Turn>> {
  let mut name = target.file_name().unwrap_or_default().to_os_string();
  name.push(".lock");
  let lock_path = target.with_file_name(name);
  if let Some(dir) = lock_path.parent() {
    std::fs::create_dir_all(dir)
      .map_err(|e| DesError::io(format!("create {}", dir.display()), e))?;
  }
  let file = std::fs::OpenOptions::new()
    .create(true)
    .truncate(false)
    .write(true)
    .open(&lock_path)
    .map_err(|e| DesError::io(format!("open {}", lock_path.display()), e))?;
  if !lock(&file, wait).map_err(|e| DesError::io(format!("lock {}", lock_path.display()), e))? {
    return Ok(None);
  }
  let lock = ShardLock { _file: file };
  Ok(Some(if target.exists() {
    Turn::Existing(lock)
  } else {
    Turn::Absent(Some(lock))
  }))
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;

  #[test]
  fn a_reader_reads_again_when_the_turn_ends_and_when_the_wait_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0A.des");
    std::fs::write(&path, b"shard").unwrap();
    let reader = File::open(&path).unwrap();
    assert!(wait_for_writer(&reader), "no writer: read again at once");
    let holder = File::open(&path).unwrap();
    holder.lock().unwrap();
    assert!(
      wait_for_writer(&reader),
      "a turn that does not end: read again all the same"
    );
  }
}

/// BigFiles being written in this process, by path.
static BIGFILES_BEING_WRITTEN: std::sync::Mutex<Vec<std::path::PathBuf>> =
  std::sync::Mutex::new(Vec::new());
static BIGFILE_WRITTEN: std::sync::Condvar = std::sync::Condvar::new();

/// A claim on writing one BigFile in this process, held until dropped.
pub(crate) struct BigFileTurn {
  path: std::path::PathBuf,
}

/// Waits until no other writer of this process is writing the BigFile at
/// `path`: two shards naming the same bytes, written at once, then write it
/// once (the second finds it there) and report it written once.
pub(crate) fn bigfile_turn(path: &Path) -> BigFileTurn {
  // Nothing is left inconsistent under this lock by a panic: ignore poisoning.
  let mut busy = BIGFILES_BEING_WRITTEN
    .lock()
    .unwrap_or_else(|e| e.into_inner());
  while busy.iter().any(|p| p == path) {
    busy = BIGFILE_WRITTEN
      .wait(busy)
      .unwrap_or_else(|e| e.into_inner());
  }
  busy.push(path.to_path_buf());
  BigFileTurn {
    path: path.to_path_buf(),
  }
}

impl Drop for BigFileTurn {
  fn drop(&mut self) {
    let mut busy = BIGFILES_BEING_WRITTEN
      .lock()
      .unwrap_or_else(|e| e.into_inner());
    busy.retain(|p| p != &self.path);
    BIGFILE_WRITTEN.notify_all();
  }
}
