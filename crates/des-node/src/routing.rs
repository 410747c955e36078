//! Routing: `(uid, created_at)` to the shard key.

use crate::error::{bad_arg, IntoNapi};
use napi::bindgen_prelude::Uint32Array;
use napi_derive::napi;
use std::collections::HashMap;

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

/// `locateShard` for many rows at once: what a packer's plan needs of each
/// (shard index, date folder, hex), with the folders and hexes given once
/// each and referred to by position (far fewer strings cross into JS).
#[napi(object)]
pub struct LocatedRows {
  /// The shard index of each row; 4294967295 where `created_at` is not a
  /// timestamp (`locateShard` of that row says why).
  pub indexes: Uint32Array,
  /// Each row's date folder, as a position in `dates`.
  pub date_of: Uint32Array,
  pub dates: Vec<String>,
  /// Each row's shard hex, as a position in `hexes`.
  pub hex_of: Uint32Array,
  pub hexes: Vec<String>,
}

/// Routes `uids[i]` created at `createdAts[i]` for every row.
#[napi]
pub fn locate_rows(
  uids: Vec<String>,
  created_ats: Vec<String>,
  n_bits: i64,
) -> napi::Result<LocatedRows> {
  if uids.len() != created_ats.len() {
    return Err(bad_arg(format!(
      "{} uids and {} created_at values: one of each per row",
      uids.len(),
      created_ats.len()
    )));
  }
  des_core::check_n_bits(n_bits).napi()?;
  let n = uids.len();
  let (mut indexes, mut date_of, mut hex_of) = (vec![u32::MAX; n], vec![0u32; n], vec![0u32; n]);
  let mut dates: Vec<String> = Vec::new();
  let mut hexes: Vec<String> = Vec::new();
  let mut date_at: HashMap<String, u32> = HashMap::new();
  let mut hex_at: HashMap<u32, u32> = HashMap::new();
  for (i, (uid, created_at)) in uids.iter().zip(&created_ats).enumerate() {
    let Ok(loc) = des_core::locate(uid, created_at, n_bits) else {
      continue;
    };
    indexes[i] = loc.shard_index;
    date_of[i] = *date_at.entry(loc.date_dir).or_insert_with_key(|d| {
      dates.push(d.clone());
      (dates.len() - 1) as u32
    });
    hex_of[i] = *hex_at.entry(loc.shard_index).or_insert_with(|| {
      hexes.push(loc.shard_hex);
      (hexes.len() - 1) as u32
    });
  }
  Ok(LocatedRows {
    indexes: indexes.into(),
    date_of: date_of.into(),
    dates,
    hex_of: hex_of.into(),
    hexes,
  })
}
