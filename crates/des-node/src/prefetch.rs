//! `Prefetch`: local sources read and compressed ahead while a run is still
//! planned (des-core `Prefetch`), taken by `packParts` given the same object.

use crate::error::bad_arg;
use crate::writer::{core_options, ShardWriterOptions};
use napi_derive::napi;
use std::path::PathBuf;
use std::sync::Arc;

#[napi]
pub struct Prefetch {
  inner: Arc<des_core::Prefetch>,
}

impl Prefetch {
  pub(crate) fn shared(&self) -> Arc<des_core::Prefetch> {
    self.inner.clone()
  }
}

/// Collected without `close` (a run that threw before it): its threads end and what they made is let go.
impl Drop for Prefetch {
  fn drop(&mut self) {
    self.inner.close();
  }
}

#[napi]
impl Prefetch {
  /// Readers for payloads compressed as `options` says, holding at most
  /// `maxBytes` of them, on `threads` threads of their own.
  #[napi(constructor)]
  pub fn new(
    options: Option<ShardWriterOptions>,
    max_bytes: i64,
    threads: u32,
  ) -> napi::Result<Self> {
    let opts = core_options(options)?;
    let budget = u64::try_from(max_bytes)
      .map_err(|_| bad_arg(format!("maxBytes must be 0 or more, got {max_bytes}")))?;
    Ok(Prefetch {
      inner: des_core::Prefetch::start(
        opts.compression,
        opts.big_file_threshold,
        budget,
        threads as usize,
      ),
    })
  }

  /// Queues local sources (uid, path and the size each must have) to read ahead, in order.
  #[napi]
  pub fn add(&self, uids: Vec<String>, paths: Vec<String>, sizes: Vec<i64>) -> napi::Result<()> {
    if paths.len() != uids.len() || sizes.len() != uids.len() {
      return Err(bad_arg(
        "Prefetch.add: one path and one size per uid".to_string(),
      ));
    }
    let items = uids
      .into_iter()
      .zip(paths)
      .zip(sizes)
      .filter_map(|((uid, path), size)| {
        let expected_size = u64::try_from(size).ok()?;
        Some(des_core::Ahead {
          uid,
          path: PathBuf::from(path),
          expected_size,
        })
      })
      .collect();
    self.inner.add(items);
    Ok(())
  }

  /// No more reads start; what was made stays for `packParts`.
  #[napi]
  pub fn stop(&self) {
    self.inner.stop();
  }

  /// Stops and lets go of everything made.
  #[napi]
  pub fn close(&self) {
    self.inner.close();
  }
}
