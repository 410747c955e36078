//! Payloads read and compressed ahead of the writing, on the cores the run
//! leaves idle while it is still planned on one thread (reading the manifest,
//! routing, checking): a run's start is otherwise one busy core.
//!
//! Purely a head start: a payload is taken only by the item it was made for
//! (same uid, path, expected size and compression) and only while its source
//! is still as it was when read (the same file, size and times: a source
//! changed since is read again by the writer, which stores its bytes then or
//! refuses it as changed); anything that fails here is dropped, to be read
//! again, and reported, by the writer itself.

use crate::checksum::crc32c;
use crate::codec::CompressionPolicy;
use crate::entry::Codec;
use crate::pack::read_source;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// A payload larger than this is not read ahead (it is worth its own read, and would crowd out many small ones).
pub const MAX_AHEAD_ITEM: u64 = 4 << 20;

/// One source to read ahead.
#[derive(Debug)]
pub struct Ahead {
  pub uid: String,
  pub path: PathBuf,
  pub expected_size: u64,
}

/// A payload made ahead: as `prepare` makes an inline one.
#[derive(Debug)]
pub struct Ready {
  pub codec: Codec,
  pub stored: Vec<u8>,
  pub crc: u32,
  pub size: u64,
}

#[derive(Debug)]
struct Made {
  path: PathBuf,
  expected_size: u64,
  /// The source as it was looked at before it was read.
  version: Version,
  ready: Ready,
}

/// What a stat says of a file: which file it is, its size, when it was last
/// written. The same before a read and at a later look: not written since
/// (to the resolution of the file system's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
  #[cfg(unix)]
  id: (u64, u64, i64, i64, i64, i64),
  #[cfg(not(unix))]
  modified: Option<std::time::SystemTime>,
  len: u64,
}

impl Version {
  fn of(m: &std::fs::Metadata) -> Version {
    #[cfg(unix)]
    {
      use std::os::unix::fs::MetadataExt;
      Version {
        id: (
          m.dev(),
          m.ino(),
          m.mtime(),
          m.mtime_nsec(),
          m.ctime(),
          m.ctime_nsec(),
        ),
        len: m.len(),
      }
    }
    #[cfg(not(unix))]
    Version {
      modified: m.modified().ok(),
      len: m.len(),
    }
  }
}

#[derive(Debug, Default)]
struct State {
  queue: VecDeque<Ahead>,
  made: HashMap<String, Made>,
  /// Stored bytes held in `made`.
  held: u64,
  stopped: bool,
  /// Sources being read and compressed now.
  in_flight: usize,
  /// Their sizes: counted against the budget from the start of their read,
  /// so that readers starting together cannot all pass it.
  reserved: u64,
  /// What is made from now on is dropped: nobody will take it.
  closed: bool,
}

/// The payloads read ahead for one run, and the threads that read them.
#[derive(Debug)]
pub struct Prefetch {
  compression: CompressionPolicy,
  big_file_threshold: u64,
  budget: u64,
  state: Mutex<State>,
  wake: Condvar,
}

impl Prefetch {
  /// Starts `threads` readers that hold at most `budget` stored bytes. Items
  /// whose size passes `big_file_threshold` (BigFiles) are never read ahead.
  pub fn start(
    compression: CompressionPolicy,
    big_file_threshold: u64,
    budget: u64,
    threads: usize,
  ) -> Arc<Prefetch> {
    let p = Arc::new(Prefetch {
      compression,
      big_file_threshold,
      budget,
      state: Mutex::new(State::default()),
      wake: Condvar::new(),
    });
    for i in 0..threads.max(1) {
      let p = Arc::clone(&p);
      // A thread that cannot be made only means less is read ahead.
      let _ = std::thread::Builder::new()
        .name(format!("des-ahead-{i}"))
        .spawn(move || p.read_ahead());
    }
    p
  }

  /// Queues sources to read ahead, in the order given.
  pub fn add(&self, items: Vec<Ahead>) {
    let mut s = self.lock();
    if s.stopped {
      return;
    }
    let limit = self.big_file_threshold.min(MAX_AHEAD_ITEM).min(self.budget);
    s.queue
      .extend(items.into_iter().filter(|a| a.expected_size <= limit));
    drop(s);
    self.wake.notify_all();
  }

  /// No more reads start (the writing has begun, or the run ended); what is made stays until taken.
  pub fn stop(&self) {
    let mut s = self.lock();
    s.stopped = true;
    s.queue.clear();
    drop(s);
    self.wake.notify_all();
  }

  /// Stops, and lets go of everything made.
  pub fn close(&self) {
    self.stop();
    let mut s = self.lock();
    s.closed = true;
    s.made.clear();
    s.held = 0;
  }

  /// The payload made for this item, if one was, with the same source,
  /// expected size and compression, and the source not changed since it was
  /// read (else the writer reads it again); it is handed out once.
  pub fn take(
    &self,
    uid: &str,
    path: &Path,
    expected_size: u64,
    compression: &CompressionPolicy,
  ) -> Option<Ready> {
    if *compression != self.compression {
      return None;
    }
    let mut s = self.lock();
    let made = s.made.remove(uid)?;
    s.held -= made.ready.stored.len() as u64;
    drop(s);
    self.wake.notify_all();
    if made.path != path || made.expected_size != expected_size {
      return None;
    }
    // Looked at again: a source rewritten, grown or replaced since its read
    // ahead is read again, as if it had not been (stored as it is now, or
    // refused as changed), not stored as it was.
    let now = std::fs::metadata(path).ok()?;
    (Version::of(&now) == made.version).then_some(made.ready)
  }

  /// Waits until nothing is being made and nothing more will be (the queue
  /// is empty, or the budget is full, or reading stopped).
  #[cfg(test)]
  pub(crate) fn settle(&self) {
    let mut s = self.lock();
    while s.in_flight > 0 || !(s.stopped || s.queue.front().is_none_or(|a| !self.has_room(&s, a))) {
      s = self.wake.wait(s).unwrap();
    }
  }

  /// The uids made and not yet taken, sorted.
  #[cfg(test)]
  pub(crate) fn made(&self) -> Vec<String> {
    let mut uids: Vec<String> = self.lock().made.keys().cloned().collect();
    uids.sort();
    uids
  }

  /// Whether the budget holds this source's payload besides what is held and being read.
  fn has_room(&self, s: &State, a: &Ahead) -> bool {
    s.held + s.reserved + a.expected_size <= self.budget
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, State> {
    // A reader that panicked left nothing half-done in the state: go on with it.
    self.state.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn read_ahead(&self) {
    loop {
      let next = {
        let mut s = self.lock();
        loop {
          if s.stopped {
            return;
          }
          if s.queue.front().is_some_and(|a| self.has_room(&s, a)) {
            if let Some(a) = s.queue.pop_front() {
              s.in_flight += 1;
              s.reserved += a.expected_size;
              break a;
            }
          }
          s = self.wake.wait(s).unwrap_or_else(|e| e.into_inner());
        }
      };
      let made = self.make(&next);
      let mut s = self.lock();
      s.in_flight -= 1;
      s.reserved -= next.expected_size;
      self.wake.notify_all();
      let Some((version, ready)) = made else {
        continue;
      };
      if s.closed {
        return;
      }
      s.held += ready.stored.len() as u64;
      let made = Made {
        path: next.path,
        expected_size: next.expected_size,
        version,
        ready,
      };
      // The same uid twice (a run that fails on it): the later is kept; `take` checks the path.
      if let Some(old) = s.made.insert(next.uid, made) {
        s.held -= old.ready.stored.len() as u64;
      }
    }
  }

  /// The payload, with the source as it was looked at before its read.
  fn make(&self, a: &Ahead) -> Option<(Version, Ready)> {
    // Looked at before it is opened, as the run's checks do (which this read
    // precedes): opening what is not a file acts on it (a FIFO's waiting
    // writer is let go, a device may do something).
    let stat = std::fs::metadata(&a.path).ok()?;
    if !stat.is_file() || stat.len() != a.expected_size {
      return None;
    }
    let data = read_source(&a.uid, &a.path, Some(a.expected_size)).ok()?;
    let size = data.len() as u64;
    let (codec, stored) = self.compression.encode_owned(&a.uid, data).ok()?;
    let crc = crc32c(&stored);
    let ready = Ready {
      codec,
      stored,
      crc,
      size,
    };
    Some((Version::of(&stat), ready))
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::writer::{prepare, PreparedKind, WriterOptions};
  use std::io::Write;

  fn source(dir: &Path, name: &str, data: &[u8]) -> Ahead {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    Ahead {
      uid: name.to_string(),
      path,
      expected_size: data.len() as u64,
    }
  }

  /// One source of `data` per name, queued as a run queues them, and their paths.
  fn sources(dir: &Path, names: &[&str], data: &[u8]) -> (Vec<Ahead>, Vec<PathBuf>) {
    let items: Vec<Ahead> = names.iter().map(|n| source(dir, n, data)).collect();
    let paths = items.iter().map(|a| a.path.clone()).collect();
    (items, paths)
  }

  /// Readers on `threads` threads with the writer's default compression and a budget of 1 MiB.
  fn with_defaults(threads: usize) -> (WriterOptions, Arc<Prefetch>) {
    let opts = WriterOptions::default();
    let p = Prefetch::start(
      opts.compression.clone(),
      opts.big_file_threshold,
      1 << 20,
      threads,
    );
    (opts, p)
  }

  fn text(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"invoice line "[i % 13]).collect()
  }

  #[test]
  fn a_payload_read_ahead_is_taken_once_by_its_own_item_as_prepare_makes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, p) = with_defaults(1);
    let a = source(dir.path(), "a.json", &text(5000));
    let (path, size) = (a.path.clone(), a.expected_size);
    p.add(vec![a]);
    p.settle();
    let ready = p.take("a.json", &path, size, &opts.compression).unwrap();
    let PreparedKind::Inline { codec, stored, crc } =
      prepare("a.json", text(5000), None, &opts).unwrap().kind
    else {
      panic!("not inline")
    };
    assert_eq!(
      (ready.codec, &ready.stored, ready.crc, ready.size),
      (codec, &stored, crc, 5000)
    );
    assert!(stored.len() < 5000, "compressed");
    assert!(p.take("a.json", &path, size, &opts.compression).is_none());
  }

  #[test]
  fn another_path_size_or_compression_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, p) = with_defaults(2);
    let (items, paths) = sources(dir.path(), &["a", "b", "c"], &text(100));
    p.add(items);
    p.settle();
    let mut lz4 = opts.compression.clone();
    lz4.codec = Codec::Lz4;
    assert!(p.take("a", &paths[0], 100, &lz4).is_none());
    assert!(
      p.take("a", &paths[1], 100, &opts.compression).is_none(),
      "b's path for a"
    );
    assert!(
      p.take("b", &paths[1], 99, &opts.compression).is_none(),
      "another size"
    );
    // A mismatch lets the payload go: it is read again by the writer.
    assert!(p.take("b", &paths[1], 100, &opts.compression).is_none());
    assert!(p.take("c", &paths[2], 100, &opts.compression).is_some());
  }

  #[test]
  fn a_source_of_another_size_a_bigfile_or_a_missing_one_is_not_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions::default();
    let p = Prefetch::start(opts.compression.clone(), 1000, 1 << 20, 1);
    let mut grown = source(dir.path(), "grown", &text(10));
    grown.expected_size = 9;
    let big = source(dir.path(), "big", &text(1001));
    let gone = Ahead {
      uid: "gone".to_string(),
      path: dir.path().join("gone"),
      expected_size: 1,
    };
    let (grown_path, big_path) = (grown.path.clone(), big.path.clone());
    p.add(vec![grown, big, gone]);
    p.settle();
    assert!(p.take("grown", &grown_path, 9, &opts.compression).is_none());
    assert!(p.take("big", &big_path, 1001, &opts.compression).is_none());
    assert!(p
      .take("gone", &dir.path().join("gone"), 1, &opts.compression)
      .is_none());
  }

  #[test]
  fn a_source_changed_since_its_read_ahead_takes_nothing() {
    // Grown, rewritten in place with as many bytes, or replaced by another
    // file: the payload made from it before is not the source any more.
    let dir = tempfile::tempdir().unwrap();
    let (opts, p) = with_defaults(1);
    let names = ["grown", "rewritten", "replaced", "kept"];
    let (items, paths) = sources(dir.path(), &names, &text(100));
    p.add(items);
    p.settle();
    assert_eq!(p.made().len(), 4);
    std::fs::OpenOptions::new()
      .append(true)
      .open(&paths[0])
      .unwrap()
      .write_all(b"more")
      .unwrap();
    let rewritten = std::fs::OpenOptions::new()
      .write(true)
      .open(&paths[1])
      .unwrap();
    (&rewritten).write_all(&[b'x'; 100]).unwrap();
    // Written with a time of its own (as a copy that keeps its source's times is).
    rewritten
      .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
      .unwrap();
    let other = dir.path().join("other");
    std::fs::write(&other, text(100)).unwrap();
    std::fs::rename(&other, &paths[2]).unwrap();
    for (name, path) in names.iter().zip(&paths).take(3) {
      assert!(
        p.take(name, path, 100, &opts.compression).is_none(),
        "{name}"
      );
    }
    assert!(p.take("kept", &paths[3], 100, &opts.compression).is_some());
  }

  #[test]
  fn a_payload_held_ahead_takes_the_memory_of_its_stored_bytes_not_more() {
    // The budget counts stored bytes: a buffer sized for the source (LZ4's
    // is half of it) held for a payload that compressed to far less would
    // let many times the budget wait here.
    let dir = tempfile::tempdir().unwrap();
    let mut lz4 = WriterOptions::default().compression;
    lz4.codec = Codec::Lz4;
    let p = Prefetch::start(lz4.clone(), u64::MAX, 1 << 20, 1);
    let a = source(dir.path(), "zeros.bin", &vec![0u8; 1 << 20]);
    let (path, size) = (a.path.clone(), a.expected_size);
    p.add(vec![a]);
    p.settle();
    let ready = p.take("zeros.bin", &path, size, &lz4).unwrap();
    assert_eq!(ready.codec, Codec::Lz4);
    assert!(
      ready.stored.capacity() <= ready.stored.len() + 64,
      "{} bytes held for {} stored",
      ready.stored.capacity(),
      ready.stored.len()
    );
  }

  #[cfg(target_os = "linux")]
  #[test]
  fn a_source_that_is_not_a_regular_file_is_not_even_opened() {
    // Opening does things of its own to what is not a file: a FIFO's writer
    // waiting for a reader is let go (to die of SIGPIPE), a device may act.
    // The checks refuse such a source before anything opens it; reading
    // ahead, which starts before them, must not open it either.
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let c_path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let opens = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(opens >= 0);
    assert!(unsafe { libc::inotify_add_watch(opens, c_path.as_ptr(), libc::IN_OPEN) } >= 0);
    let p = Prefetch::start(CompressionPolicy::default(), u64::MAX, 1 << 20, 1);
    p.add(vec![Ahead {
      uid: "pipe".to_string(),
      path: fifo.clone(),
      expected_size: 2,
    }]);
    p.settle();
    let mut events = [0u8; 512];
    let n = unsafe { libc::read(opens, events.as_mut_ptr().cast(), events.len()) };
    unsafe { libc::close(opens) };
    assert!(n < 0, "the FIFO was opened ({n} bytes of inotify events)");
    assert!(p.made().is_empty());
  }

  #[test]
  fn many_readers_together_hold_no_more_than_the_budget() {
    // Each reader that starts counts its source against the budget: readers
    // that found it not yet full at once each held a payload past it.
    let dir = tempfile::tempdir().unwrap();
    let mut raw = WriterOptions::default().compression;
    raw.codec = Codec::None;
    let item = 512 << 10;
    let items: Vec<(String, PathBuf)> = (0..16)
      .map(|i| {
        let a = source(dir.path(), &format!("r{i}"), &text(item));
        (a.uid, a.path)
      })
      .collect();
    for round in 0..10 {
      let p = Prefetch::start(raw.clone(), u64::MAX, 2 * item as u64, 8);
      p.add(
        items
          .iter()
          .map(|(uid, path)| Ahead {
            uid: uid.clone(),
            path: path.clone(),
            expected_size: item as u64,
          })
          .collect(),
      );
      p.settle();
      let made = p.made().len();
      assert!(
        made <= 2,
        "round {round}: {made} payloads of {item} bytes held for a budget of two"
      );
      p.close();
    }
  }

  #[test]
  fn reading_ahead_stops_at_the_budget_and_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions::default();
    // Each payload stored raw is 100 bytes: a budget of 250 holds two.
    let mut raw = opts.compression.clone();
    raw.codec = Codec::None;
    let p = Prefetch::start(raw.clone(), opts.big_file_threshold, 250, 1);
    let items: Vec<Ahead> = (0..5)
      .map(|i| source(dir.path(), &format!("f{i}"), &text(100)))
      .collect();
    let paths: Vec<PathBuf> = items.iter().map(|a| a.path.clone()).collect();
    p.add(items);
    p.settle();
    assert_eq!(
      p.made(),
      vec!["f0", "f1"],
      "nothing past the budget is read"
    );
    // Taking makes room: reading goes on.
    assert!(p.take("f0", &paths[0], 100, &raw).is_some());
    p.settle();
    assert_eq!(p.made(), vec!["f1", "f2"]);
    // Stopped, it does not, and closed, it lets go of what it made.
    p.stop();
    assert!(p.take("f1", &paths[1], 100, &raw).is_some());
    p.settle();
    assert_eq!(p.made(), vec!["f2"]);
    p.close();
    assert!(p.made().is_empty());
  }
}
