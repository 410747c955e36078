//! Property-based round trips: whatever the writer writes, the reader returns byte-exact.

use des_core::{index_from_tail, Codec, CompressionPolicy, ShardFile, ShardWriter, WriterOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Item {
  uid: String,
  data: Vec<u8>,
  meta: BTreeMap<String, String>,
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
  prop_oneof![
    proptest::collection::vec(any::<u8>(), 0..2048),
    // Compressible: a short pattern repeated.
    (proptest::collection::vec(any::<u8>(), 1..8), 0usize..4000).prop_map(|(pat, n)| pat
      .iter()
      .cycle()
      .take(n)
      .copied()
      .collect()),
  ]
}

fn items() -> impl Strategy<Value = Vec<Item>> {
  proptest::collection::btree_map(
    "[a-zA-Z0-9żółć/._-]{0,24}",
    (
      payload(),
      proptest::collection::btree_map("[a-zé]{1,6}", "[ -~ąę]{0,10}", 0..3),
    ),
    1..24,
  )
  .prop_map(|m| {
    m.into_iter()
      .map(|(uid, (data, meta))| Item { uid, data, meta })
      .collect()
  })
}

fn codec() -> impl Strategy<Value = Codec> {
  prop_oneof![Just(Codec::None), Just(Codec::Zstd), Just(Codec::Lz4)]
}

proptest! {
  #![proptest_config(ProptestConfig::with_cases(64))]

  #[test]
  fn written_shards_read_back_byte_exact(items in items(), codec in codec(), threshold in prop_oneof![Just(u64::MAX), 0u64..3000]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("20240101/0A.des");
    let opts = WriterOptions {
      compression: CompressionPolicy { codec, ..CompressionPolicy::default() },
      big_file_threshold: threshold,
      ..WriterOptions::default()
    };
    let mut w = ShardWriter::create(&path, opts).unwrap();
    for it in &items {
      let meta = serde_json::to_string(&it.meta).unwrap();
      w.add(&it.uid, it.data.clone(), Some(&meta)).unwrap();
    }
    let summary = w.finish().unwrap();
    prop_assert_eq!(summary.entries as usize, items.len());

    let shard = ShardFile::open(&path).unwrap();
    prop_assert_eq!(shard.index().len(), items.len());
    for it in &items {
      prop_assert_eq!(&shard.read(&it.uid, "_bigFiles").unwrap(), &it.data);
      let entry = shard.index().get(&it.uid).unwrap();
      let meta: BTreeMap<String, String> = serde_json::from_str(entry.meta_json()).unwrap();
      prop_assert_eq!(&meta, &it.meta);
      prop_assert!(entry.meta.is_ascii(), "meta is stored ASCII-escaped");
      prop_assert_eq!(entry.is_bigfile(), it.data.len() as u64 > threshold);
    }
    // The same index parses from the tail bytes alone.
    let bytes = std::fs::read(&path).unwrap();
    let tail = &bytes[bytes.len() - shard.index().index_size() as usize - 12..];
    let from_tail = index_from_tail(tail, bytes.len() as u64).unwrap();
    prop_assert_eq!(from_tail.len(), items.len());
  }

  #[test]
  fn appending_keeps_old_entries_and_adds_new_ones(first in items(), second in items()) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.des");
    let mut w = ShardWriter::create(&path, WriterOptions::default()).unwrap();
    for it in &first { w.add(&it.uid, it.data.clone(), None).unwrap(); }
    w.finish().unwrap();
    let second: Vec<Item> = second.into_iter().filter(|s| !first.iter().any(|f| f.uid == s.uid)).collect();
    let mut w = ShardWriter::append(&path, WriterOptions::default()).unwrap();
    for it in &second { w.add(&it.uid, it.data.clone(), None).unwrap(); }
    w.finish().unwrap();
    let shard = ShardFile::open(&path).unwrap();
    prop_assert_eq!(shard.index().len(), first.len() + second.len());
    for it in first.iter().chain(second.iter()) {
      prop_assert_eq!(&shard.read(&it.uid, "_bigFiles").unwrap(), &it.data);
    }
  }
}

#[test]
fn a_writer_dropped_before_finish_leaves_no_file() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("x.des");
  let mut w = ShardWriter::create(&path, WriterOptions::default()).unwrap();
  w.add("a", vec![1; 100], None).unwrap();
  drop(w);
  let left: Vec<_> = std::fs::read_dir(dir.path())
    .unwrap()
    .map(|e| e.unwrap().file_name())
    .collect();
  assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_failed_append_leaves_the_old_shard_intact() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("x.des");
  let mut w = ShardWriter::create(&path, WriterOptions::default()).unwrap();
  w.add("a", b"old".to_vec(), None).unwrap();
  w.finish().unwrap();
  let before = std::fs::read(&path).unwrap();
  let mut w = ShardWriter::append(&path, WriterOptions::default()).unwrap();
  w.add("b", b"new".to_vec(), None).unwrap();
  let err = w.add("a", b"again".to_vec(), None).unwrap_err();
  assert_eq!(err.code(), "DES_DUPLICATE");
  drop(w);
  assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn replace_swaps_an_entry_on_append() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("x.des");
  let mut w = ShardWriter::create(&path, WriterOptions::default()).unwrap();
  w.add("a", b"old".to_vec(), None).unwrap();
  w.finish().unwrap();
  let opts = WriterOptions {
    replace: true,
    ..WriterOptions::default()
  };
  let mut w = ShardWriter::append(&path, opts).unwrap();
  w.add("a", b"new".to_vec(), None).unwrap();
  w.finish().unwrap();
  let shard = ShardFile::open(&path).unwrap();
  assert_eq!(shard.index().len(), 1);
  assert_eq!(shard.read("a", "_bigFiles").unwrap(), b"new");
}

#[test]
fn skip_extensions_and_incompressible_payloads_are_stored_raw() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("x.des");
  let mut w = ShardWriter::create(&path, WriterOptions::default()).unwrap();
  let text = b"hello hello hello hello hello hello hello hello".repeat(20);
  w.add("scan.JPG", text.clone(), None).unwrap();
  w.add("doc.txt", text.clone(), None).unwrap();
  w.add("noise", (0..=255u8).collect(), None).unwrap();
  w.finish().unwrap();
  let shard = ShardFile::open(&path).unwrap();
  let codec = |uid: &str| match shard.index().get(uid).unwrap().body {
    des_core::Body::Inline { codec, .. } => codec,
    _ => unreachable!(),
  };
  assert_eq!(codec("scan.JPG"), Codec::None);
  assert_eq!(codec("doc.txt"), Codec::Zstd);
  assert_eq!(codec("noise"), Codec::None);
}

#[test]
fn meta_is_written_as_the_reference_writes_it() {
  assert_eq!(des_core::canonical_meta("{}").unwrap(), "");
  assert_eq!(
    des_core::canonical_meta(r#"{ "b": 1, "a": "łódź 😀" }"#).unwrap(),
    r#"{"b":1,"a":"\u0142\u00f3d\u017a \ud83d\ude00"}"#
  );
  assert_eq!(
    des_core::canonical_meta("[1]").unwrap_err().code(),
    "DES_BAD_ARG"
  );
}

#[cfg(unix)]
#[test]
fn shards_and_bigfiles_are_readable_by_other_users() {
  use std::os::unix::fs::PermissionsExt;
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("x.des");
  let opts = WriterOptions {
    big_file_threshold: 10,
    ..WriterOptions::default()
  };
  let mut w = ShardWriter::create(&path, opts).unwrap();
  w.add("big", vec![7; 100], None).unwrap();
  w.finish().unwrap();
  let mode = std::fs::metadata(&path).unwrap().permissions().mode();
  assert_eq!(mode & 0o044, 0o044, "shard mode {mode:o}");
  let big = std::fs::read_dir(dir.path().join("_bigFiles"))
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
  let mode = big.metadata().unwrap().permissions().mode();
  assert_eq!(mode & 0o044, 0o044, "BigFile mode {mode:o}");
}

#[test]
fn a_shard_replaced_by_an_append_is_reported_as_changed_not_misread() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("x.des");
  let mut w = ShardWriter::create(&path, WriterOptions::default()).unwrap();
  w.add("a", b"first".to_vec(), None).unwrap();
  w.finish().unwrap();
  let old = ShardFile::open(&path).unwrap();
  assert_eq!(old.read("a", "_bigFiles").unwrap(), b"first");
  let mut w = ShardWriter::append(&path, WriterOptions::default()).unwrap();
  w.add("b", b"second".to_vec(), None).unwrap();
  w.finish().unwrap();
  let err = old.read("a", "_bigFiles").unwrap_err();
  assert_eq!(err.code(), "DES_CHANGED", "{err}");
  let new = ShardFile::open(&path).unwrap();
  assert_eq!(new.read("a", "_bigFiles").unwrap(), b"first");
  assert_eq!(new.read("b", "_bigFiles").unwrap(), b"second");
}

#[test]
fn the_summary_counts_bigfile_bytes_written_once_and_apart_from_the_shard_bytes() {
  let dir = tempfile::tempdir().unwrap();
  let opts = WriterOptions {
    big_file_threshold: 10,
    ..WriterOptions::default()
  };
  let mut w = ShardWriter::create(dir.path().join("a.des"), opts.clone()).unwrap();
  w.add("big", vec![7; 100], None).unwrap();
  w.add("copy", vec![7; 100], None).unwrap();
  w.add("other", vec![8; 50], None).unwrap();
  w.add("small", vec![1; 5], None).unwrap();
  let first = w.finish().unwrap();
  assert_eq!(first.bytes_in, 255);
  // Inline bytes only: the shard's data size, not the BigFiles.
  assert_eq!(first.bytes_stored, 5);
  // The copy has the same bytes: written once.
  assert_eq!(first.bigfile_bytes_written, 150);
  assert_eq!(first.bigfiles, 3);

  // Another shard naming the same BigFile keeps it, writing nothing.
  let mut w = ShardWriter::create(dir.path().join("b.des"), opts.clone()).unwrap();
  w.add("again", vec![7; 100], None).unwrap();
  let second = w.finish().unwrap();
  assert_eq!(second.bytes_in, 100);
  assert_eq!(second.bigfile_bytes_written, 0);

  // One of the right size but other bytes is written over, and counted.
  let big = std::fs::read_dir(dir.path().join("_bigFiles"))
    .unwrap()
    .map(|e| e.unwrap().path())
    .find(|p| std::fs::metadata(p).unwrap().len() == 100)
    .unwrap();
  std::fs::write(&big, vec![9; 100]).unwrap();
  let mut w = ShardWriter::create(dir.path().join("c.des"), opts).unwrap();
  w.add("mended", vec![7; 100], None).unwrap();
  assert_eq!(w.finish().unwrap().bigfile_bytes_written, 100);
}
