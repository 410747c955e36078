//! `ShardWriter`: streams a v2 shard to a temp file; compression runs on the
//! libuv pool (and on every core for `addFiles`); `finish` renames it into place.

use crate::entry::{entry_info, EntryInfo};
use crate::error::{bad_arg, IntoNapi};
use crate::reader::ShardReader;
use des_core::{Codec, CompressionPolicy, PackItem, PackSource, WriterOptions};
use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi::{Env, Task};
use napi_derive::napi;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How payloads are stored.
#[napi(object)]
#[derive(Default)]
pub struct ShardWriterOptions {
  /// `"zstd"` (default), `"lz4"` or `"none"`.
  #[napi(ts_type = "'none' | 'zstd' | 'lz4'")]
  pub codec: Option<String>,
  /// zstd level (default 3).
  pub level: Option<i32>,
  /// Extensions stored raw (default: .jpg .jpeg .png .gif .gz .zip .bz2 .xz).
  pub skip_extensions: Option<Vec<String>>,
  /// Store raw when compression does not shrink a payload (default true).
  pub raw_if_larger: Option<bool>,
  /// Payloads larger than this many bytes become BigFiles (default 10 MiB).
  pub big_file_threshold: Option<i64>,
  /// Folder for BigFiles (default `<shard dir>/_bigFiles`).
  pub bigfiles_dir: Option<String>,
  /// Appending: replace an existing uid instead of failing.
  pub replace: Option<bool>,
  /// Appending to a shard another writer created meanwhile: skip a uid it
  /// already holds instead of failing.
  pub skip_existing: Option<bool>,
  /// A new shard file is written past the page cache where the system
  /// allows (Linux `O_DIRECT`): for shards synced at once and not read back
  /// soon, such as a local packer's (default false).
  pub write_past_cache: Option<bool>,
}

pub(crate) fn core_options(o: Option<ShardWriterOptions>) -> napi::Result<WriterOptions> {
  let o = o.unwrap_or_default();
  let mut opts = WriterOptions::default();
  let mut policy = CompressionPolicy::default();
  if let Some(codec) = o.codec {
    policy.codec = Codec::from_name(&codec).napi()?;
  }
  if let Some(level) = o.level {
    policy.level = level;
  }
  if let Some(exts) = o.skip_extensions {
    policy.set_skip_extensions(exts);
  }
  if let Some(raw) = o.raw_if_larger {
    policy.raw_if_larger = raw;
  }
  opts.compression = policy;
  if let Some(t) = o.big_file_threshold {
    opts.big_file_threshold =
      u64::try_from(t).map_err(|_| bad_arg(format!("bigFileThreshold must be >= 0, got {t}")))?;
  }
  opts.bigfiles_dir = o.bigfiles_dir.map(PathBuf::from);
  opts.replace = o.replace.unwrap_or(false);
  opts.skip_existing = o.skip_existing.unwrap_or(false);
  opts.write_past_cache = o.write_past_cache.unwrap_or(false);
  Ok(opts)
}

/// One file for `addFiles`: a local `path` (with the `size` it must have) or `data`.
#[napi(object)]
pub struct PackFile {
  pub uid: String,
  pub path: Option<String>,
  pub size: Option<i64>,
  pub data: Option<Buffer>,
  /// Meta JSON object text.
  pub meta: Option<String>,
}

/// Local files given as parallel arrays (far cheaper to pass from JS than
/// one object per file): `uids[i]` is read from `paths[i]`, which must be
/// `sizes[i]` bytes; `metas[i]` is its meta JSON object text (or null).
pub(crate) fn path_items(
  what: &str,
  uids: Vec<String>,
  paths: Vec<String>,
  sizes: Vec<i64>,
  metas: Option<Vec<Option<String>>>,
) -> napi::Result<Vec<PackItem>> {
  let n = uids.len();
  if paths.len() != n || sizes.len() != n || metas.as_ref().is_some_and(|m| m.len() != n) {
    return Err(bad_arg(format!(
      "{what}: {n} uids, {} paths, {} sizes, {} metas: the arrays must have one entry per file",
      paths.len(),
      sizes.len(),
      metas.as_ref().map_or(n, |m| m.len())
    )));
  }
  let mut metas = metas.map(|m| m.into_iter());
  Ok(
    uids
      .into_iter()
      .zip(paths)
      .zip(sizes)
      .map(|((uid, path), size)| PackItem {
        uid,
        meta: metas.as_mut().and_then(|m| m.next()).flatten(),
        source: PackSource::Path {
          path: PathBuf::from(path),
          expected_size: Some(size.max(0) as u64),
        },
      })
      .collect(),
  )
}

/// What `addFiles` did.
#[napi(object)]
pub struct AddFilesResult {
  /// How many of the given files went in (a prefix); the rest would pass `maxDataSize`.
  pub consumed: u32,
  pub bytes_in: i64,
  pub bytes_stored: i64,
}

/// What `finish` wrote.
#[napi(object)]
pub struct ShardWriteSummary {
  pub path: String,
  pub entries: i64,
  pub added: i64,
  pub file_size: i64,
  pub index_size: i64,
  pub bytes_in: i64,
  /// Bytes the added payloads take in the shard (BigFiles not included).
  pub bytes_stored: i64,
  pub bigfiles: i64,
  /// Bytes of the BigFiles this writer wrote; one already there with the
  /// same bytes is kept, not written, and not counted.
  pub bigfile_bytes_written: i64,
  /// uids the shard already held when this writer's part landed (it lost
  /// the race to create it, with skipExisting): not added by this writer.
  pub skipped: Vec<String>,
}

type Shared = Arc<Mutex<Option<des_core::ShardWriter>>>;

fn with_writer<T>(
  shared: &Shared,
  f: impl FnOnce(&mut des_core::ShardWriter) -> napi::Result<T>,
) -> napi::Result<T> {
  let mut guard = shared
    .lock()
    .map_err(|_| bad_arg("writer is unusable after a panic"))?;
  let writer = guard
    .as_mut()
    .ok_or_else(|| bad_arg("writer is already finished or aborted"))?;
  f(writer)
}

/// Takes the writer out for an operation that uses it up (finish, stage).
fn take_writer(shared: &Shared) -> napi::Result<des_core::ShardWriter> {
  shared
    .lock()
    .map_err(|_| bad_arg("writer is unusable after a panic"))?
    .take()
    .ok_or_else(|| bad_arg("writer is already finished or aborted"))
}

/// Compresses and appends one payload off the event loop.
pub struct AddTask {
  shared: Shared,
  uid: String,
  data: Option<Vec<u8>>,
  meta: Option<String>,
}

impl Task for AddTask {
  type Output = EntryInfo;
  type JsValue = EntryInfo;
  fn compute(&mut self) -> napi::Result<EntryInfo> {
    let data = self.data.take().ok_or_else(|| bad_arg("task ran twice"))?;
    with_writer(&self.shared, |w| {
      let entry = w.add(&self.uid, data, self.meta.as_deref()).napi()?;
      Ok(entry_info(&entry))
    })
  }
  fn resolve(&mut self, _env: Env, entry: EntryInfo) -> napi::Result<EntryInfo> {
    Ok(entry)
  }
}

/// Reads and compresses many files on every core, off the event loop.
pub struct AddFilesTask {
  shared: Shared,
  opts: WriterOptions,
  items: Option<Vec<PackItem>>,
  max: Option<u64>,
}

impl Task for AddFilesTask {
  type Output = AddFilesResult;
  type JsValue = AddFilesResult;
  fn compute(&mut self) -> napi::Result<AddFilesResult> {
    let items = self.items.take().ok_or_else(|| bad_arg("task ran twice"))?;
    with_writer(&self.shared, |w| {
      let p = des_core::pack_into(w, items, &self.opts, self.max).napi()?;
      Ok(AddFilesResult {
        consumed: p.consumed as u32,
        bytes_in: p.bytes_in as i64,
        bytes_stored: p.bytes_stored as i64,
      })
    })
  }
  fn resolve(&mut self, _env: Env, r: AddFilesResult) -> napi::Result<AddFilesResult> {
    Ok(r)
  }
}

pub(crate) fn summary_of(s: des_core::WriteSummary) -> ShardWriteSummary {
  ShardWriteSummary {
    path: s.path.display().to_string(),
    entries: s.entries as i64,
    added: s.added as i64,
    file_size: s.file_size as i64,
    index_size: s.index_size as i64,
    bytes_in: s.bytes_in as i64,
    bytes_stored: s.bytes_stored as i64,
    bigfiles: s.bigfiles as i64,
    bigfile_bytes_written: s.bigfile_bytes_written as i64,
    skipped: s.skipped,
  }
}

/// Writes index and footer, syncs and renames, off the event loop.
pub struct FinishTask {
  shared: Shared,
}

impl Task for FinishTask {
  type Output = ShardWriteSummary;
  type JsValue = ShardWriteSummary;
  fn compute(&mut self) -> napi::Result<ShardWriteSummary> {
    Ok(summary_of(take_writer(&self.shared)?.finish().napi()?))
  }
  fn resolve(&mut self, _env: Env, s: ShardWriteSummary) -> napi::Result<ShardWriteSummary> {
    Ok(s)
  }
}

/// Opens a writer that appends to an existing shard.
pub struct AppendTask {
  path: PathBuf,
  opts: WriterOptions,
  wait: bool,
}

impl Task for AppendTask {
  type Output = Option<des_core::ShardWriter>;
  type JsValue = Option<ShardWriter>;
  fn compute(&mut self) -> napi::Result<Option<des_core::ShardWriter>> {
    if self.wait {
      return des_core::ShardWriter::append(&self.path, self.opts.clone())
        .map(Some)
        .napi();
    }
    des_core::ShardWriter::try_append(&self.path, self.opts.clone()).napi()
  }
  fn resolve(
    &mut self,
    _env: Env,
    w: Option<des_core::ShardWriter>,
  ) -> napi::Result<Option<ShardWriter>> {
    Ok(w.map(|w| ShardWriter {
      shared: Arc::new(Mutex::new(Some(w))),
      opts: self.opts.clone(),
    }))
  }
}

/// Writes one v2 shard. Await each call before the next; a writer that is
/// aborted (or garbage-collected) before `finish` leaves no file at its path.
#[napi]
pub struct ShardWriter {
  shared: Shared,
  opts: WriterOptions,
}

#[napi]
impl ShardWriter {
  /// A new shard at `path`, replacing whatever is there on `finish`.
  #[napi(factory)]
  pub fn create(path: String, options: Option<ShardWriterOptions>) -> napi::Result<ShardWriter> {
    let opts = core_options(options)?;
    let w = des_core::ShardWriter::create(&path, opts.clone()).napi()?;
    Ok(ShardWriter {
      shared: Arc::new(Mutex::new(Some(w))),
      opts,
    })
  }

  /// A writer that adds to the shard at `path` (or starts it), off the
  /// event loop: waits for the shard's turn (concurrent appenders, other
  /// processes too, take turns), or, with `wait` false, resolves to null at
  /// once when another writer holds it (a caller holding other turns must
  /// not wait).
  #[napi(ts_return_type = "Promise<ShardWriter | null>")]
  pub fn append(
    path: String,
    options: Option<ShardWriterOptions>,
    wait: Option<bool>,
  ) -> napi::Result<AsyncTask<AppendTask>> {
    Ok(AsyncTask::new(AppendTask {
      path: PathBuf::from(path),
      opts: core_options(options)?,
      wait: wait.unwrap_or(true),
    }))
  }

  /// A writer that emits only what follows `old`'s data section (new data,
  /// merged index, footer) to `tailPath`: the final object is the old
  /// object's first `old.dataEnd` bytes followed by this file.
  #[napi(factory)]
  pub fn continue_after(
    old: &ShardReader,
    tail_path: String,
    options: Option<ShardWriterOptions>,
  ) -> napi::Result<ShardWriter> {
    let opts = core_options(options)?;
    let w = old.with_index(|index| {
      des_core::ShardWriter::continue_after(index, &tail_path, opts.clone()).napi()
    })?;
    Ok(ShardWriter {
      shared: Arc::new(Mutex::new(Some(w))),
      opts,
    })
  }

  fn add_files_task(&self, items: Vec<PackItem>, max: Option<i64>) -> AsyncTask<AddFilesTask> {
    AsyncTask::new(AddFilesTask {
      shared: self.shared.clone(),
      opts: self.opts.clone(),
      items: Some(items),
      max: max.map(|m| m.max(0) as u64),
    })
  }

  /// Compresses and appends one payload; resolves to its entry.
  #[napi(ts_return_type = "Promise<EntryInfo>")]
  pub fn add(&self, uid: String, data: Buffer, meta: Option<String>) -> AsyncTask<AddTask> {
    AsyncTask::new(AddTask {
      shared: self.shared.clone(),
      uid,
      data: Some(data.to_vec()),
      meta,
    })
  }

  /// Reads (local paths) and compresses many files on every core, writing
  /// them in order. Stops before the first file that would take the data
  /// section past `maxDataSize`; `consumed` says how many went in.
  #[napi(ts_return_type = "Promise<AddFilesResult>")]
  pub fn add_files(
    &self,
    files: Vec<PackFile>,
    max_data_size: Option<i64>,
  ) -> napi::Result<AsyncTask<AddFilesTask>> {
    let mut items = Vec::with_capacity(files.len());
    for f in files {
      let source = match (f.path, f.data) {
        (_, Some(data)) => PackSource::Bytes(data.to_vec()),
        (Some(path), None) => PackSource::Path {
          path: PathBuf::from(path),
          expected_size: f.size.map(|s| s.max(0) as u64),
        },
        (None, None) => {
          return Err(bad_arg(format!(
            "file {:?} has neither path nor data",
            f.uid
          )))
        }
      };
      items.push(PackItem {
        uid: f.uid,
        meta: f.meta,
        source,
      });
    }
    Ok(self.add_files_task(items, max_data_size))
  }

  /// `addFiles` for local files given as parallel arrays (`path_items`).
  #[napi(ts_return_type = "Promise<AddFilesResult>")]
  pub fn add_paths(
    &self,
    uids: Vec<String>,
    paths: Vec<String>,
    sizes: Vec<i64>,
    metas: Option<Vec<Option<String>>>,
    max_data_size: Option<i64>,
  ) -> napi::Result<AsyncTask<AddFilesTask>> {
    let items = path_items("addPaths", uids, paths, sizes, metas)?;
    Ok(self.add_files_task(items, max_data_size))
  }

  /// True if the uid is already in the shard being written.
  #[napi]
  pub fn has(&self, uid: String) -> napi::Result<bool> {
    with_writer(&self.shared, |w| Ok(w.contains(&uid)))
  }

  /// Entries so far, carried and added.
  #[napi(getter)]
  pub fn entry_count(&self) -> napi::Result<u32> {
    with_writer(&self.shared, |w| Ok(w.entries().len() as u32))
  }

  /// Size of the shard's data section so far (header + payloads).
  #[napi(getter)]
  pub fn data_size(&self) -> napi::Result<i64> {
    with_writer(&self.shared, |w| Ok(w.data_size() as i64))
  }

  /// Writes index and footer, syncs, and renames into place.
  #[napi(ts_return_type = "Promise<ShardWriteSummary>")]
  pub fn finish(&self) -> AsyncTask<FinishTask> {
    AsyncTask::new(FinishTask {
      shared: self.shared.clone(),
    })
  }

  /// Drops the writer: its temp file is removed, the target is untouched.
  #[napi]
  pub fn abort(&self) {
    if let Ok(mut guard) = self.shared.lock() {
      guard.take();
    }
  }
}

/// What one shard of a `StagedGroup` came to: its summary, or its error
/// (a coded message, as thrown errors carry).
#[napi(object)]
pub struct CommitOutcome {
  /// The shard's path, as the writer was opened with it.
  pub path: String,
  pub summary: Option<ShardWriteSummary>,
  pub error: Option<String>,
}

type StagedList = Arc<Mutex<Vec<des_core::Staged>>>;

/// Stages a writer's shard into a group, off the event loop.
pub struct StageTask {
  writer: Shared,
  group: StagedList,
}

impl Task for StageTask {
  type Output = ();
  type JsValue = ();
  fn compute(&mut self) -> napi::Result<()> {
    let staged = take_writer(&self.writer)?.stage().napi()?;
    self
      .group
      .lock()
      .map_err(|_| bad_arg("group is unusable after a panic"))?
      .push(staged);
    Ok(())
  }
  fn resolve(&mut self, _env: Env, _: ()) -> napi::Result<()> {
    Ok(())
  }
}

/// Commits a group, off the event loop.
pub struct CommitTask {
  group: StagedList,
}

impl Task for CommitTask {
  type Output = Vec<CommitOutcome>;
  type JsValue = Vec<CommitOutcome>;
  fn compute(&mut self) -> napi::Result<Vec<CommitOutcome>> {
    let staged = std::mem::take(
      &mut *self
        .group
        .lock()
        .map_err(|_| bad_arg("group is unusable after a panic"))?,
    );
    let paths: Vec<String> = staged
      .iter()
      .map(|s| s.path().display().to_string())
      .collect();
    Ok(
      des_core::commit(staged)
        .into_iter()
        .zip(paths)
        .map(|(r, path)| match r {
          Ok(s) => CommitOutcome {
            path,
            summary: Some(summary_of(s)),
            error: None,
          },
          Err(e) => CommitOutcome {
            path,
            summary: None,
            error: Some(crate::error::to_napi(e).reason),
          },
        })
        .collect(),
    )
  }
  fn resolve(&mut self, _env: Env, r: Vec<CommitOutcome>) -> napi::Result<Vec<CommitOutcome>> {
    Ok(r)
  }
}

/// Shards written but not yet synced nor in place, committed together: one
/// sync for the group instead of one per shard (`des_core::commit`).
#[napi]
pub struct StagedGroup {
  staged: StagedList,
}

#[napi]
impl StagedGroup {
  #[napi(constructor)]
  #[allow(clippy::new_without_default)]
  pub fn new() -> StagedGroup {
    StagedGroup {
      staged: Arc::new(Mutex::new(Vec::new())),
    }
  }

  /// Writes the writer's index and footer (or an append's new bytes) into
  /// the group; the writer is used up, its turn on the shard kept.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn stage(&self, writer: &ShardWriter) -> AsyncTask<StageTask> {
    AsyncTask::new(StageTask {
      writer: writer.shared.clone(),
      group: self.staged.clone(),
    })
  }

  /// Shards staged and not yet committed.
  #[napi(getter)]
  pub fn size(&self) -> u32 {
    self.staged.lock().map(|g| g.len() as u32).unwrap_or(0)
  }

  /// Syncs the group's shards together, puts each in place, and empties the
  /// group; one outcome per shard, in the order they were staged.
  #[napi(ts_return_type = "Promise<Array<CommitOutcome>>")]
  pub fn commit(&self) -> AsyncTask<CommitTask> {
    AsyncTask::new(CommitTask {
      group: self.staged.clone(),
    })
  }
}
