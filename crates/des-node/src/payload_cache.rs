//! `PayloadCache`: decoded payloads kept in Rust memory (see des-core), filled
//! by `ShardReader.read/decode` off the event loop, read back with `get`.

use crate::error::bad_arg;
use napi::bindgen_prelude::BufferSlice;
use napi::Env;
use napi_derive::napi;
use std::sync::Arc;

/// Counters of a payload cache.
#[napi(object)]
pub struct PayloadCacheStats {
  pub entries: i64,
  pub bytes: i64,
  pub hits: i64,
  pub misses: i64,
  pub evictions: i64,
}

#[napi]
pub struct PayloadCache {
  inner: Arc<des_core::PayloadCache>,
}

impl PayloadCache {
  pub(crate) fn shared(&self) -> Arc<des_core::PayloadCache> {
    self.inner.clone()
  }
}

/// The cache's name for a payload: the caller's number for an opened shard
/// version and the entry's offset in it.
pub(crate) fn payload_key(shard: i64, offset: i64) -> napi::Result<des_core::PayloadKey> {
  match (u64::try_from(shard), u64::try_from(offset)) {
    (Ok(shard), Ok(offset)) => Ok(des_core::PayloadKey { shard, offset }),
    _ => Err(bad_arg(format!(
      "payload cache key ({shard}, {offset}) must not be negative"
    ))),
  }
}

fn to_usize(what: &str, n: i64) -> napi::Result<usize> {
  usize::try_from(n).map_err(|_| bad_arg(format!("{what} must be 0 or more, got {n}")))
}

#[napi]
impl PayloadCache {
  /// A cache of at most `maxBytes`; payloads over `maxEntryBytes` (default
  /// 1 MiB) are not kept.
  #[napi(constructor)]
  pub fn new(max_bytes: i64, max_entry_bytes: Option<i64>) -> napi::Result<Self> {
    let max_entry = to_usize("maxEntryBytes", max_entry_bytes.unwrap_or(1 << 20))?;
    Ok(PayloadCache {
      inner: Arc::new(des_core::PayloadCache::new(
        to_usize("maxBytes", max_bytes)?,
        max_entry,
      )),
    })
  }

  #[napi(getter)]
  pub fn max_bytes(&self) -> i64 {
    self.inner.max_bytes() as i64
  }

  /// A copy of the payload kept for (`shard`, `offset`), or null.
  #[napi(ts_return_type = "Buffer | null")]
  pub fn get<'env>(
    &self,
    env: &'env Env,
    shard: i64,
    offset: i64,
  ) -> napi::Result<Option<BufferSlice<'env>>> {
    match self.inner.get(payload_key(shard, offset)?) {
      Some(data) => BufferSlice::copy_from(env, &*data).map(Some),
      None => Ok(None),
    }
  }

  /// Copies the payload kept for (`shard`, `offset`) into the start of `target` when it
  /// is there and fits; returns its length, or -1. For a caller that reuses
  /// its buffers: nothing is allocated, so nothing new for the GC to weigh.
  #[napi]
  pub fn copy_into(&self, shard: i64, offset: i64, mut target: BufferSlice) -> napi::Result<i64> {
    Ok(match self.inner.get(payload_key(shard, offset)?) {
      Some(data) if data.len() <= target.len() => {
        target[..data.len()].copy_from_slice(&data);
        data.len() as i64
      }
      _ => -1,
    })
  }

  #[napi]
  pub fn stats(&self) -> PayloadCacheStats {
    let s = self.inner.stats();
    PayloadCacheStats {
      entries: s.entries as i64,
      bytes: s.bytes as i64,
      hits: s.hits as i64,
      misses: s.misses as i64,
      evictions: s.evictions as i64,
    }
  }

  #[napi]
  pub fn clear(&self) {
    self.inner.clear()
  }
}
