//! Deterministic routing: (uid, created_at, n_bits) -> shard key. No database.

use crate::error::{DesError, Result};
use crate::timestamp::utc_date_dir;

/// Smallest and largest accepted `n_bits`.
pub const MIN_N_BITS: u32 = 4;
pub const MAX_N_BITS: u32 = 16;
/// The default routing width.
pub const DEFAULT_N_BITS: u32 = 8;

/// Where a uid lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
  pub uid: String,
  /// `YYYYMMDD` of `created_at` in UTC.
  pub date_dir: String,
  pub shard_index: u32,
  /// Upper-case hex, zero-padded to `max(1, n_bits / 4)` digits.
  pub shard_hex: String,
  /// `date_dir/shard_hex.des`.
  pub object_key: String,
}

/// Checks `n_bits` is within 4..=16 and returns it.
pub fn check_n_bits(n_bits: i64) -> Result<u32> {
  if (i64::from(MIN_N_BITS)..=i64::from(MAX_N_BITS)).contains(&n_bits) {
    Ok(n_bits as u32)
  } else {
    Err(DesError::BadArg(format!(
      "n_bits must be between 4 and 16, got {n_bits}"
    )))
  }
}

/// The shard index of a uid: numeric uids (ASCII digits only, any length)
/// modulo 2^n_bits, every other uid (the empty one too) crc32 masked.
pub fn shard_index(uid: &str, n_bits: i64) -> Result<u32> {
  let n_bits = check_n_bits(n_bits)?;
  let modulus = 1u32 << n_bits;
  let is_numeric = !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit());
  if is_numeric {
    // Digit by digit, so uids longer than 64 bits reduce exactly.
    Ok(
      uid
        .bytes()
        .fold(0u32, |acc, d| (acc * 10 + u32::from(d - b'0')) % modulus),
    )
  } else {
    Ok(crc32fast::hash(uid.as_bytes()) & (modulus - 1))
  }
}

/// `shard_index` as upper-case hex, `max(1, n_bits / 4)` digits wide.
/// (n_bits 10 gives "05" and "3FF": existing keys use this exact rule.)
pub fn shard_hex(shard_index: u32, n_bits: i64) -> Result<String> {
  let n_bits = check_n_bits(n_bits)?;
  if shard_index >= (1u32 << n_bits) {
    return Err(DesError::BadArg(format!(
      "shard_index {shard_index} is outside 0..{}",
      (1u32 << n_bits) - 1
    )));
  }
  let width = std::cmp::max(1, n_bits / 4) as usize;
  Ok(format!("{shard_index:0width$X}"))
}

/// Routes a uid created at an ISO-8601 instant to its shard.
pub fn locate(uid: &str, created_at: &str, n_bits: i64) -> Result<Location> {
  let index = shard_index(uid, n_bits)?;
  let hex = shard_hex(index, n_bits)?;
  let date_dir = utc_date_dir(created_at)?;
  Ok(Location {
    uid: uid.to_string(),
    object_key: format!("{date_dir}/{hex}.des"),
    date_dir,
    shard_index: index,
    shard_hex: hex,
  })
}
