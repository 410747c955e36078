//! The payload ceiling is process-wide, so its tests have a process of their
//! own, and take turns on it.

use des_core::{
  encode_index, footer_bytes, header_bytes, verify_file, Body, Codec, CompressionPolicy, Entry,
  ShardFile, ShardWriter, WriterOptions,
};
use std::sync::Mutex;

static CEILING: Mutex<()> = Mutex::new(());

#[test]
fn the_payload_ceiling_refuses_a_large_entry_before_reading_it() {
  let _turn = CEILING.lock().unwrap_or_else(|e| e.into_inner());
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("c.des");
  let mut w = ShardWriter::create(
    &path,
    WriterOptions {
      compression: CompressionPolicy {
        codec: Codec::Zstd,
        ..CompressionPolicy::default()
      },
      ..WriterOptions::default()
    },
  )
  .unwrap();
  w.add("big", vec![7u8; 2000], None).unwrap();
  w.finish().unwrap();
  let shard = ShardFile::open(&path).unwrap();
  let before = des_core::payload_ceiling();
  des_core::set_payload_ceiling(1000);
  let err = shard.read("big", "_bigFiles").unwrap_err();
  des_core::set_payload_ceiling(before);
  assert!(err.to_string().contains("payload ceiling of 1000"), "{err}");
  assert_eq!(shard.read("big", "_bigFiles").unwrap(), vec![7u8; 2000]);
}

#[test]
fn verify_holds_at_most_a_ceiling_of_overlapping_entries_bytes_at_once() {
  let _turn = CEILING.lock().unwrap_or_else(|e| e.into_inner());
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("overlaps.des");
  // Ten entries of 1000 bytes over one range, each starting a byte later.
  let data: Vec<u8> = (0..1009u32).map(|i| (i % 251) as u8).collect();
  let entries: Vec<Entry> = (0..10u64)
    .map(|i| {
      let stored = &data[i as usize..i as usize + 1000];
      Entry {
        uid: format!("e{i}"),
        body: Body::Inline {
          offset: 8 + i,
          length: 1000,
          codec: Codec::None,
          size: 1000,
          crc: Some(des_core::crc32c(stored)),
        },
        meta: String::new(),
      }
    })
    .collect();
  let mut bytes = header_bytes().to_vec();
  bytes.extend_from_slice(&data);
  let index = encode_index(&entries, &[]).unwrap();
  bytes.extend_from_slice(&index);
  bytes.extend_from_slice(&footer_bytes(index.len() as u64));
  std::fs::write(&path, bytes).unwrap();
  let before = des_core::payload_ceiling();
  des_core::set_payload_ceiling(2500);
  let report = verify_file(&path, Some("_bigFiles"));
  des_core::set_payload_ceiling(before);
  let report = report.unwrap();
  // Two held at once (2000 bytes); the other eight not decoded, each said so.
  assert_eq!(report.ok, 2);
  let not_decoded = report
    .problems
    .iter()
    .filter(|p| p.message.contains("not decoded"))
    .count();
  assert_eq!(not_decoded, 8, "{:?}", report.problems);
  assert!(report
    .problems
    .iter()
    .any(|p| p.message.contains("overlaps")));
}
