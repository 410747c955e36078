//! Routing: `(uid, created_at)` to the shard key.

use crate::error::IntoNapi;
use napi_derive::napi;

/// Where a uid lives.
#[napi(object)]
pub struct ShardLocation {
  pub uid: String,
  /// `YYYYMMDD` of `created_at` in UTC.
  pub date_dir: String,
  pub shard_index: u32,
  /// Upper-case hex, `max(1, nBits / 4)` digits.
  pub shard_hex: String,
  /// `dateDir/shardHex.des`.
  pub object_key: String,
}

/// Routes a uid created at an ISO-8601 instant (no offset = UTC) to its shard.
/// `nBits` (default 8) must be 4..16.
#[napi]
pub fn locate_shard(
  uid: String,
  created_at: String,
  n_bits: Option<i64>,
) -> napi::Result<ShardLocation> {
  let loc = des_core::locate(&uid, &created_at, n_bits.unwrap_or(8)).napi()?;
  Ok(ShardLocation {
    uid: loc.uid,
    date_dir: loc.date_dir,
    shard_index: loc.shard_index,
    shard_hex: loc.shard_hex,
    object_key: loc.object_key,
  })
}

/// `locateShard` as a row `[dateDir, shardIndex, shardHex, objectKey]`, for
/// the retriever's hot path: an array crosses into JS much more cheaply than
/// an object with named properties.
#[napi(ts_return_type = "[string, number, string, string]")]
pub fn locate_shard_row(
  uid: String,
  created_at: String,
  n_bits: Option<i64>,
) -> napi::Result<(String, u32, String, String)> {
  let loc = des_core::locate(&uid, &created_at, n_bits.unwrap_or(8)).napi()?;
  Ok((loc.date_dir, loc.shard_index, loc.shard_hex, loc.object_key))
}

/// Seconds since the Unix epoch of an ISO-8601 timestamp (no offset = UTC).
#[napi]
pub fn parse_timestamp(created_at: String) -> napi::Result<i64> {
  des_core::parse_iso8601(&created_at).napi()
}
