//! The packer's batch calls: `packParts` (many local parts filled, staged
//! and committed with one call, `des_core::pack_parts`) and `statSources`
//! (its checks of local sources, `des_core::stat_sources`).

use crate::error::{bad_arg, IntoNapi};
use crate::prefetch::Prefetch;
use crate::writer::{core_options, path_items, summary_of, ShardWriteSummary, ShardWriterOptions};
use des_core::PartJob;
use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;
use std::path::PathBuf;

/// One part: local files (as `addPaths` takes them) for the shard at `path`.
#[napi(object)]
pub struct PartFiles {
  pub path: String,
  pub uids: Vec<String>,
  pub paths: Vec<String>,
  pub sizes: Vec<i64>,
  pub metas: Option<Vec<Option<String>>>,
  /// A uid already in the shard is skipped instead of refused.
  pub skip_existing: Option<bool>,
  /// The part takes files while its data section stays within this.
  pub max_data_size: Option<i64>,
  /// BigFiles of this part go here.
  pub bigfiles_dir: Option<String>,
  /// Wait for the shard's turn if another writer holds it (only for a part
  /// alone in its call; see `busy`).
  pub wait: Option<bool>,
}

/// What one part came to: its error (a coded message, as thrown errors
/// carry), or the files it skipped and took and the stored shard.
#[napi(object)]
pub struct PartResult {
  /// Positions of the files skipped as already in the shard.
  pub skipped: Vec<u32>,
  /// How many of the other files went in, in order.
  pub consumed: u32,
  /// The stored part; absent when nothing was added.
  pub summary: Option<ShardWriteSummary>,
  pub error: Option<String>,
  /// Another writer held the shard's turn: nothing was done; pack the part
  /// again, alone and with `wait`, once no other turn is held.
  pub busy: bool,
}

pub struct PackPartsTask {
  jobs: Vec<PartJob>,
  opts: des_core::WriterOptions,
}

impl Task for PackPartsTask {
  type Output = Vec<PartResult>;
  type JsValue = Vec<PartResult>;
  fn compute(&mut self) -> napi::Result<Vec<PartResult>> {
    let jobs = std::mem::take(&mut self.jobs);
    Ok(
      des_core::pack_parts(jobs, &self.opts)
        .into_iter()
        .map(|r| match r {
          Ok(o) => PartResult {
            skipped: o.skipped.into_iter().map(|i| i as u32).collect(),
            consumed: o.consumed as u32,
            summary: o.summary.map(summary_of),
            error: None,
            busy: o.busy,
          },
          Err(e) => PartResult {
            skipped: Vec::new(),
            consumed: 0,
            summary: None,
            error: Some(crate::error::to_napi(e).reason),
            busy: false,
          },
        })
        .collect(),
    )
  }
  fn resolve(&mut self, _env: Env, r: Vec<PartResult>) -> napi::Result<Vec<PartResult>> {
    Ok(r)
  }
}

/// Fills, stages and commits many parts off the event loop, in parallel;
/// one result per part, in order. A part's failure is its own. Payloads
/// `prefetch` made for these files are taken from it.
#[napi(ts_return_type = "Promise<Array<PartResult>>")]
pub fn pack_parts(
  parts: Vec<PartFiles>,
  options: Option<ShardWriterOptions>,
  prefetch: Option<&Prefetch>,
) -> napi::Result<AsyncTask<PackPartsTask>> {
  let mut opts = core_options(options)?;
  opts.prefetched = prefetch.map(Prefetch::shared);
  let mut jobs = Vec::with_capacity(parts.len());
  for p in parts {
    let max_data_size = match p.max_data_size {
      Some(m) => {
        Some(u64::try_from(m).map_err(|_| bad_arg(format!("maxDataSize must be >= 0, got {m}")))?)
      }
      None => None,
    };
    jobs.push(PartJob {
      target: PathBuf::from(p.path),
      items: path_items("packParts", p.uids, p.paths, p.sizes, p.metas)?,
      wait: p.wait.unwrap_or(false),
      skip_existing: p.skip_existing.unwrap_or(false),
      max_data_size,
      bigfiles_dir: p.bigfiles_dir.map(PathBuf::from),
    });
  }
  Ok(AsyncTask::new(PackPartsTask { jobs, opts }))
}

/// Looks at local sources on every core, off the event loop.
pub struct StatSourcesTask {
  paths: Vec<PathBuf>,
}

impl Task for StatSourcesTask {
  type Output = Vec<f64>;
  type JsValue = Vec<f64>;
  fn compute(&mut self) -> napi::Result<Vec<f64>> {
    Ok(
      des_core::stat_sources(&self.paths)
        .into_iter()
        .map(|s| match s {
          des_core::SourceStat::File(size) => size as f64,
          des_core::SourceStat::Missing => -1.0,
          des_core::SourceStat::NotFile => -2.0,
          des_core::SourceStat::Unreadable(_) => -3.0,
        })
        .collect(),
    )
  }
  fn resolve(&mut self, _env: Env, r: Vec<f64>) -> napi::Result<Vec<f64>> {
    Ok(r)
  }
}

/// The size of each local source, in order, or why it cannot be read: -1
/// missing, -2 not a regular file, -3 another failure (stat it again to say
/// which). Numbers, not objects: they cross into JS far more cheaply.
#[napi(ts_return_type = "Promise<Array<number>>")]
pub fn stat_sources(paths: Vec<String>) -> AsyncTask<StatSourcesTask> {
  AsyncTask::new(StatSourcesTask {
    paths: paths.into_iter().map(PathBuf::from).collect(),
  })
}

/// Removes the temp files dead writers left in some folders, off the event loop.
pub struct RemoveStaleTempsTask {
  dirs: Vec<PathBuf>,
  min_age: std::time::Duration,
}

impl Task for RemoveStaleTempsTask {
  type Output = f64;
  type JsValue = f64;
  fn compute(&mut self) -> napi::Result<f64> {
    let mut removed = 0;
    for dir in &self.dirs {
      removed += des_core::remove_stale_temps(dir, self.min_age).napi()?;
    }
    Ok(removed as f64)
  }
  fn resolve(&mut self, _env: Env, n: f64) -> napi::Result<f64> {
    Ok(n)
  }
}

/// Removes, in each folder, the writers' temp files (`.des-tmp-*.part`) that
/// no writer holds and that have not changed for `minAgeMs`: left by a
/// packer that died. Resolves to how many (none off Unix, where temp files
/// carry no lock).
#[napi(ts_return_type = "Promise<number>")]
pub fn remove_stale_temps(
  dirs: Vec<String>,
  min_age_ms: f64,
) -> napi::Result<AsyncTask<RemoveStaleTempsTask>> {
  if !(min_age_ms.is_finite() && min_age_ms >= 0.0) {
    return Err(bad_arg(format!(
      "minAgeMs must be a number of milliseconds, got {min_age_ms}"
    )));
  }
  Ok(AsyncTask::new(RemoveStaleTempsTask {
    dirs: dirs.into_iter().map(PathBuf::from).collect(),
    min_age: std::time::Duration::from_millis(min_age_ms as u64),
  }))
}
