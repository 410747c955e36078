//! The checksum block: CRC32C of every entry's stored bytes and of the index
//! itself, kept inside the index section after the last entry.
//!
//! The original Python reader parses exactly `entry_count` entries and ignores
//! what follows them in the index section, so shards that carry this block
//! still read there byte-exact; readers here accept shards without it (older,
//! or written by the reference) and check what they can.
//!
//! ```text
//! "DESC" | block version u8 = 1 | algorithm u8 = 1 (CRC32C) | reserved u16 = 0
//! entry_count u32                         (must equal the index's)
//! entry_count × crc u32                   (stored bytes of entry i; 0 for a BigFile)
//! retired_count u32
//! retired_count × (offset u64 | length u64 | crc u32)   (dead bytes left by --replace)
//! index_crc u32                           (every index byte before this field)
//! ```

use crate::cursor::Cursor;
use crate::error::{DesError, Result};

/// First bytes of the block.
pub const CHECKSUM_MAGIC: &[u8; 4] = b"DESC";
/// Layout version of the block.
pub const CHECKSUM_VERSION: u8 = 1;
/// Algorithm byte for CRC32C (Castagnoli).
pub const ALGORITHM_CRC32C: u8 = 1;
/// Bytes of a retired range record.
const RETIRED_BYTES: usize = 8 + 8 + 4;

/// CRC32C of bytes (hardware instructions where the CPU has them).
pub fn crc32c(bytes: &[u8]) -> u32 {
  ::crc32c::crc32c(bytes)
}

/// Continues a CRC32C over more bytes (`crc32c_append(crc32c(a), b) == crc32c(a ++ b)`).
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
  ::crc32c::crc32c_append(crc, bytes)
}

/// Bytes in the data section that no live entry refers to any more (an entry
/// replaced by `--replace` leaves its old bytes behind), with their checksum,
/// so every byte a shard holds stays covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
  pub offset: u64,
  pub length: u64,
  pub crc: u32,
}

/// What the block holds, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checksums {
  /// One per index entry, in index order (0 for BigFiles).
  pub entries: Vec<u32>,
  pub retired: Vec<Retired>,
}

/// Appends the block for `entry_crcs` and `retired` to `index` (the entries
/// already encoded), ending with the CRC of everything before it.
pub fn append_block(index: &mut Vec<u8>, entry_crcs: &[u32], retired: &[Retired]) -> Result<()> {
  let count = u32::try_from(entry_crcs.len())
    .map_err(|_| DesError::BadArg("more than 4 billion entries in one shard".to_string()))?;
  let retired_count = u32::try_from(retired.len())
    .map_err(|_| DesError::BadArg("more than 4 billion retired ranges".to_string()))?;
  index.reserve(16 + entry_crcs.len() * 4 + retired.len() * RETIRED_BYTES + 4);
  index.extend_from_slice(CHECKSUM_MAGIC);
  index.extend_from_slice(&[CHECKSUM_VERSION, ALGORITHM_CRC32C, 0, 0]);
  index.extend_from_slice(&count.to_le_bytes());
  for crc in entry_crcs {
    index.extend_from_slice(&crc.to_le_bytes());
  }
  index.extend_from_slice(&retired_count.to_le_bytes());
  for r in retired {
    index.extend_from_slice(&r.offset.to_le_bytes());
    index.extend_from_slice(&r.length.to_le_bytes());
    index.extend_from_slice(&r.crc.to_le_bytes());
  }
  let index_crc = crc32c(index);
  index.extend_from_slice(&index_crc.to_le_bytes());
  Ok(())
}

/// True if the bytes after the last entry start a checksum block.
pub fn starts_block(rest: &[u8]) -> bool {
  rest.len() >= 4 && &rest[..4] == CHECKSUM_MAGIC
}

/// Length of the block that starts at `at` in `raw`, from its counts; `None`
/// if `raw` is too short to hold them.
pub fn block_len_at(raw: &[u8], at: usize) -> Option<usize> {
  let u32_at = |i: usize| -> Option<usize> {
    let b = raw.get(i..i.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
  };
  let count = u32_at(at.checked_add(8)?)?;
  let retired_at = at.checked_add(12)?.checked_add(count.checked_mul(4)?)?;
  let retired = u32_at(retired_at)?;
  16usize
    .checked_add(count.checked_mul(4)?)?
    .checked_add(retired.checked_mul(RETIRED_BYTES)?)?
    .checked_add(4)
}

/// Parses the block that starts at `at` in `raw` (the whole index section) and
/// must run to its end; checks the index CRC and that it has one checksum per
/// entry. `data_end` only places errors in the file.
pub fn parse_block(raw: &[u8], at: usize, entry_count: usize, data_end: u64) -> Result<Checksums> {
  let where_ = data_end + at as u64;
  if raw.len() < at + 4 + 4 {
    return Err(DesError::corrupt(format!(
      "checksum block at byte {where_} is truncated"
    )));
  }
  // The CRC first: a flipped byte anywhere in the index is reported as such,
  // whatever field it landed in.
  let crc_at = raw.len() - 4;
  let stored_crc = u32::from_le_bytes([
    raw[crc_at],
    raw[crc_at + 1],
    raw[crc_at + 2],
    raw[crc_at + 3],
  ]);
  let actual = crc32c(&raw[..crc_at]);
  if stored_crc != actual {
    return Err(DesError::corrupt(format!(
      "index checksum mismatch: the index at byte {data_end} has CRC32C {actual:08x}, its checksum block says {stored_crc:08x}"
    )));
  }
  let body = &raw[..crc_at];
  let mut cur = Cursor::new(body, data_end);
  cur.take(at, "index entries")?;
  cur.take(4, "checksum block magic")?;
  let version = cur.u8("checksum block version")?;
  let algorithm = cur.u8("checksum algorithm")?;
  let reserved = cur.u16("checksum block reserved bytes")?;
  if version != CHECKSUM_VERSION || algorithm != ALGORITHM_CRC32C || reserved != 0 {
    return Err(DesError::corrupt(format!(
      "checksum block at byte {where_}: unknown version {version}, algorithm {algorithm} or reserved {reserved}"
    )));
  }
  let count = cur.u32("checksum count")? as usize;
  if count != entry_count {
    return Err(DesError::corrupt(format!(
      "checksum block at byte {where_} holds {count} checksums for {entry_count} entries"
    )));
  }
  if cur.remaining() < count.saturating_mul(4) {
    return Err(DesError::corrupt(format!(
      "checksum block at byte {where_} is truncated: {count} checksums do not fit"
    )));
  }
  let mut entries = Vec::with_capacity(count);
  for _ in 0..count {
    entries.push(cur.u32("entry checksum")?);
  }
  let retired_count = cur.u32("retired range count")? as usize;
  if cur.remaining() != retired_count.saturating_mul(RETIRED_BYTES) {
    return Err(DesError::corrupt(format!(
      "checksum block at byte {where_}: {retired_count} retired ranges do not fill its {} remaining bytes",
      cur.remaining()
    )));
  }
  let mut retired = Vec::with_capacity(retired_count);
  for _ in 0..retired_count {
    let offset = cur.u64("retired offset")?;
    let length = cur.u64("retired length")?;
    let crc = cur.u32("retired checksum")?;
    let end = offset.checked_add(length);
    if offset < crate::format::HEADER_SIZE || end.is_none_or(|end| end > data_end) {
      return Err(DesError::corrupt(format!(
        "checksum block at byte {where_}: retired range {offset}+{length} lies outside the data section"
      )));
    }
    retired.push(Retired {
      offset,
      length,
      crc,
    });
  }
  Ok(Checksums { entries, retired })
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn crc32c_matches_the_published_check_value() {
    // The standard check value of CRC-32C for "123456789".
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xE306_9283);
  }

  #[test]
  fn a_block_parses_back_to_what_was_written() {
    let mut raw = vec![1, 2, 3];
    let retired = [Retired {
      offset: 8,
      length: 4,
      crc: 7,
    }];
    append_block(&mut raw, &[10, 20], &retired).unwrap();
    let parsed = parse_block(&raw, 3, 2, 100).unwrap();
    assert_eq!(parsed.entries, vec![10, 20]);
    assert_eq!(parsed.retired, retired);
    for i in 0..raw.len() {
      let mut bad = raw.clone();
      bad[i] ^= 0x40;
      assert!(parse_block(&bad, 3, 2, 100).is_err(), "flip at {i} passed");
    }
  }
}
