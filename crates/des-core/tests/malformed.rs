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

/// A shard of one inline entry "a" holding `stored` with `codec`, its index
/// stating `size` (no checksum block: nothing else vouches for the bytes).
fn one_entry_shard(stored: &[u8], codec: des_core::Codec, size: u64) -> Vec<u8> {
  let mut out = b"DES2\x02\0\0\0".to_vec();
  out.extend_from_slice(stored);
  let mut index = 1u32.to_le_bytes().to_vec();
  index.extend_from_slice(&1u16.to_le_bytes());
  index.extend_from_slice(b"a\0");
  index.extend_from_slice(&8u64.to_le_bytes());
  index.extend_from_slice(&(stored.len() as u64).to_le_bytes());
  index.push(codec as u8);
  index.extend_from_slice(&(stored.len() as u64).to_le_bytes());
  index.extend_from_slice(&size.to_le_bytes());
  index.extend_from_slice(&0u32.to_le_bytes());
  out.extend_from_slice(&index);
  out.extend_from_slice(b"DESI");
  out.extend_from_slice(&(index.len() as u64).to_le_bytes());
  out
}

#[test]
fn stored_bytes_that_would_decode_to_other_bytes_than_the_index_says_are_not_handed_out_as_stored()
{
  use des_core::{check_fetched, read_payload, Codec, PayloadForm, ShardSource};
  use std::sync::Arc;
  let frame = |data: &[u8], with_size: bool| {
    let mut c = zstd::bulk::Compressor::new(19).unwrap();
    c.include_contentsize(with_size).unwrap();
    c.compress(data).unwrap()
  };
  let bomb = frame(&vec![0u8; 64 << 20], false);
  let two = [frame(&[b'x'; 100], true), frame(&[b'y'; 100], true)].concat();
  let bad = [
    (
      "a frame of 1200 bytes indexed as 1000",
      frame(&[b'a'; 1200], true),
      1000,
    ),
    (
      "a bomb: a frame of 64 MiB without its size, indexed as 100",
      bomb,
      100,
    ),
    ("two frames of 100 bytes indexed as 100", two.clone(), 100),
    // Refused decoded too: the first frame's stated size is not the index's.
    ("two frames of 100 bytes indexed as 200", two, 200),
  ];
  let good = [
    (
      "one frame stating its size",
      frame(&[b'a'; 1200], true),
      1200,
    ),
    (
      "one frame without its size",
      frame(&[b'a'; 1200], false),
      1200,
    ),
  ];
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("s.des");
  for (what, stored, size, ok) in bad
    .into_iter()
    .map(|(w, s, n)| (w, s, n, false))
    .chain(good.into_iter().map(|(w, s, n)| (w, s, n, true)))
  {
    std::fs::write(&path, one_entry_shard(&stored, Codec::Zstd, size)).unwrap();
    let file = Arc::new(ShardFile::open(&path).unwrap());
    let source = ShardSource::File(file.clone());
    let results = [
      read_payload(&source, "a", None, PayloadForm::Stored, "_bigFiles", None),
      read_payload(
        &source,
        "a",
        Some(stored.clone()),
        PayloadForm::Stored,
        "_bigFiles",
        None,
      ),
      check_fetched(file.index(), "a", &stored).map(|()| stored.clone()),
    ];
    let decoded = read_payload(&source, "a", None, PayloadForm::Decoded, "_bigFiles", None);
    assert_eq!(decoded.is_ok(), ok, "{what}: decoded");
    for result in results {
      match result {
        Ok(bytes) => {
          assert!(ok, "{what}: handed out as stored");
          assert_eq!(bytes, stored, "{what}");
        }
        Err(err) => {
          assert!(!ok, "{what}: {err}");
          assert_eq!(err.code(), "DES_CORRUPT", "{what}: {err}");
        }
      }
    }
  }
}
