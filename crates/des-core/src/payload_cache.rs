//! A bounded cache of decoded payloads, shared between threads.
//!
//! Hot files of a retriever are answered from here without a read and a
//! decode. The bytes live outside any garbage-collected heap, so a cache of
//! any size costs the host runtime nothing to keep: a small cache over a big,
//! randomly read set only costs its lookups. Least recently used entries go
//! first; the bound counts payload bytes plus a fixed cost per entry.

use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

/// Bookkeeping counted per entry besides its bytes (key, list node, Arc header).
const ENTRY_OVERHEAD: usize = 96;

/// Names one payload: the caller's number for one opened version of a shard
/// (a new number when the shard is opened again, e.g. after an append) and
/// the offset of the entry's bytes in it, unique within that version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadKey {
  pub shard: u64,
  pub offset: u64,
}

/// Counters of one cache since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PayloadCacheStats {
  pub entries: usize,
  pub bytes: usize,
  pub hits: u64,
  pub misses: u64,
  pub evictions: u64,
}

struct Inner {
  lru: LruCache<PayloadKey, Arc<[u8]>>,
  bytes: usize,
  stats: PayloadCacheStats,
}

pub struct PayloadCache {
  max_bytes: usize,
  max_entry_bytes: usize,
  inner: Mutex<Inner>,
}

fn weight(data: &[u8]) -> usize {
  data.len() + ENTRY_OVERHEAD
}

impl PayloadCache {
  /// A cache of at most `max_bytes`; payloads over `max_entry_bytes` are not
  /// kept (one of them would push out many small ones).
  pub fn new(max_bytes: usize, max_entry_bytes: usize) -> Self {
    PayloadCache {
      max_bytes,
      max_entry_bytes: max_entry_bytes.min(max_bytes),
      inner: Mutex::new(Inner {
        lru: LruCache::unbounded(),
        bytes: 0,
        stats: PayloadCacheStats::default(),
      }),
    }
  }

  pub fn max_bytes(&self) -> usize {
    self.max_bytes
  }

  fn lock(&self) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock cannot leave the map half-changed in a
    // way that matters for a cache: keep using it.
    self.inner.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// The payload under `key`, marking it recently used.
  pub fn get(&self, key: PayloadKey) -> Option<Arc<[u8]>> {
    let mut inner = self.lock();
    let found = inner.lru.get(&key).cloned();
    match found {
      Some(_) => inner.stats.hits += 1,
      None => inner.stats.misses += 1,
    }
    found
  }

  /// Whether a payload of `len` bytes would be kept.
  pub fn admits(&self, len: usize) -> bool {
    // Weighed as the bound counts it, so one entry can never empty the cache of itself.
    len <= self.max_entry_bytes && len + ENTRY_OVERHEAD <= self.max_bytes
  }

  /// Keeps `data` under `key` (replacing an older value), evicting the least
  /// recently used entries until the bound holds. Too large a payload is
  /// ignored.
  pub fn insert(&self, key: PayloadKey, data: Arc<[u8]>) {
    if !self.admits(data.len()) {
      return;
    }
    let w = weight(&data);
    let mut inner = self.lock();
    if let Some(old) = inner.lru.put(key, data) {
      inner.bytes -= weight(&old);
    }
    inner.bytes += w;
    while inner.bytes > self.max_bytes {
      match inner.lru.pop_lru() {
        Some((_, v)) => {
          inner.bytes -= weight(&v);
          inner.stats.evictions += 1;
        }
        None => break,
      }
    }
  }

  pub fn clear(&self) {
    let mut inner = self.lock();
    inner.lru.clear();
    inner.bytes = 0;
  }

  pub fn stats(&self) -> PayloadCacheStats {
    let inner = self.lock();
    PayloadCacheStats {
      entries: inner.lru.len(),
      bytes: inner.bytes,
      ..inner.stats
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn bytes(n: usize, fill: u8) -> Arc<[u8]> {
    vec![fill; n].into()
  }

  fn k(offset: u64) -> PayloadKey {
    PayloadKey { shard: 1, offset }
  }

  #[test]
  fn keeps_and_returns_the_same_bytes() {
    let c = PayloadCache::new(1 << 20, 1 << 16);
    c.insert(k(8), bytes(10, 1));
    assert_eq!(&*c.get(k(8)).unwrap(), &[1u8; 10][..]);
    assert!(c.get(k(9)).is_none());
    assert!(
      c.get(PayloadKey {
        shard: 2,
        offset: 8
      })
      .is_none(),
      "another shard version"
    );
    let s = c.stats();
    assert_eq!((s.entries, s.hits, s.misses), (1, 1, 2));
    assert_eq!(s.bytes, weight(&[0; 10]));
  }

  #[test]
  fn evicts_least_recently_used_first_and_stays_within_its_bound() {
    let one = weight(&[0; 1000]);
    let c = PayloadCache::new(3 * one, 1 << 16);
    for i in 0..3 {
      c.insert(k(i), bytes(1000, i as u8));
    }
    c.get(k(0)); // k(1) is now the oldest
    c.insert(k(3), bytes(1000, 3));
    assert!(c.get(k(1)).is_none());
    assert!(c.get(k(0)).is_some() && c.get(k(2)).is_some() && c.get(k(3)).is_some());
    let s = c.stats();
    assert!(s.bytes <= 3 * one);
    assert_eq!(s.evictions, 1);
  }

  #[test]
  fn replacing_a_key_does_not_count_its_bytes_twice() {
    let c = PayloadCache::new(1 << 20, 1 << 16);
    c.insert(k(8), bytes(100, 1));
    c.insert(k(8), bytes(50, 2));
    assert_eq!(c.stats().bytes, weight(&[0; 50]));
    assert_eq!(&*c.get(k(8)).unwrap(), &[2u8; 50][..]);
  }

  #[test]
  fn refuses_payloads_over_the_entry_limit() {
    let c = PayloadCache::new(1 << 20, 100);
    c.insert(k(8), bytes(101, 0));
    assert!(c.get(k(8)).is_none());
    assert_eq!(c.stats().entries, 0);
  }

  #[test]
  fn a_payload_that_would_fill_the_bound_with_its_overhead_is_refused() {
    let c = PayloadCache::new(1000, 1000);
    c.insert(k(8), bytes(100, 0));
    c.insert(k(9), bytes(1000 - ENTRY_OVERHEAD + 1, 0));
    assert!(c.get(k(9)).is_none());
    assert!(c.get(k(8)).is_some(), "the small one was not pushed out");
  }

  #[test]
  fn a_zero_bound_keeps_nothing() {
    let c = PayloadCache::new(0, 1 << 16);
    c.insert(k(8), bytes(1, 0));
    assert_eq!(c.stats().entries, 0);
  }
}
