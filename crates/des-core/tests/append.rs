//! Appending in place: an append writes only what it adds, and at every
//! moment, for a reader or after a kill, the shard is the old one or the new
//! one, never a torn one.

use des_core::{
  footer_bytes, verify_file, Codec, CompressionPolicy, DesError, Region, ShardFile, ShardWriter,
  WriterOptions,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

fn opts() -> WriterOptions {
  WriterOptions {
    compression: CompressionPolicy {
      codec: Codec::Zstd,
      ..CompressionPolicy::default()
    },
    ..WriterOptions::default()
  }
}

/// The payload of a uid: derived from it, so any reader can check it; bytes
/// no codec shrinks, so live data outweighs an index as in real shards.
fn payload_of(uid: &str) -> Vec<u8> {
  noise(seed_of(uid), 50 + (seed_of(uid) % 3000) as usize)
}

fn seed_of(uid: &str) -> u32 {
  uid
    .bytes()
    .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
}

fn noise(seed: u32, len: usize) -> Vec<u8> {
  let mut x = seed | 1;
  (0..len)
    .map(|_| {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      x as u8
    })
    .collect()
}

fn append(path: &Path, uids: &[String]) {
  let mut w = ShardWriter::append(path, opts()).unwrap();
  for uid in uids {
    w.add(uid, payload_of(uid), None).unwrap();
  }
  w.finish().unwrap();
}

fn batch(prefix: &str, n: usize) -> Vec<String> {
  (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every entry of the shard reads back as its uid's payload; returns the uids.
fn read_all(path: &Path) -> Result<BTreeSet<String>, DesError> {
  let shard = ShardFile::open(path)?;
  let mut uids = BTreeSet::new();
  for entry in shard.index().entries() {
    let got = shard.read(&entry.uid, "_bigFiles")?;
    assert_eq!(
      got,
      payload_of(&entry.uid),
      "uid {} read back wrong bytes",
      entry.uid
    );
    uids.insert(entry.uid);
  }
  Ok(uids)
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
  std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

#[test]
fn an_append_writes_only_what_it_adds() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("20240101/0A.des");
  append(&path, &batch("old", 400));
  let before = std::fs::read(&path).unwrap();
  #[cfg(unix)]
  let ino = inode(&path);
  let new = batch("new", 3);
  append(&path, &new);
  let after = std::fs::read(&path).unwrap();
  #[cfg(unix)]
  assert_eq!(
    inode(&path),
    ino,
    "the shard was rewritten, not appended to"
  );
  assert_eq!(&after[..before.len()], &before[..], "an old byte changed");
  let added: usize = new.iter().map(|u| payload_of(u).len()).sum();
  let index = ShardFile::open(&path).unwrap().index().index_size() as usize;
  // New payloads (at most their size: zstd or stored raw), the new index,
  // the footer and at most a page of padding.
  assert!(
    after.len() - before.len() <= added + 64 * 3 + index + 12 + 4096,
    "grew by {} for {added} bytes added",
    after.len() - before.len()
  );
  assert_eq!(read_all(&path).unwrap().len(), 403);
  let report = verify_file(&path, None).unwrap();
  assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A shard before and after one append in place: its bytes both times and
/// where its old index starts.
struct Appended {
  old: Vec<u8>,
  old_index_at: u64,
  new: Vec<u8>,
}

/// Writes `old_n` entries to `path`, then appends `new_n` more named `tag-N`.
fn appended(path: &Path, old_n: usize, tag: &str, new_n: usize) -> Appended {
  append(path, &batch("old", old_n));
  let old = std::fs::read(path).unwrap();
  let old_index_at = ShardFile::open(path).unwrap().index().data_end();
  append(path, &batch(tag, new_n));
  let new = std::fs::read(path).unwrap();
  assert_eq!(
    &new[..old.len() - 12],
    &old[..old.len() - 12],
    "appended in place"
  );
  Appended {
    old,
    old_index_at,
    new,
  }
}

impl Appended {
  /// The file the append leaves when it has written `filled` bytes of its
  /// new region below the pending footer, which names the old index from
  /// just past where the new shard ends.
  fn unfinished(&self, filled: usize) -> Vec<u8> {
    let mut bytes = self.new[..self.old.len() + filled].to_vec();
    bytes.resize(self.new.len(), 0);
    bytes.extend_from_slice(&footer_bytes(self.new.len() as u64 - self.old_index_at));
    bytes
  }
}

#[test]
fn every_state_of_an_append_reads_as_the_old_or_the_new_shard() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  let shard = appended(&path, 20, "new", 5);
  let (old, new) = (&shard.old, &shard.new);
  let new_uids = read_all(&path).unwrap();
  let probe = dir.path().join("probe.des");
  std::fs::write(&probe, old).unwrap();
  let old_uids = read_all(&probe).unwrap();
  assert!(new_uids.len() > old_uids.len());
  // Steps 1 and 2, every byte of the new region written or not, in order,
  // and step 3's footer written below the pending one: the old shard.
  for filled in 0..=(new.len() - old.len()) {
    std::fs::write(&probe, shard.unfinished(filled)).unwrap();
    assert_eq!(
      read_all(&probe).unwrap(),
      old_uids,
      "{filled} bytes written"
    );
    let shard = ShardFile::open(&probe).unwrap();
    assert_eq!(
      shard.index().unfinished_append() as usize,
      new.len() - old.len()
    );
  }
  // Cut at the new end: the new shard.
  std::fs::write(&probe, new).unwrap();
  assert_eq!(read_all(&probe).unwrap(), new_uids);
}

#[test]
fn a_last_footer_changed_to_name_the_old_index_is_damage_not_the_old_shard() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  let shard = appended(&path, 20, "new", 5);
  // Two bytes of the last footer: its index now runs from the old index to
  // the footer, the shape of an append under way, but what lies below the
  // footer is the new index's end, not the slot an append leaves.
  let mut tampered = shard.new.clone();
  let at = tampered.len() - 12;
  let size = (at as u64 - shard.old_index_at).to_le_bytes();
  tampered[at + 4..].copy_from_slice(&size);
  let probe = dir.path().join("probe.des");
  std::fs::write(&probe, &tampered).unwrap();
  match read_all(&probe) {
    Err(DesError::Corrupt(_)) => {}
    other => panic!("read as {other:?}"),
  }
}

#[test]
fn an_interrupted_append_is_reported_and_cut_off_by_the_next() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  let shard = appended(&path, 20, "lost", 5);
  let old = &shard.old;
  std::fs::write(&path, shard.unfinished(100)).unwrap();

  let report = verify_file(&path, None).unwrap();
  assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
  assert_eq!(report.problems[0].region, Region::Footer);
  assert!(report.problems[0]
    .message
    .contains("append to this shard was interrupted"));
  assert_eq!(report.ok, 20, "the old entries still check out");

  append(&path, &batch("next", 3));
  let after = std::fs::read(&path).unwrap();
  assert_eq!(&after[..old.len()], &old[..]);
  let uids = read_all(&path).unwrap();
  assert_eq!(uids.len(), 23);
  assert!(!uids.iter().any(|u| u.starts_with("lost")));
  let report = verify_file(&path, None).unwrap();
  assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn readers_during_appends_see_the_old_or_the_new_shard() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  append(&path, &batch("first", 10));
  let done = AtomicBool::new(false);
  std::thread::scope(|s| {
    s.spawn(|| {
      for b in 0..150 {
        append(&path, &batch(&format!("b{b}"), 4));
      }
      done.store(true, Ordering::Release);
    });
    let mut reads = 0;
    let mut seen = 0;
    while !done.load(Ordering::Acquire) {
      let uids = match read_all(&path) {
        Ok(uids) => uids,
        // The shard grew after its index was read: a reader opens it again
        // (as the store does).
        Err(DesError::Changed(_)) => continue,
        Err(e) => panic!("read {reads}: {e}"),
      };
      assert!(uids.len() >= seen, "entries went missing");
      seen = uids.len();
      reads += 1;
    }
    assert!(reads > 0);
  });
  assert_eq!(read_all(&path).unwrap().len(), 10 + 150 * 4);
}

/// Run by `a_kill_at_any_write_leaves_the_old_or_the_new_shard` under strace:
/// one append of the batch DES_APPEND_BATCH to the shard DES_APPEND_ONCE.
#[test]
fn child_appends_once() {
  let Ok(path) = std::env::var("DES_APPEND_ONCE") else {
    return;
  };
  append(
    Path::new(&path),
    &batch(&std::env::var("DES_APPEND_BATCH").unwrap(), 20),
  );
}

/// Runs one append of the batch `name` in a child process that strace kills
/// as it enters its `n`th `call`; true if the append got through.
fn append_killed_at(path: &Path, call: &str, n: usize, name: &str) -> bool {
  std::process::Command::new("strace")
    .args([
      "-f",
      "-qq",
      "-o",
      "/dev/null",
      "-e",
      &format!("trace={call}"),
    ])
    .arg("-e")
    .arg(format!("inject={call}:signal=KILL:when={n}"))
    .arg(std::env::current_exe().unwrap())
    .args(["--exact", "child_appends_once", "--test-threads=1"])
    .env("DES_APPEND_ONCE", path)
    .env("DES_APPEND_BATCH", name)
    .stdout(std::process::Stdio::null())
    .status()
    .unwrap()
    .success()
}

/// strace kills the appending process as it enters its Nth call of one kind
/// (every write in place, sync, and the cut-off of an interrupted append),
/// for every N until an append gets through: each time the shard reads as
/// the old one or the new one, and the next append completes it.
#[test]
fn a_kill_at_any_write_leaves_the_old_or_the_new_shard() {
  if std::process::Command::new("strace")
    .arg("-V")
    .output()
    .is_err()
  {
    // scripts/test.sh installs strace; a bare `cargo test` elsewhere may lack it.
    eprintln!("SKIPPED: strace is not installed");
    return;
  }
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  append(&path, &batch("first", 5));
  let mut expect = read_all(&path).unwrap();
  let (mut kills, mut unfinished_seen) = (0, 0);
  for call in ["pwrite64", "fdatasync", "ftruncate"] {
    for n in 1.. {
      if call == "ftruncate" {
        // Only an interrupted append is cut off: leave one (killed after step 1).
        assert!(!append_killed_at(&path, "pwrite64", 2, &format!("cut-{n}")));
      }
      let name = format!("{call}-{n}");
      let finished = append_killed_at(&path, call, n, &name);
      let shard = ShardFile::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
      unfinished_seen += (shard.index().unfinished_append() > 0) as usize;
      let uids = read_all(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
      let mut with_batch = expect.clone();
      with_batch.extend(batch(&name, 20));
      if uids == with_batch {
        expect = with_batch;
      } else {
        assert_eq!(uids, expect, "{name}: neither the old nor the new shard");
      }
      if finished {
        assert_eq!(
          uids, expect,
          "{name}: the append returned, its batch is missing"
        );
        break;
      }
      kills += 1;
      assert!(n < 20, "{call}: still killed after {n} calls");
    }
  }
  eprintln!("{kills} kills, {unfinished_seen} left an unfinished append");
  assert!(kills >= 6, "only {kills} kills");
  assert!(
    unfinished_seen >= 3,
    "only {unfinished_seen} kills fell inside an append"
  );
  append(&path, &batch("last", 2));
  let report = verify_file(&path, None).unwrap();
  assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn an_append_that_adds_nothing_leaves_the_shard_as_it_was() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  append(&path, &batch("old", 30));
  let before = std::fs::read(&path).unwrap();
  ShardWriter::append(&path, opts())
    .unwrap()
    .finish()
    .unwrap();
  assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn old_indexes_never_outweigh_the_live_bytes() {
  // Many small entries: each append in place leaves an index much bigger
  // than what it adds, so the shard is compacted now and then.
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  let tiny = |uid: &str| noise(seed_of(uid), 100);
  let mut w = ShardWriter::append(&path, opts()).unwrap();
  for i in 0..2000 {
    w.add(&format!("t-{i}"), tiny(&format!("t-{i}")), None)
      .unwrap();
  }
  w.finish().unwrap();
  // Which way each append went shows in the inode (Unix only).
  #[cfg(unix)]
  let (mut in_place, mut compacted) = (0, 0);
  for round in 0..60 {
    #[cfg(unix)]
    let ino = inode(&path);
    let mut w = ShardWriter::append(&path, opts()).unwrap();
    w.add(
      &format!("late-{round}"),
      tiny(&format!("late-{round}")),
      None,
    )
    .unwrap();
    w.finish().unwrap();
    #[cfg(unix)]
    if inode(&path) == ino {
      in_place += 1;
    } else {
      compacted += 1;
    }
    let shard = ShardFile::open(&path).unwrap();
    let live: u64 = shard
      .index()
      .entries()
      .map(|e| e.stored_size())
      .sum::<u64>()
      + shard.index().index_size()
      + 20;
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
      size <= 3 * live,
      "round {round}: {size} bytes for {live} live"
    );
    for entry in shard.index().entries() {
      assert_eq!(
        shard.read(&entry.uid, "_bigFiles").unwrap(),
        tiny(&entry.uid)
      );
    }
  }
  #[cfg(unix)]
  assert!(
    in_place > 0 && compacted > 0,
    "{in_place} in place, {compacted} compacted"
  );
  let report = verify_file(&path, None).unwrap();
  assert!(report.problems.is_empty(), "{:?}", report.problems);
}

// A sparse file written at an offset: Unix's write_all_at.
#[cfg(unix)]
#[test]
fn a_huge_unfinished_append_reads_only_the_old_index_and_is_cut_off() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  append(&path, &batch("old", 20));
  let old_len = std::fs::metadata(&path).unwrap().len();
  let old_index_at = ShardFile::open(&path).unwrap().index().data_end();
  // Step 1 of an append of 5 GiB, killed there (a sparse file): its section
  // is larger than any index this reader accepts, its old index is not.
  let footer_at = old_len + (5 << 30);
  {
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(
      &file,
      &footer_bytes(footer_at - old_index_at),
      footer_at,
    )
    .unwrap();
  }
  let shard = ShardFile::open(&path).unwrap();
  assert_eq!(shard.index().unfinished_append(), 5 << 30);
  assert_eq!(read_all(&path).unwrap().len(), 20);
  append(&path, &batch("next", 2));
  assert!(std::fs::metadata(&path).unwrap().len() < old_len + 64 * 1024);
  assert_eq!(read_all(&path).unwrap().len(), 22);
}

#[cfg(unix)]
#[test]
fn an_index_read_during_an_append_is_known_stale_once_it_ends() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  let shard = appended(&path, 10, "new", 3);
  let (old, new) = (&shard.old, &shard.new);
  std::fs::write(&path, shard.unfinished(new.len() - old.len())).unwrap();
  // A reader opens the shard while the append is at step 2: the old shard.
  let during = ShardFile::open(&path).unwrap();
  assert_eq!(during.index().len(), 10);
  assert!(during.reopen().is_ok());
  // Step 3 (the footer below the pending one, then the cut): that index is
  // no longer current, so its reader reads the new one.
  // Modification times are put back: the size alone must tell (where
  // timestamps are coarse, two writes can share one).
  let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
  let mtime = file.metadata().unwrap().modified().unwrap();
  std::os::unix::fs::FileExt::write_all_at(&file, &new[new.len() - 12..], new.len() as u64 - 12)
    .unwrap();
  file.set_modified(mtime).unwrap();
  assert!(
    during.reopen().is_ok(),
    "the pending footer still ends the file"
  );
  file.set_len(new.len() as u64).unwrap();
  file.set_modified(mtime).unwrap();
  assert!(matches!(during.reopen(), Err(DesError::Changed(_))));
  assert_eq!(ShardFile::open(&path).unwrap().index().len(), 13);
}

#[test]
fn a_shard_put_in_its_place_meanwhile_is_not_written_into() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  append(&path, &batch("ours", 10));
  let other = dir.path().join("other.des");
  append(&other, &batch("theirs", 10));
  let theirs = std::fs::read(&other).unwrap();
  let mut w = ShardWriter::append(&path, opts()).unwrap();
  w.add("late", payload_of("late"), None).unwrap();
  // Outside the writers' turns (a restore, a manual mv).
  std::fs::rename(&other, &path).unwrap();
  let err = w.finish().unwrap_err();
  assert!(matches!(err, DesError::Changed(_)), "{err}");
  assert_eq!(std::fs::read(&path).unwrap(), theirs);
}

#[cfg(unix)]
#[test]
fn a_shard_that_is_a_symlink_is_written_where_it_points_even_when_compacted() {
  let tiny = |uid: &str| uid.as_bytes().to_vec();
  let add_one = |path: &Path, uid: &str| {
    let mut w = ShardWriter::append(path, opts()).unwrap();
    w.add(uid, tiny(uid), None).unwrap();
    w.finish().unwrap();
  };
  let dir = tempfile::tempdir().unwrap();
  let real = dir.path().join("disk2/0A.des");
  add_one(&real, "first");
  let link = dir.path().join("20240101/0A.des");
  std::fs::create_dir_all(link.parent().unwrap()).unwrap();
  std::os::unix::fs::symlink(&real, &link).unwrap();
  // Entries of a few bytes: the old indexes soon outweigh them, and the
  // shard is compacted into a new file renamed into place.
  let uids: Vec<String> = (0..4).map(|i| format!("more-{i}")).collect();
  for uid in &uids {
    add_one(&link, uid);
  }
  assert!(
    std::fs::symlink_metadata(&link)
      .unwrap()
      .file_type()
      .is_symlink(),
    "the link was replaced by a file"
  );
  let shard = ShardFile::open(&real).unwrap();
  for uid in uids.iter().map(String::as_str).chain(["first"]) {
    let got = shard.read(uid, "_bigFiles").unwrap();
    assert_eq!(got, tiny(uid), "{uid} in the file linked to");
  }
}

/// An append whose writer holds its turn past the readers' wait (a large
/// one, or syncs that take long) is under way: `verify` checks the shard as
/// it was and does not call the append interrupted; once the writer is gone
/// without finishing, it does.
#[cfg(unix)]
#[test]
fn an_append_under_way_past_the_wait_is_not_reported_interrupted() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  append(&path, &batch("old", 5));
  let mut w = ShardWriter::append(&path, opts()).unwrap();
  w.add("slow", payload_of("slow"), None).unwrap();
  // Steps 1 and 2 written, the turn held: as while a group's syncs run.
  let staged = w.stage().unwrap();
  let report = verify_file(&path, None).unwrap();
  assert!(report.problems.is_empty(), "{:?}", report.problems);
  assert_eq!(report.ok, 5, "the shard as it was checks out");
  let results = des_core::commit(vec![staged]);
  assert!(results.into_iter().all(|r| r.is_ok()));
  let report = verify_file(&path, None).unwrap();
  assert!(report.problems.is_empty(), "{:?}", report.problems);
  assert_eq!(report.ok, 6);
}

#[test]
fn staged_appends_read_as_before_until_their_group_is_committed() {
  let dir = tempfile::tempdir().unwrap();
  let paths: Vec<_> = (0..10)
    .map(|i| dir.path().join(format!("{i:02X}.des")))
    .collect();
  for p in &paths {
    append(p, &batch("old", 5));
  }
  let mut group = Vec::new();
  for (i, p) in paths.iter().enumerate() {
    let mut w = ShardWriter::append(p, opts()).unwrap();
    w.add(&format!("new-{i}"), payload_of(&format!("new-{i}")), None)
      .unwrap();
    group.push(w.stage().unwrap());
  }
  // Staged: written below a footer that still names the old index.
  for p in &paths {
    assert_eq!(read_all(p).unwrap().len(), 5);
  }
  let results = des_core::commit(group);
  assert_eq!(results.len(), 10);
  for (i, (p, r)) in paths.iter().zip(results).enumerate() {
    assert_eq!(r.unwrap().path, *p);
    assert!(read_all(p).unwrap().contains(&format!("new-{i}")));
    let report = verify_file(p, None).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
  }
}

#[test]
fn a_staged_group_dropped_uncommitted_leaves_every_shard_as_it_was() {
  let dir = tempfile::tempdir().unwrap();
  let old = dir.path().join("0A.des");
  append(&old, &batch("old", 5));
  let before = std::fs::read(&old).unwrap();
  let fresh = dir.path().join("new/0B.des");
  let mut group = Vec::new();
  let mut w = ShardWriter::append(&old, opts()).unwrap();
  w.add("late", payload_of("late"), None).unwrap();
  group.push(w.stage().unwrap());
  let mut w = ShardWriter::create(&fresh, opts()).unwrap();
  w.add("first", payload_of("first"), None).unwrap();
  group.push(w.stage().unwrap());
  drop(group);
  // The append's bytes are cut off by the next writer; the new shard (a
  // replacing create, so deferred) never appeared, nor its folder's temp file.
  assert_eq!(read_all(&old).unwrap().len(), 5);
  append(&old, &batch("next", 1));
  assert_eq!(&std::fs::read(&old).unwrap()[..before.len()], &before[..]);
  assert!(!fresh.exists());
  assert_eq!(
    std::fs::read_dir(dir.path().join("new"))
      .map(|d| d.count())
      .unwrap_or(0),
    0
  );
}

#[test]
fn a_writer_that_loses_the_race_to_create_a_shard_adds_to_it_only_within_its_limit() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0A.des");
  let start = |uids: &[String], limit: Option<u64>| {
    let mut w = ShardWriter::append(&path, opts()).unwrap();
    w.set_size_limit(limit);
    for uid in uids {
      w.add(uid, payload_of(uid), None).unwrap();
    }
    w
  };
  // Both start while there is no shard; the first to finish creates it.
  let winner = start(&batch("a", 5), None);
  let no_room = start(&batch("b", 5), Some(4096));
  let room = start(&batch("c", 5), Some(1 << 20));
  winner.finish().unwrap();
  let created = std::fs::read(&path).unwrap();
  let err = no_room.finish().unwrap_err();
  assert!(matches!(err, DesError::Changed(_)), "{err}");
  assert_eq!(
    std::fs::read(&path).unwrap(),
    created,
    "nothing of the loser was added"
  );
  room.finish().unwrap();
  let uids = read_all(&path).unwrap();
  assert_eq!(uids.len(), 10);
  assert!(uids.iter().all(|u| !u.starts_with('b')));
}

#[test]
fn a_writer_that_loses_the_race_skips_the_uids_the_winner_holds_when_told_to() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("0B.des");
  let start = |uids: &[&str], skip: bool| {
    let mut o = opts();
    o.skip_existing = skip;
    let mut w = ShardWriter::append(&path, o).unwrap();
    for uid in uids {
      w.add(uid, format!("{uid} from {skip}").into_bytes(), None)
        .unwrap();
    }
    w
  };
  // Both start while there is no shard; both have "same".
  let winner = start(&["same", "w"], false);
  let refusing = start(&["same", "r"], false);
  let skipping = start(&["same", "s"], true);
  winner.finish().unwrap();
  let created = std::fs::read(&path).unwrap();
  let err = refusing.finish().unwrap_err();
  assert!(
    matches!(err, DesError::Duplicate(ref u) if u == "same"),
    "{err}"
  );
  assert_eq!(
    std::fs::read(&path).unwrap(),
    created,
    "nothing of the refused writer was added"
  );
  let summary = skipping.finish().unwrap();
  assert_eq!(summary.added, 1, "only the uid the winner did not hold");
  assert_eq!(
    summary.skipped,
    vec!["same".to_string()],
    "the uid it skipped there is named, so its run does not report it as packed"
  );
  let shard = des_core::ShardFile::open(&path).unwrap();
  assert_eq!(
    shard.read("same", "_bigFiles").unwrap(),
    b"same from false".to_vec(),
    "the winner's bytes stay"
  );
  assert_eq!(
    shard.read("s", "_bigFiles").unwrap(),
    b"s from true".to_vec()
  );
  assert!(shard.read("r", "_bigFiles").is_err());
}
