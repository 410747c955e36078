//! Payload compression: zstd frames, LZ4 frames, or none; and the rule for
//! which payloads are not worth compressing.

use crate::entry::Codec;
use crate::error::{DesError, Result};
use std::io::Read;

/// Extensions stored raw by default (already compressed), as the reference does.
pub const DEFAULT_SKIP_EXTENSIONS: &[&str] = &[
  ".jpg", ".jpeg", ".png", ".gif", ".gz", ".zip", ".bz2", ".xz",
];

/// Default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Payloads up to this size decode in one call into an exactly sized buffer;
/// larger ones stream, so a lying size field cannot make us allocate it up front.
const ONE_SHOT_LIMIT: u64 = 16 << 20;

/// How the writer compresses.
#[derive(Debug, Clone)]
pub struct CompressionPolicy {
  pub codec: Codec,
  /// zstd: 1..=22 (default 3); lz4: ignored (fast mode).
  pub level: i32,
  /// Lower-case extensions with the dot (".jpg") whose payloads are stored raw.
  pub skip_extensions: Vec<String>,
  /// Store raw when compression does not make the payload smaller (ours; the
  /// reference always keeps the compressed form).
  pub raw_if_larger: bool,
}

impl Default for CompressionPolicy {
  fn default() -> Self {
    CompressionPolicy {
      codec: Codec::Zstd,
      level: DEFAULT_ZSTD_LEVEL,
      skip_extensions: DEFAULT_SKIP_EXTENSIONS
        .iter()
        .map(|s| s.to_string())
        .collect(),
      raw_if_larger: true,
    }
  }
}

/// The suffix of a uid as Python's `Path(uid).suffix` gives it: the last
/// ".xxx" of the last path component, not a leading dot, not a trailing one.
pub fn uid_suffix(uid: &str) -> &str {
  let name = uid.rsplit('/').next().unwrap_or(uid);
  match name.rfind('.') {
    Some(i) if i > 0 && i < name.len() - 1 => &name[i..],
    _ => "",
  }
}

impl CompressionPolicy {
  /// The codec to try for a uid (none for skipped extensions).
  pub fn codec_for(&self, uid: &str) -> Codec {
    let suffix = uid_suffix(uid).to_ascii_lowercase();
    if !suffix.is_empty() && self.skip_extensions.contains(&suffix) {
      Codec::None
    } else {
      self.codec
    }
  }

  /// Encodes a payload; returns the codec actually used and the stored bytes.
  pub fn encode(&self, uid: &str, data: &[u8]) -> Result<(Codec, Vec<u8>)> {
    let codec = self.codec_for(uid);
    let stored = compress(codec, self.level, data)?;
    if self.raw_if_larger && codec != Codec::None && stored.len() >= data.len() {
      return Ok((Codec::None, data.to_vec()));
    }
    Ok((codec, stored))
  }
}

/// Compresses with a codec; `level` applies to zstd.
pub fn compress(codec: Codec, level: i32, data: &[u8]) -> Result<Vec<u8>> {
  match codec {
    Codec::None => Ok(data.to_vec()),
    Codec::Zstd => zstd::bulk::compress(data, level)
      .map_err(|e| DesError::BadArg(format!("zstd level {level}: {e}"))),
    Codec::Lz4 => {
      let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(data.len() / 2 + 64));
      std::io::Write::write_all(&mut enc, data)
        .map_err(|e| DesError::io("lz4 frame encoding", e))?;
      enc
        .finish()
        .map_err(|e| DesError::BadArg(format!("lz4 frame encoding: {e}")))
    }
  }
}

/// Decodes stored bytes that must expand to exactly `size` bytes. Never
/// allocates more than the bytes can justify; a payload that decodes to any
/// other size, or not at all, is an error naming the uid.
pub fn decompress(codec: Codec, stored: &[u8], size: u64, uid: &str) -> Result<Vec<u8>> {
  let bad = |why: String| DesError::corrupt(format!("payload of uid {uid:?}: {why}"));
  let out = match codec {
    Codec::None => stored.to_vec(),
    Codec::Zstd if size <= ONE_SHOT_LIMIT => {
      let mut out = Vec::with_capacity(size as usize);
      zstd::bulk::Decompressor::new()
        .and_then(|mut d| d.decompress_to_buffer(stored, &mut out))
        .map_err(|e| bad(format!("zstd: {e} (expected {size} bytes)")))?;
      out
    }
    Codec::Zstd => {
      let reader =
        zstd::stream::read::Decoder::with_buffer(stored).map_err(|e| bad(format!("zstd: {e}")))?;
      read_bounded(reader, size).map_err(|e| bad(format!("zstd: {e}")))?
    }
    Codec::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(stored), size)
      .map_err(|e| bad(format!("lz4 frame: {e}")))?,
  };
  if out.len() as u64 != size {
    return Err(bad(format!(
      "decoded to {} bytes, the index says {size}",
      out.len()
    )));
  }
  Ok(out)
}

/// Reads at most `size + 1` bytes, growing the buffer as data really arrives.
fn read_bounded(reader: impl Read, size: u64) -> std::io::Result<Vec<u8>> {
  let mut out = Vec::with_capacity(size.min(ONE_SHOT_LIMIT) as usize);
  reader.take(size.saturating_add(1)).read_to_end(&mut out)?;
  Ok(out)
}
