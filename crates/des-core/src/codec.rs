//! Payload compression: zstd frames, LZ4 frames, or none; and the rule for
//! which payloads are not worth compressing.

use crate::entry::Codec;
use crate::error::{DesError, Result};
use std::cell::RefCell;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

/// Extensions stored raw by default (already compressed), as the reference does.
pub const DEFAULT_SKIP_EXTENSIONS: &[&str] = &[
  ".jpg", ".jpeg", ".png", ".gif", ".gz", ".zip", ".bz2", ".xz",
];

/// Default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Default ceiling on one inline payload held in memory (64 MiB, six times
/// the default BigFile threshold): a crafted index cannot make a reader
/// allocate or decode more than this for one entry.
pub const DEFAULT_PAYLOAD_CEILING: u64 = 64 << 20;

static PAYLOAD_CEILING: AtomicU64 = AtomicU64::new(DEFAULT_PAYLOAD_CEILING);

/// Sets the process-wide payload ceiling (`DES_MAX_PAYLOAD_BYTES`): an inline
/// entry whose stored or decoded size is larger is refused, never read.
pub fn set_payload_ceiling(bytes: u64) {
  PAYLOAD_CEILING.store(bytes.max(1), Ordering::Relaxed);
}

/// The payload ceiling in force.
pub fn payload_ceiling() -> u64 {
  PAYLOAD_CEILING.load(Ordering::Relaxed)
}

/// Payloads up to this size decode in one call into an exactly sized buffer;
/// larger ones stream, so a lying size field cannot make us allocate it up front.
const ONE_SHOT_LIMIT: u64 = 16 << 20;

/// How the writer compresses.
#[derive(Debug, Clone, PartialEq)]
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
  /// Sets the extensions stored raw, as users write them (`jpg`, `.JPG`):
  /// lower-cased, with their dot.
  pub fn set_skip_extensions<S: AsRef<str>>(&mut self, extensions: impl IntoIterator<Item = S>) {
    self.skip_extensions = extensions
      .into_iter()
      .map(|e| {
        let e = e.as_ref().to_ascii_lowercase();
        if e.starts_with('.') {
          e
        } else {
          format!(".{e}")
        }
      })
      .collect();
  }

  /// The codec to try for a uid (none for skipped extensions).
  pub fn codec_for(&self, uid: &str) -> Codec {
    let suffix = uid_suffix(uid).to_ascii_lowercase();
    if !suffix.is_empty() && self.skip_extensions.contains(&suffix) {
      Codec::None
    } else {
      self.codec
    }
  }

  /// `encode` taking the payload by value: stored raw, it is not copied.
  pub fn encode_owned(&self, uid: &str, data: Vec<u8>) -> Result<(Codec, Vec<u8>)> {
    let codec = self.codec_for(uid);
    if codec == Codec::None {
      return Ok((Codec::None, data));
    }
    let stored = compress(codec, self.level, &data)?;
    if self.raw_if_larger && stored.len() >= data.len() {
      return Ok((Codec::None, data));
    }
    Ok((codec, stored))
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

thread_local! {
  /// One zstd context per thread (and level), reused from payload to payload:
  /// setting up a fresh context costs more than compressing a small file.
  /// Frames carry a content checksum (XXH64), so a decoder notices damage
  /// even in a shard read by a tool that ignores our checksum block.
  static ZSTD_CONTEXT: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
    const { RefCell::new(None) };
}

/// A zstd context at `level` that writes content checksums.
fn zstd_compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
  let mut compressor = zstd::bulk::Compressor::new(level)?;
  compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
  Ok(compressor)
}

/// A zstd frame with content size and checksum, on this thread's context.
fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
  ZSTD_CONTEXT.with(|cell| {
    let mut slot = cell.borrow_mut();
    if !matches!(slot.as_ref(), Some((l, _)) if *l == level) {
      *slot = Some((level, zstd_compressor(level)?));
    }
    let mut out = match slot.as_mut() {
      Some((_, compressor)) => compressor.compress(data)?,
      None => zstd_compressor(level)?.compress(data)?,
    };
    // The buffer was sized for the worst case; payloads wait in memory until written.
    out.shrink_to_fit();
    Ok(out)
  })
}

/// Compresses with a codec; `level` applies to zstd.
pub fn compress(codec: Codec, level: i32, data: &[u8]) -> Result<Vec<u8>> {
  match codec {
    Codec::None => Ok(data.to_vec()),
    Codec::Zstd => {
      zstd_compress(data, level).map_err(|e| DesError::BadArg(format!("zstd level {level}: {e}")))
    }
    Codec::Lz4 => {
      // Content size and checksum in the frame, as the zstd frames carry them.
      let info = lz4_flex::frame::FrameInfo::new()
        .content_size(Some(data.len() as u64))
        .content_checksum(true);
      let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(
        info,
        Vec::with_capacity(data.len() / 2 + 64),
      );
      std::io::Write::write_all(&mut enc, data)
        .map_err(|e| DesError::io("lz4 frame encoding", e))?;
      let mut out = enc
        .finish()
        .map_err(|e| DesError::BadArg(format!("lz4 frame encoding: {e}")))?;
      // As for zstd: the buffer was sized for the source, and payloads wait
      // in memory (read ahead, counted by their stored bytes) until written.
      out.shrink_to_fit();
      Ok(out)
    }
  }
}

/// Decodes stored bytes that must expand to exactly `size` bytes. Never
/// allocates more than the bytes can justify; a payload that decodes to any
/// other size, or not at all, is an error naming the uid.
pub fn decompress(codec: Codec, stored: &[u8], size: u64, uid: &str) -> Result<Vec<u8>> {
  let bad = |why: String| DesError::corrupt(format!("payload of uid {uid:?}: {why}"));
  check_ceiling(size, uid)?;
  if codec == Codec::Zstd {
    // The frame states its size too: a disagreement is damage, found before
    // decoding anything.
    if let Ok(Some(stated)) = zstd::zstd_safe::get_frame_content_size(stored) {
      if stated != size {
        return Err(bad(format!(
          "zstd frame says {stated} bytes, the index says {size}"
        )));
      }
    }
  }
  let out = match codec {
    Codec::None => stored.to_vec(),
    Codec::Zstd if size <= ONE_SHOT_LIMIT => zstd_decompress(stored, size as usize)
      .map_err(|e| bad(format!("zstd: {e} (expected {size} bytes)")))?,
    Codec::Zstd => {
      let reader =
        zstd::stream::read::Decoder::with_buffer(stored).map_err(|e| bad(format!("zstd: {e}")))?;
      read_bounded(reader, size).map_err(|e| bad(format!("zstd: {e}")))?
    }
    Codec::Lz4 if size <= ONE_SHOT_LIMIT => crate::lz4frame::decode_frames(stored, size as usize)
      .map_err(|e| bad(format!("lz4 frame: {e}")))?,
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

/// Checks that stored bytes may be sent undecoded (`Content-Encoding: zstd`)
/// in place of the payload: whoever decodes them must get what `decompress`
/// gives, or an error, never other bytes nor more of them. One zstd frame
/// whose header states the index's size passes as it is (a decoder checks a
/// frame's stated size against what it decodes); anything else (several
/// frames, no stated size, a stated size the index does not give) is decoded
/// here once, within the payload ceiling, and refused as `decompress` refuses it.
pub fn check_sendable_as_stored(codec: Codec, stored: &[u8], size: u64, uid: &str) -> Result<()> {
  let one_frame_of_size = codec == Codec::Zstd
    && zstd::zstd_safe::find_frame_compressed_size(stored).ok() == Some(stored.len())
    && zstd::zstd_safe::get_frame_content_size(stored).ok() == Some(Some(size));
  if one_frame_of_size {
    return check_ceiling(size, uid);
  }
  decompress(codec, stored, size, uid).map(|_| ())
}

/// Refuses a payload size above the ceiling (`set_payload_ceiling`).
pub fn check_ceiling(size: u64, uid: &str) -> Result<()> {
  let ceiling = payload_ceiling();
  if size > ceiling {
    return Err(DesError::corrupt(format!(
      "payload of uid {uid:?}: {size} bytes is over the payload ceiling of {ceiling} bytes (DES_MAX_PAYLOAD_BYTES)"
    )));
  }
  Ok(())
}

thread_local! {
  /// One zstd decoding context per thread, reused: creating one costs more
  /// than decoding a small payload.
  static ZSTD_DECODER: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Decodes a zstd payload into a buffer of capacity `size`; more output is an error.
fn zstd_decompress(stored: &[u8], size: usize) -> std::io::Result<Vec<u8>> {
  ZSTD_DECODER.with(|cell| {
    let mut slot = cell.borrow_mut();
    if slot.is_none() {
      *slot = Some(zstd::bulk::Decompressor::new()?);
    }
    let mut out = Vec::with_capacity(size);
    match slot.as_mut() {
      Some(decoder) => decoder.decompress_to_buffer(stored, &mut out)?,
      None => zstd::bulk::Decompressor::new()?.decompress_to_buffer(stored, &mut out)?,
    };
    Ok(out)
  })
}

/// Reads at most `size + 1` bytes, growing the buffer as data really arrives.
fn read_bounded(reader: impl Read, size: u64) -> std::io::Result<Vec<u8>> {
  let mut out = Vec::with_capacity(size.min(ONE_SHOT_LIMIT) as usize);
  reader.take(size.saturating_add(1)).read_to_end(&mut out)?;
  Ok(out)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_reused_zstd_context_writes_the_same_frames_as_a_fresh_one() {
    for (i, level) in [3, 3, 9, 3, 1, 19].into_iter().enumerate() {
      let data: Vec<u8> = (0..10_000 + i as u32 * 7_777)
        .map(|x| (x % 251) as u8 ^ (x / 97) as u8)
        .collect();
      let fresh = zstd_compressor(level).unwrap().compress(&data).unwrap();
      let ours = compress(Codec::Zstd, level, &data).unwrap();
      assert_eq!(ours, fresh, "level {level}");
      // Frame header descriptor: bit 2 = content checksum present.
      assert_ne!(ours[4] & 0b100, 0, "level {level}: no content checksum");
    }
  }

  #[test]
  fn encode_owned_stores_raw_what_does_not_shrink() {
    let policy = CompressionPolicy::default();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..4096)
      .map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 24) as u8
      })
      .collect();
    let (codec, stored) = policy.encode_owned("a.bin", noise.clone()).unwrap();
    assert_eq!((codec, &stored), (Codec::None, &noise));
    let (codec, stored) = policy.encode_owned("b.txt", vec![b'a'; 4096]).unwrap();
    assert_eq!(codec, Codec::Zstd);
    assert!(stored.len() < 100);
    let (codec, _) = policy.encode_owned("c.JPG", vec![b'a'; 4096]).unwrap();
    assert_eq!(codec, Codec::None);
  }
}
