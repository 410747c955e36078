//! One read of one payload, wherever the shard's bytes are: a local file the
//! reader opens itself, or an index parsed from a tail with the stored bytes
//! fetched by the caller (a range GET). Every path checks before it returns
//! bytes, and only checked, decoded bytes are kept in a payload cache.

use crate::codec::check_sendable_as_stored;
use crate::entry::{Body, Entry};
use crate::error::{DesError, Result};
use crate::index::ShardIndex;
use crate::payload_cache::{PayloadCache, PayloadKey};
use crate::reader::{check_stored, decode_payload, ShardFile};
use std::sync::Arc;

/// Where a shard's index and bytes are.
#[derive(Debug, Clone)]
pub enum ShardSource {
  /// A local file: payloads are read from it.
  File(Arc<ShardFile>),
  /// Only the index (from an object's tail): stored bytes come from the caller.
  Tail(Arc<ShardIndex>),
}

impl ShardSource {
  /// The parsed index.
  pub fn index(&self) -> &ShardIndex {
    match self {
      ShardSource::File(f) => f.index(),
      ShardSource::Tail(i) => i,
    }
  }
}

/// What a read hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadForm {
  /// Decoded (BigFiles of a local shard included).
  Decoded,
  /// As stored (e.g. one zstd frame to send with `Content-Encoding: zstd`), checked.
  Stored,
}

/// Where to keep a copy of a decoded inline payload: the cache and the
/// caller's number for this opened shard version (the entry's offset
/// completes the key, so a re-opened shard never meets old bytes).
#[derive(Clone)]
pub struct KeepIn {
  pub cache: Arc<PayloadCache>,
  pub shard: u64,
}

/// Reads `uid`'s payload from `source` in `form`; `fetched` are its stored
/// bytes when the caller fetched them (required for a `Tail` source).
pub fn read_payload(
  source: &ShardSource,
  uid: &str,
  fetched: Option<Vec<u8>>,
  form: PayloadForm,
  bigfiles_prefix: &str,
  keep: Option<&KeepIn>,
) -> Result<Vec<u8>> {
  let entry = source
    .index()
    .get(uid)
    .ok_or_else(|| DesError::NotFound(uid.to_string()))?;
  let data = match (source, fetched, form) {
    (_, Some(stored), PayloadForm::Stored) => checked(&entry, stored),
    (_, Some(stored), PayloadForm::Decoded) => decode_payload(&entry, &stored),
    (ShardSource::File(file), None, PayloadForm::Stored) => {
      let stored = file.read_stored(&entry)?;
      check_sendable(&entry, &stored)?;
      Ok(stored)
    }
    (ShardSource::File(file), None, PayloadForm::Decoded) => {
      file.read_entry(&entry, bigfiles_prefix)
    }
    (ShardSource::Tail(_), None, _) => Err(DesError::BadArg(
      "this reader holds only an index: fetch the stored bytes and decode them".to_string(),
    )),
  }?;
  if let (Some(keep), PayloadForm::Decoded, Body::Inline { offset, .. }) = (keep, form, &entry.body)
  {
    if keep.cache.admits(data.len()) {
      let key = PayloadKey {
        shard: keep.shard,
        offset: *offset,
      };
      keep.cache.insert(key, Arc::from(data.as_slice()));
    }
  }
  Ok(data)
}

fn checked(entry: &Entry, stored: Vec<u8>) -> Result<Vec<u8>> {
  check_length_and_crc(entry, &stored)?;
  check_sendable(entry, &stored)?;
  Ok(stored)
}

/// Stored bytes that pass their checksum may still not be what the index
/// says once decoded (a frame of another size, a decompression bomb, in a
/// shard crafted with its checksums): checked before they go out undecoded.
fn check_sendable(entry: &Entry, stored: &[u8]) -> Result<()> {
  match &entry.body {
    Body::Inline { codec, size, .. } => check_sendable_as_stored(*codec, stored, *size, &entry.uid),
    Body::BigFile { .. } => Ok(()),
  }
}

fn check_length_and_crc(entry: &Entry, stored: &[u8]) -> Result<()> {
  if stored.len() as u64 != entry.stored_size() {
    return Err(DesError::corrupt(format!(
      "uid {:?}: given {} stored bytes, the entry has {}",
      entry.uid,
      stored.len(),
      entry.stored_size()
    )));
  }
  check_stored(entry, stored)
}

/// Checks stored bytes the caller fetched for `uid` (their length and
/// checksum) without copying them, e.g. just before sending them as stored.
pub fn check_fetched(index: &ShardIndex, uid: &str, stored: &[u8]) -> Result<()> {
  let entry = index
    .get(uid)
    .ok_or_else(|| DesError::NotFound(uid.to_string()))?;
  check_length_and_crc(&entry, stored)?;
  check_sendable(&entry, stored)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::writer::{ShardWriter, WriterOptions};

  #[test]
  fn only_checked_decoded_bytes_reach_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.des");
    let mut w = ShardWriter::create(&path, WriterOptions::default()).unwrap();
    w.add("a", b"alpha alpha alpha alpha".to_vec(), None)
      .unwrap();
    w.finish().unwrap();
    let index = Arc::new(
      crate::reader::index_from_tail(
        &std::fs::read(&path).unwrap(),
        std::fs::metadata(&path).unwrap().len(),
      )
      .unwrap(),
    );
    let source = ShardSource::Tail(index.clone());
    let keep = KeepIn {
      cache: Arc::new(PayloadCache::new(1 << 20, 1 << 16)),
      shard: 7,
    };
    let entry = index.get("a").unwrap();
    let Body::Inline { offset, length, .. } = entry.body else {
      panic!("inline")
    };
    let bytes = std::fs::read(&path).unwrap();
    let stored = bytes[offset as usize..(offset + length) as usize].to_vec();
    let mut bad = stored.clone();
    bad[0] ^= 1;
    let key = PayloadKey { shard: 7, offset };
    let err = read_payload(
      &source,
      "a",
      Some(bad.clone()),
      PayloadForm::Decoded,
      "_bigFiles",
      Some(&keep),
    )
    .unwrap_err();
    assert_eq!(err.code(), "DES_CORRUPT");
    assert!(keep.cache.get(key).is_none());
    let err = read_payload(
      &source,
      "a",
      Some(bad),
      PayloadForm::Stored,
      "_bigFiles",
      None,
    )
    .unwrap_err();
    assert_eq!(err.code(), "DES_CORRUPT");
    let data = read_payload(
      &source,
      "a",
      Some(stored),
      PayloadForm::Decoded,
      "_bigFiles",
      Some(&keep),
    )
    .unwrap();
    assert_eq!(data, b"alpha alpha alpha alpha");
    assert_eq!(keep.cache.get(key).as_deref(), Some(&data[..]));
    assert_eq!(
      read_payload(&source, "b", None, PayloadForm::Decoded, "_bigFiles", None)
        .unwrap_err()
        .uid(),
      Some("b")
    );
  }
}
