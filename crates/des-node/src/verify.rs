//! Verification: a local shard file in one call, or an object streamed in
//! chunks through `ShardVerifier` (its index parsed from a tail read first).

use crate::entry::{entry_info, EntryInfo};
use crate::error::{bad_arg, IntoNapi};
use des_core::{ShardIndex, StreamVerifier};
use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi::{Env, Task};
use napi_derive::napi;
use std::sync::{Arc, Mutex};

/// One thing a verification found wrong.
#[napi(object)]
pub struct VerifyProblem {
  /// The entry it concerns, if any.
  pub uid: Option<String>,
  /// Where: `header`, `data`, `index`, `footer`, `entry` or `bigfile`.
  #[napi(ts_type = "'header' | 'data' | 'index' | 'footer' | 'entry' | 'bigfile'")]
  pub region: String,
  /// Stable code, e.g. `DES_CORRUPT`.
  pub code: String,
  /// What and where, in words.
  pub error: String,
}

/// What a verification found.
#[napi(object)]
pub struct VerifyReport {
  /// Entries in the index (0 when the index could not be read).
  pub entries: u32,
  /// Entries whose bytes checked out.
  pub ok: u32,
  /// Decoded bytes of the entries that checked out.
  pub bytes: i64,
  /// The shard carries a checksum block; without one, codec-none payloads
  /// and dead bytes cannot be checked.
  pub checksummed: bool,
  pub problems: Vec<VerifyProblem>,
}

impl From<des_core::VerifyReport> for VerifyReport {
  fn from(r: des_core::VerifyReport) -> Self {
    VerifyReport {
      entries: r.entries as u32,
      ok: r.ok as u32,
      bytes: r.bytes as i64,
      checksummed: r.checksummed,
      problems: r
        .problems
        .into_iter()
        .map(|p| VerifyProblem {
          uid: p.uid,
          region: p.region.name().to_string(),
          code: p.code.to_string(),
          error: p.message,
        })
        .collect(),
    }
  }
}

/// Verifies a local shard file (and the BigFiles beside it) off the event loop.
pub struct VerifyTask {
  path: std::path::PathBuf,
  /// `None`: BigFiles are left to the caller.
  bigfiles_prefix: Option<String>,
}

impl VerifyTask {
  pub(crate) fn new(path: String, bigfiles_prefix: Option<String>, bigfiles: bool) -> VerifyTask {
    VerifyTask {
      path: path.into(),
      bigfiles_prefix: bigfiles
        .then(|| bigfiles_prefix.unwrap_or_else(|| des_core::DEFAULT_BIGFILES_PREFIX.to_string())),
    }
  }
}

impl Task for VerifyTask {
  type Output = des_core::VerifyReport;
  type JsValue = VerifyReport;
  fn compute(&mut self) -> napi::Result<des_core::VerifyReport> {
    des_core::verify_file(&self.path, self.bigfiles_prefix.as_deref()).napi()
  }
  fn resolve(&mut self, _env: Env, report: des_core::VerifyReport) -> napi::Result<VerifyReport> {
    Ok(report.into())
  }
}

/// Verifies a local shard file and the BigFiles beside it (under
/// `bigfilesPrefix`, default `_bigFiles`; `checkBigfiles: false` leaves them
/// to the caller) off the event loop. Damage anywhere — header, data, index,
/// footer — is a problem in the report; only a file that cannot be read rejects.
#[napi(ts_return_type = "Promise<VerifyReport>")]
pub fn verify_shard_file(
  path: String,
  bigfiles_prefix: Option<String>,
  check_bigfiles: Option<bool>,
) -> AsyncTask<VerifyTask> {
  AsyncTask::new(VerifyTask::new(
    path,
    bigfiles_prefix,
    check_bigfiles.unwrap_or(true),
  ))
}

/// The verifier and the tail bytes it finishes with.
struct State {
  verifier: Option<StreamVerifier>,
  tail: Vec<u8>,
  tail_start: u64,
}

/// Verifies a shard streamed from elsewhere: parse its index from the
/// object's tail (`fromTail`), feed bytes `[0, streamBytes)` in order with
/// `feed`, then `finish`. BigFile entries are not checked here.
#[napi]
pub struct ShardVerifier {
  index: Arc<ShardIndex>,
  stream_bytes: u64,
  state: Arc<Mutex<State>>,
}

/// Parses the tail off the event loop.
pub struct VerifierOpenTask {
  tail: Option<Vec<u8>>,
  object_size: u64,
}

impl Task for VerifierOpenTask {
  type Output = ShardVerifier;
  type JsValue = ShardVerifier;
  fn compute(&mut self) -> napi::Result<ShardVerifier> {
    let tail = self.tail.take().ok_or_else(|| bad_arg("already opened"))?;
    let index = Arc::new(des_core::index_from_tail(&tail, self.object_size).napi()?);
    let tail_start = self.object_size - tail.len() as u64;
    Ok(ShardVerifier {
      stream_bytes: tail_start.min(index.data_end()),
      state: Arc::new(Mutex::new(State {
        verifier: Some(StreamVerifier::new(index.clone())),
        tail,
        tail_start,
      })),
      index,
    })
  }
  fn resolve(&mut self, _env: Env, v: ShardVerifier) -> napi::Result<ShardVerifier> {
    Ok(v)
  }
}

/// Feeds one chunk, or finishes, off the event loop.
pub struct VerifierStepTask {
  state: Arc<Mutex<State>>,
  chunk: Option<Vec<u8>>,
}

impl Task for VerifierStepTask {
  type Output = Option<des_core::VerifyReport>;
  type JsValue = Option<VerifyReport>;
  fn compute(&mut self) -> napi::Result<Option<des_core::VerifyReport>> {
    let mut state = self
      .state
      .lock()
      .map_err(|_| bad_arg("verifier poisoned"))?;
    let State {
      verifier,
      tail,
      tail_start,
    } = &mut *state;
    let v = verifier
      .as_mut()
      .ok_or_else(|| bad_arg("verifier already finished"))?;
    if let Some(chunk) = self.chunk.take() {
      v.feed(&chunk);
      return Ok(None);
    }
    // The data bytes the tail already holds complete the pass.
    let (pos, end) = (v.position(), v.data_end());
    if pos >= *tail_start && pos < end {
      let from = (pos - *tail_start) as usize;
      let to = (end - *tail_start) as usize;
      v.feed(&tail[from..to]);
    }
    Ok(verifier.take().map(StreamVerifier::finish))
  }
  fn resolve(
    &mut self,
    _env: Env,
    report: Option<des_core::VerifyReport>,
  ) -> napi::Result<Option<VerifyReport>> {
    Ok(report.map(VerifyReport::from))
  }
}

#[napi]
impl ShardVerifier {
  /// Parses the index from the last bytes of an object of `objectSize`
  /// bytes (rejects with `DES_NEED_MORE` when the tail misses the index start,
  /// `DES_CORRUPT` when the index or footer is damaged).
  #[napi(ts_return_type = "Promise<ShardVerifier>")]
  pub fn from_tail(tail: Buffer, object_size: i64) -> napi::Result<AsyncTask<VerifierOpenTask>> {
    let object_size = u64::try_from(object_size)
      .map_err(|_| bad_arg(format!("expected a non-negative size, got {object_size}")))?;
    Ok(AsyncTask::new(VerifierOpenTask {
      tail: Some(tail.to_vec()),
      object_size,
    }))
  }

  /// Feed the object's bytes `[0, streamBytes)`; the tail holds the rest.
  #[napi(getter)]
  pub fn stream_bytes(&self) -> i64 {
    self.stream_bytes as i64
  }

  /// Number of entries in the index.
  #[napi(getter)]
  pub fn entry_count(&self) -> u32 {
    self.index.len() as u32
  }

  /// True when the shard carries a checksum block.
  #[napi(getter)]
  pub fn checksummed(&self) -> bool {
    self.index.has_checksums()
  }

  /// Entries `start .. start + count` in index order (to find BigFiles).
  #[napi]
  pub fn entries(&self, start: Option<u32>, count: Option<u32>) -> Vec<EntryInfo> {
    let start = (start.unwrap_or(0) as usize).min(self.index.len());
    let end = start
      .saturating_add(count.map_or(self.index.len(), |c| c as usize))
      .min(self.index.len());
    (start..end)
      .map(|i| entry_info(&self.index.entry(i)))
      .collect()
  }

  /// Takes the next bytes of the object; await each call before the next.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn feed(&self, chunk: Buffer) -> AsyncTask<VerifierStepTask> {
    AsyncTask::new(VerifierStepTask {
      state: self.state.clone(),
      chunk: Some(chunk.to_vec()),
    })
  }

  /// Ends the pass and returns the report (bytes never fed are problems).
  #[napi(ts_return_type = "Promise<VerifyReport | null>")]
  pub fn finish(&self) -> AsyncTask<VerifierStepTask> {
    AsyncTask::new(VerifierStepTask {
      state: self.state.clone(),
      chunk: None,
    })
  }
}

/// Sets the process-wide payload ceiling (`DES_MAX_PAYLOAD_BYTES`): an inline
/// entry whose stored or decoded size is larger is refused (`DES_CORRUPT`)
/// before anything is read or allocated for it.
#[napi]
pub fn set_payload_ceiling(bytes: i64) -> napi::Result<()> {
  let bytes =
    u64::try_from(bytes).map_err(|_| bad_arg(format!("payload ceiling {bytes} is negative")))?;
  if bytes == 0 {
    return Err(bad_arg("payload ceiling must be at least 1 byte"));
  }
  des_core::set_payload_ceiling(bytes);
  Ok(())
}

/// The payload ceiling in force, in bytes.
#[napi]
pub fn payload_ceiling() -> i64 {
  des_core::payload_ceiling() as i64
}
