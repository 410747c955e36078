//! Damaged bytes never panic, hang or allocate by an untrusted length: every
//! truncation of a real shard, and every flipped index or footer byte of a
//! shard written here, is refused with a clear error.

use des_core::{index_from_tail, ShardFile, ShardIndex};
use std::path::PathBuf;

fn golden(name: &str) -> Vec<u8> {
  let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    .join("../../fixtures/golden/shards")
    .join(name);
  std::fs::read(p).unwrap()
}

fn open_bytes(bytes: &[u8]) -> Result<(), des_core::DesError> {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("s.des");
  std::fs::write(&path, bytes).unwrap();
  let shard = ShardFile::open(&path)?;
  for entry in shard.index().entries() {
    let _ = shard.read_entry(&entry, "_bigFiles");
  }
  Ok(())
}

#[test]
fn every_truncation_of_a_shard_is_refused_cleanly() {
  let bytes = golden("v1-mixed-1.des");
  // Every length near the ends (header, index, footer), a stride through the data.
  let lengths = (0..bytes.len()).filter(|&l| l < 64 || l + 2500 > bytes.len() || l % 97 == 0);
  for len in lengths {
    let err = open_bytes(&bytes[..len]).expect_err("a truncated shard must be refused");
    assert!(!err.to_string().is_empty());
    assert_eq!(err.code(), "DES_CORRUPT", "{len}: {err}");
    let _ = index_from_tail(&bytes[len..], bytes.len() as u64);
  }
}

#[test]
fn byte_flips_in_the_index_and_footer_of_a_shard_written_here_are_refused() {
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("w.des");
  let mut w = des_core::ShardWriter::create(&path, des_core::WriterOptions::default()).unwrap();
  for i in 0..20 {
    w.add(
      &format!("doc-{i}"),
      vec![b'x'; 100 + i * 10],
      Some(r#"{"n":1}"#),
    )
    .unwrap();
  }
  w.finish().unwrap();
  let bytes = std::fs::read(&path).unwrap();
  let data_end = ShardFile::open(&path).unwrap().index().data_end() as usize;
  for at in data_end..bytes.len() {
    for flip in [0x01u8, 0x80, 0xff] {
      let mut b = bytes.clone();
      b[at] ^= flip;
      let err = open_bytes(&b).expect_err("a flipped index or footer must be refused");
      assert_eq!(err.code(), "DES_CORRUPT", "byte {at} ^ {flip:#04x}: {err}");
    }
  }
}

#[test]
fn a_huge_entry_count_is_refused_before_allocating() {
  let mut raw = u32::MAX.to_le_bytes().to_vec();
  raw.extend_from_slice(&[0u8; 40]);
  let err = ShardIndex::parse(raw, 2, 100).unwrap_err();
  assert_eq!(err.code(), "DES_CORRUPT");
  assert!(err.to_string().contains("claims"), "{err}");
}

#[test]
fn a_lying_uncompressed_size_does_not_allocate_it() {
  let frame = zstd::bulk::compress(b"tiny", 3).unwrap();
  let err = des_core::decompress(des_core::Codec::Zstd, &frame, 1 << 60, "u").unwrap_err();
  assert_eq!(err.code(), "DES_CORRUPT");
  let lz = des_core::compress(des_core::Codec::Lz4, 1, b"tiny").unwrap();
  let err = des_core::decompress(des_core::Codec::Lz4, &lz, 1 << 60, "u").unwrap_err();
  assert_eq!(err.code(), "DES_CORRUPT");
}
