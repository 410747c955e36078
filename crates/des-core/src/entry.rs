//! One file's record in a shard index.

use crate::error::{DesError, Result};

/// How an inline payload is stored. The byte values are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
  None = 0,
  Zstd = 1,
  /// An LZ4 *frame* (as Python's `lz4.frame` writes it), not a raw block.
  Lz4 = 2,
}

impl Codec {
  /// The codec of a stored codec byte.
  pub fn from_byte(byte: u8) -> Option<Codec> {
    match byte {
      0 => Some(Codec::None),
      1 => Some(Codec::Zstd),
      2 => Some(Codec::Lz4),
      _ => None,
    }
  }

  /// Every codec, in the order of its byte (`ALL[c.id()] == c`).
  pub const ALL: [Codec; 3] = [Codec::None, Codec::Zstd, Codec::Lz4];

  /// The stored codec byte.
  pub fn id(self) -> u8 {
    self as u8
  }

  /// `"none"`, `"zstd"` or `"lz4"`.
  pub fn name(self) -> &'static str {
    match self {
      Codec::None => "none",
      Codec::Zstd => "zstd",
      Codec::Lz4 => "lz4",
    }
  }

  /// Parses `"none"`, `"zstd"` or `"lz4"`.
  pub fn from_name(name: &str) -> Result<Codec> {
    match name {
      "none" => Ok(Codec::None),
      "zstd" => Ok(Codec::Zstd),
      "lz4" => Ok(Codec::Lz4),
      other => Err(DesError::BadArg(format!(
        "unknown codec {other:?} (expected none, zstd or lz4)"
      ))),
    }
  }
}

/// Where an entry's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
  /// Inside the shard's data section.
  Inline {
    /// Absolute offset in the shard.
    offset: u64,
    /// Stored (possibly compressed) bytes; equals the index's `compressed_size`.
    length: u64,
    codec: Codec,
    /// Size after decoding.
    size: u64,
    /// CRC32C of the stored bytes, from the index's checksum block; `None`
    /// for shards written without one (the reference's, or older ones).
    crc: Option<u32>,
  },
  /// In `_bigFiles/<sha256>` beside the shard.
  BigFile {
    /// Lower-case hex sha256 of the payload, 64 digits (an index holding
    /// another spelling is refused when read).
    sha256: String,
    size: u64,
  },
}

/// An index entry, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
  pub uid: String,
  pub body: Body,
  /// Compact JSON object text; empty means `{}`.
  pub meta: String,
}

impl Entry {
  /// Decoded size of the payload.
  pub fn size(&self) -> u64 {
    match &self.body {
      Body::Inline { size, .. } | Body::BigFile { size, .. } => *size,
    }
  }

  /// Bytes the shard stores for it (0 for a BigFile).
  pub fn stored_size(&self) -> u64 {
    match &self.body {
      Body::Inline { length, .. } => *length,
      Body::BigFile { .. } => 0,
    }
  }

  /// True for an entry whose payload is a BigFile object.
  pub fn is_bigfile(&self) -> bool {
    matches!(self.body, Body::BigFile { .. })
  }

  /// The meta as JSON text, `{}` when none was stored.
  pub fn meta_json(&self) -> &str {
    if self.meta.is_empty() {
      "{}"
    } else {
      &self.meta
    }
  }
}
