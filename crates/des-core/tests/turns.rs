//! Writers of one shard take turns without a lock file in the store, never
//! lose each other's entries, and a refused or dropped write leaves nothing.

use des_core::{ShardFile, ShardWriter, WriterOptions};
use std::path::Path;
use std::sync::{Arc, Barrier};

fn uids(path: &Path) -> Vec<String> {
  let shard = ShardFile::open(path).unwrap();
  let mut out: Vec<String> = shard.index().entries().map(|e| e.uid).collect();
  out.sort();
  out
}

fn names(dir: &Path) -> Vec<String> {
  let mut out: Vec<String> = std::fs::read_dir(dir)
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .collect();
  out.sort();
  out
}

#[test]
fn two_writers_creating_one_shard_at_once_keep_both_entries() {
  for round in 0..20 {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("20240101/0A.des");
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = ["left", "right"]
      .into_iter()
      .map(|uid| {
        let (target, barrier) = (target.clone(), barrier.clone());
        std::thread::spawn(move || {
          let mut w = ShardWriter::append(&target, WriterOptions::default()).unwrap();
          w.add(uid, format!("{uid} {round}").into_bytes(), None)
            .unwrap();
          // Both have looked and found no shard before either finishes.
          barrier.wait();
          w.finish().unwrap()
        })
      })
      .collect();
    for h in handles {
      h.join().unwrap();
    }
    assert_eq!(uids(&target), ["left", "right"], "round {round}");
    let shard = ShardFile::open(&target).unwrap();
    assert_eq!(
      shard.read("left", "_bigFiles").unwrap(),
      format!("left {round}").into_bytes()
    );
    assert_eq!(
      names(target.parent().unwrap()),
      ["0A.des"],
      "nothing but the shard"
    );
  }
}

#[test]
fn a_writer_waiting_for_its_turn_builds_on_the_version_written_meanwhile() {
  let dir = tempfile::tempdir().unwrap();
  let target = dir.path().join("0B.des");
  let mut first = ShardWriter::append(&target, WriterOptions::default()).unwrap();
  first.add("zero", b"0".to_vec(), None).unwrap();
  first.finish().unwrap();
  let mut holder = ShardWriter::append(&target, WriterOptions::default()).unwrap();
  holder.add("one", b"1".to_vec(), None).unwrap();
  let waiter = {
    let target = target.clone();
    std::thread::spawn(move || {
      // Blocks until the holder has renamed its version over the path.
      let mut w = ShardWriter::append(&target, WriterOptions::default()).unwrap();
      w.add("two", b"2".to_vec(), None).unwrap();
      w.finish().unwrap();
    })
  };
  // However far the waiter has got, it cannot have finished before the holder.
  assert_eq!(uids(&target), ["zero"]);
  holder.finish().unwrap();
  waiter.join().unwrap();
  assert_eq!(uids(&target), ["one", "two", "zero"]);
  assert_eq!(names(dir.path()), ["0B.des"], "no .lock beside the shard");
}

#[test]
fn a_dropped_or_refused_writer_leaves_no_folder_and_no_file() {
  let dir = tempfile::tempdir().unwrap();
  let target = dir.path().join("20240102/nested/0C.des");
  let w = ShardWriter::append(&target, WriterOptions::default()).unwrap();
  drop(w);
  assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

  let existing = dir.path().join("20240103/0D.des");
  let mut w = ShardWriter::append(&existing, WriterOptions::default()).unwrap();
  w.add("a", b"a".to_vec(), None).unwrap();
  w.finish().unwrap();
  let before = std::fs::read(&existing).unwrap();
  let mut w = ShardWriter::append(&existing, WriterOptions::default()).unwrap();
  assert_eq!(
    w.add("a", b"again".to_vec(), None).unwrap_err().code(),
    "DES_DUPLICATE"
  );
  drop(w);
  assert_eq!(std::fs::read(&existing).unwrap(), before);
  assert_eq!(names(dir.path()), ["20240103"]);
  assert_eq!(names(&dir.path().join("20240103")), ["0D.des"]);
}

#[cfg(unix)]
#[test]
fn a_reader_of_a_damaged_shard_someone_holds_locked_reports_the_damage_instead_of_waiting_for_ever()
{
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  let mut w = ShardWriter::create(&path, WriterOptions::default()).unwrap();
  w.add("a", b"payload".to_vec(), None).unwrap();
  w.finish().unwrap();
  // A damaged footer, and a lock on the file that is never let go (any reader may take one).
  let mut bytes = std::fs::read(&path).unwrap();
  let at = bytes.len() - 12;
  bytes[at] ^= 0xff;
  std::fs::write(&path, &bytes).unwrap();
  let holder = std::fs::File::open(&path).unwrap();
  holder.lock().unwrap();
  let err = ShardFile::open(&path).err().map(|e| e.code());
  assert_eq!(err, Some("DES_CORRUPT"));
}
