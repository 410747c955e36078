//! One index entry as JS sees it.

use des_core::{Body, Entry};
use napi_derive::napi;

/// One index entry as JS sees it.
#[napi(object)]
pub struct EntryInfo {
  pub uid: String,
  /// Decoded size in bytes.
  pub size: i64,
  /// `"none" | "zstd" | "lz4"`; null for a BigFile.
  #[napi(ts_type = "'none' | 'zstd' | 'lz4'")]
  pub codec: Option<String>,
  pub is_bigfile: bool,
  /// Bytes stored in the shard (0 for a BigFile).
  pub stored_size: i64,
  /// Absolute offset of the stored bytes (null for a BigFile).
  pub offset: Option<i64>,
  /// sha256 hex of a BigFile's payload.
  pub sha256: Option<String>,
  /// CRC32C of an inline entry's stored bytes, from the shard's checksum
  /// block (null for a BigFile, or a shard written without checksums).
  #[napi(js_name = "crc32c")]
  pub crc32c: Option<u32>,
  /// The entry's meta, JSON object text (`{}` when none).
  pub meta: String,
}

pub(crate) fn entry_info(entry: &Entry) -> EntryInfo {
  let (codec, offset, sha256, crc32c) = match &entry.body {
    Body::Inline {
      codec, offset, crc, ..
    } => (
      Some(codec.name().to_string()),
      Some(*offset as i64),
      None,
      *crc,
    ),
    Body::BigFile { sha256, .. } => (None, None, Some(sha256.clone()), None),
  };
  EntryInfo {
    uid: entry.uid.clone(),
    size: entry.size() as i64,
    codec,
    is_bigfile: entry.is_bigfile(),
    stored_size: entry.stored_size() as i64,
    offset,
    sha256,
    crc32c,
    meta: entry.meta_json().to_string(),
  }
}
