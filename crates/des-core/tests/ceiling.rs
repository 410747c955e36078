//! The payload ceiling is process-wide, so its test has a process of its own.

use des_core::{Codec, CompressionPolicy, ShardFile, ShardWriter, WriterOptions};

#[test]
fn the_payload_ceiling_refuses_a_large_entry_before_reading_it() {
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
