//! Header and footer: the fixed-size frame around a shard.
//!
//! `[ HEADER 8 B ][ DATA ... ][ INDEX ][ FOOTER 12 B ]`, little-endian.

use crate::error::{DesError, Result};

/// `"DES2"`, then version, then 3 zero bytes.
pub const HEADER_MAGIC: &[u8; 4] = b"DES2";
/// `"DESI"`, then the index size as u64.
pub const FOOTER_MAGIC: &[u8; 4] = b"DESI";
pub const HEADER_SIZE: u64 = 8;
pub const FOOTER_SIZE: u64 = 12;
/// The legacy index layout (no flags, no meta).
pub const VERSION_1: u8 = 1;
/// The current layout, with BigFiles and meta. Writers always write it.
pub const VERSION_2: u8 = 2;
/// Largest index this implementation accepts (entries address it with u32).
pub const MAX_INDEX_SIZE: u64 = u32::MAX as u64;

/// The 8 header bytes a v2 writer puts first.
pub fn header_bytes() -> [u8; 8] {
  [b'D', b'E', b'S', b'2', VERSION_2, 0, 0, 0]
}

/// Validates a header and returns its version.
pub fn parse_header(bytes: &[u8]) -> Result<u8> {
  if bytes.len() < HEADER_SIZE as usize {
    return Err(DesError::corrupt(format!(
      "file too small to be a shard: {} bytes, a header alone is 8",
      bytes.len()
    )));
  }
  if &bytes[0..4] != HEADER_MAGIC {
    // The bytes themselves are not echoed: messages reach logs and clients.
    return Err(DesError::corrupt(
      "bad header magic at byte 0 (expected \"DES2\")".to_string(),
    ));
  }
  let version = bytes[4];
  if version != VERSION_1 && version != VERSION_2 {
    return Err(DesError::corrupt(format!(
      "unsupported shard version {version} at byte 4 (known: 1, 2)"
    )));
  }
  if bytes[5..8] != [0, 0, 0] {
    return Err(DesError::corrupt(
      "header reserved bytes 5..8 are not zero".to_string(),
    ));
  }
  Ok(version)
}

/// Where the index lies, from the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
  pub index_offset: u64,
  pub index_size: u64,
}

/// The 12 footer bytes for an index of `index_size` bytes.
pub fn footer_bytes(index_size: u64) -> [u8; 12] {
  let mut out = [0u8; 12];
  out[0..4].copy_from_slice(FOOTER_MAGIC);
  out[4..12].copy_from_slice(&index_size.to_le_bytes());
  out
}

/// Refuses an index section too large to read (before anything is allocated
/// for it). Not part of `parse_footer`: the section of an unfinished append
/// may be larger, while its old index, all a reader takes of it, is not.
pub fn check_index_size(index_size: u64) -> Result<()> {
  if index_size > MAX_INDEX_SIZE {
    return Err(DesError::corrupt(format!(
      "index of {index_size} bytes is larger than the 4 GiB this reader accepts"
    )));
  }
  Ok(())
}

/// Validates the last 12 bytes of an object of `file_size` bytes.
pub fn parse_footer(last12: &[u8], file_size: u64) -> Result<Footer> {
  if file_size < HEADER_SIZE + FOOTER_SIZE {
    return Err(DesError::corrupt(format!(
      "file too small to be a shard: {file_size} bytes, header and footer alone are 20"
    )));
  }
  if last12.len() != FOOTER_SIZE as usize {
    return Err(DesError::BadArg(format!(
      "footer must be 12 bytes, got {}",
      last12.len()
    )));
  }
  let at = file_size - FOOTER_SIZE;
  if &last12[0..4] != FOOTER_MAGIC {
    return Err(DesError::corrupt(format!(
      "bad footer magic at byte {at} (expected \"DESI\")"
    )));
  }
  let mut size = [0u8; 8];
  size.copy_from_slice(&last12[4..12]);
  let index_size = u64::from_le_bytes(size);
  let room = file_size - FOOTER_SIZE - HEADER_SIZE;
  if index_size > room {
    return Err(DesError::corrupt(format!(
      "footer at byte {at} says the index is {index_size} bytes, but only {room} bytes lie between header and footer"
    )));
  }
  Ok(Footer {
    index_offset: file_size - FOOTER_SIZE - index_size,
    index_size,
  })
}
