//! The packing loop: read and compress payloads on every core, write them in
//! order. Memory stays bounded by the batch budget, whatever the shard size.

use crate::error::{DesError, Result};
use crate::meta::canonical_meta;
use crate::writer::{
  commit, prepare, Prepared, PreparedKind, ShardWriter, Staged, WriteSummary, WriterOptions,
};
use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes of payload read and compressed at once (per batch, across threads).
pub const BATCH_BYTES: u64 = 32 << 20;
const BATCH_ITEMS: usize = 512;
/// A batch lighter than this is read and compressed on the calling thread.
/// Handing it to the pool would cost more than it saves: a wake-up per
/// worker, and workers that run out of work spin (sched_yield) before they
/// sleep. Callers with many small parts (`des pack`: a few files per key)
/// keep the cores busy by writing several parts at once.
const PARALLEL_MIN_BYTES: u64 = 1 << 20;
/// Most a source read reserves up front from its expected size (a wrong
/// size in the input must not reserve memory the file does not fill).
pub(crate) const MAX_RESERVE: u64 = 64 << 20;

/// Where a payload comes from.
#[derive(Debug)]
pub enum PackSource {
  /// A local file; `expected_size`, when given, must match.
  Path {
    path: PathBuf,
    expected_size: Option<u64>,
  },
  /// Bytes already in memory (e.g. fetched from S3).
  Bytes(Vec<u8>),
}

/// One file to pack.
#[derive(Debug)]
pub struct PackItem {
  pub uid: String,
  /// Meta JSON object text, if any.
  pub meta: Option<String>,
  pub source: PackSource,
}

impl PackItem {
  fn weight(&self) -> u64 {
    match &self.source {
      PackSource::Path { expected_size, .. } => expected_size.unwrap_or(64 << 10),
      PackSource::Bytes(b) => b.len() as u64,
    }
  }

  fn load_and_prepare(self, opts: &WriterOptions) -> Result<Prepared> {
    let uid = self.uid.clone();
    self
      .load_and_prepare_inner(opts)
      .map_err(|e| e.for_uid(&uid))
  }

  fn load_and_prepare_inner(self, opts: &WriterOptions) -> Result<Prepared> {
    if let Some(p) = self.ahead(opts) {
      return Ok(p);
    }
    let data = match self.source {
      PackSource::Bytes(b) => b,
      PackSource::Path {
        path,
        expected_size,
      } => read_source(&self.uid, &path, expected_size)?,
    };
    prepare(&self.uid, data, self.meta.as_deref(), opts)
  }

  /// The payload read ahead for this item (`prefetch`), if one was.
  fn ahead(&self, opts: &WriterOptions) -> Option<Prepared> {
    let PackSource::Path {
      path,
      expected_size: Some(size),
    } = &self.source
    else {
      return None;
    };
    let ready = opts
      .prefetched
      .as_ref()?
      .take(&self.uid, path, *size, &opts.compression)?;
    if ready.size > opts.big_file_threshold {
      return None;
    }
    let meta = canonical_meta(self.meta.as_deref().unwrap_or("")).ok()?;
    Some(Prepared {
      uid: self.uid.clone(),
      meta,
      size: ready.size,
      kind: PreparedKind::Inline {
        codec: ready.codec,
        stored: ready.stored,
        crc: ready.crc,
      },
    })
  }
}

/// Reads a source file. With `want`, its size is checked by the read itself
/// (at most `want + 1` bytes are read, no separate stat); a file of another
/// size is refused.
pub(crate) fn read_source(uid: &str, path: &Path, want: Option<u64>) -> Result<Vec<u8>> {
  let failed = |e| DesError::io(format!("uid {uid:?}: read source {}", path.display()), e);
  let file = open_without_waiting(path).map_err(failed)?;
  // It was a regular file when checked; a FIFO put in its place since would block the read for ever.
  if !file.metadata().map_err(failed)?.is_file() {
    return Err(DesError::SourceChanged(format!(
      "uid {uid:?}: source {} is no longer a regular file",
      path.display()
    )));
  }
  let Some(want) = want else {
    let mut data = Vec::new();
    (&file).read_to_end(&mut data).map_err(failed)?;
    return Ok(data);
  };
  let mut data = Vec::with_capacity(want.min(MAX_RESERVE) as usize + 1);
  (&file)
    .take(want.saturating_add(1))
    .read_to_end(&mut data)
    .map_err(failed)?;
  let have = data.len() as u64;
  if have != want {
    // Longer than expected: only `want + 1` bytes were read; the stat says
    // how long, unless it says less than was read (a /proc file says 0).
    let size = match file.metadata() {
      Ok(m) if have > want && m.len() > want => m.len().to_string(),
      _ if have > want => format!("more than {want}"),
      _ => have.to_string(),
    };
    // Its size was checked before anything was written: it changed since.
    return Err(DesError::SourceChanged(format!(
      "uid {uid:?}: source {} is {size} bytes, the manifest says {want}",
      path.display()
    )));
  }
  Ok(data)
}

/// Opens a file for reading without waiting: a FIFO (with no writer) would
/// block the open itself. Reading a regular file is not changed by the flag.
pub(crate) fn open_without_waiting(path: &Path) -> std::io::Result<std::fs::File> {
  let mut options = std::fs::OpenOptions::new();
  options.read(true);
  #[cfg(unix)]
  {
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(libc::O_NONBLOCK);
  }
  options.open(path)
}

/// What a look at a local source found (`stat_sources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStat {
  /// A regular file (symlinks followed) of this many bytes.
  File(u64),
  /// Nothing there (or a path through something that is not a folder).
  Missing,
  NotFile,
  /// Any other failure (permissions, I/O), in words.
  Unreadable(String),
}

/// Looks at many local sources on every core, without reading them: the
/// checks a run makes before it writes anything. Results in order.
pub fn stat_sources(paths: &[PathBuf]) -> Vec<SourceStat> {
  paths
    .par_iter()
    .with_min_len(256)
    .map(|path| match std::fs::metadata(path) {
      Ok(m) if m.is_file() => SourceStat::File(m.len()),
      Ok(_) => SourceStat::NotFile,
      // A path through a file (ENOTDIR) is as good as missing.
      Err(e)
        if matches!(
          e.kind(),
          std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
        ) =>
      {
        SourceStat::Missing
      }
      Err(e) => SourceStat::Unreadable(e.to_string()),
    })
    .collect()
}

/// What one `pack_into` call did.
#[derive(Debug, Clone, Copy, Default)]
pub struct PackProgress {
  /// Items written (a prefix of the input).
  pub consumed: usize,
  pub bytes_in: u64,
  pub bytes_stored: u64,
}

/// Adds `items` to `writer` in order. Stops early, before the first item that
/// would take the shard's data past `max_data_size` (a shard always takes at
/// least one item), so the caller can continue in a new shard with the rest.
/// Duplicate uids are refused before any work is done.
pub fn pack_into(
  writer: &mut ShardWriter,
  items: Vec<PackItem>,
  opts: &WriterOptions,
  max_data_size: Option<u64>,
) -> Result<PackProgress> {
  let mut seen = std::collections::HashSet::with_capacity(items.len());
  for item in &items {
    if !seen.insert(item.uid.as_str()) || (writer.contains(&item.uid) && !opts.replace) {
      return Err(DesError::Duplicate(item.uid.clone()));
    }
  }
  drop(seen);
  writer.set_size_limit(max_data_size);
  let mut progress = PackProgress::default();
  let mut rest = items.into_iter().peekable();
  while rest.peek().is_some() {
    let mut batch = Vec::new();
    let mut weight = 0;
    while let Some(item) = rest.peek() {
      if !batch.is_empty() && (weight + item.weight() > BATCH_BYTES || batch.len() >= BATCH_ITEMS) {
        break;
      }
      weight += item.weight();
      batch.extend(rest.next());
    }
    if weight < PARALLEL_MIN_BYTES || batch.len() == 1 {
      for item in batch {
        let p = item.load_and_prepare(opts)?;
        if !place(writer, p, max_data_size, &mut progress)? {
          return Ok(progress);
        }
      }
    } else {
      let prepared: Vec<Result<Prepared>> = batch
        .into_par_iter()
        .map(|item| item.load_and_prepare(opts))
        .collect();
      for p in prepared {
        if !place(writer, p?, max_data_size, &mut progress)? {
          return Ok(progress);
        }
      }
    }
  }
  Ok(progress)
}

/// One part of a `pack_parts` batch: files to add to the shard at `target`
/// (created if absent).
#[derive(Debug)]
pub struct PartJob {
  pub target: PathBuf,
  pub items: Vec<PackItem>,
  /// A uid already in the shard is skipped; otherwise it is an error.
  pub skip_existing: bool,
  /// As in `pack_into`: the part takes files while its data stays within this.
  pub max_data_size: Option<u64>,
  /// BigFiles of this part go here (else the options' folder).
  pub bigfiles_dir: Option<PathBuf>,
  /// Wait for the shard's turn when another writer holds it. Only a part
  /// alone in its batch waits (holding no other turn); in a batch of more,
  /// a part whose turn is held elsewhere comes back `busy`.
  pub wait: bool,
}

/// What one part of a batch came to.
#[derive(Debug)]
pub struct PartOutcome {
  /// Positions (in the job's items) of the uids skipped as already stored.
  pub skipped: Vec<usize>,
  /// How many of the other items went in, in order (a prefix of them); the
  /// rest did not fit under `max_data_size`.
  pub consumed: usize,
  /// The stored part; None when nothing was added (it was left as it was).
  pub summary: Option<WriteSummary>,
  /// Another writer held the shard's turn: nothing was done; the caller
  /// packs this part again, alone (`wait`), once it holds no other turn.
  pub busy: bool,
}

/// The threads a batch of parts is filled on: twice the cores (as the
/// system allows this process: a cgroup quota included), because a part's
/// thread waits on the disk for its direct writes (`shard_out`) while
/// another's compresses; with only as many threads as cores, the cores stood
/// idle for those waits. None if no pool could be made (the global one is used).
fn part_pool() -> Option<&'static rayon::ThreadPool> {
  static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
  POOL
    .get_or_init(|| {
      let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
      rayon::ThreadPoolBuilder::new()
        .num_threads(2 * cores)
        .thread_name(|i| format!("des-part-{i}"))
        .build()
        .ok()
    })
    .as_ref()
}

/// Packs many parts with one call: each part is filled on a thread of the
/// pool (its turn taken, its sources read and compressed, its bytes staged),
/// then all of them are committed together (`commit`: their syncs started
/// together and overlapping, then each put in place). A part's failure is its own; the others
/// are still stored. Outcomes come in the order of the jobs.
pub fn pack_parts(jobs: Vec<PartJob>, opts: &WriterOptions) -> Vec<Result<PartOutcome>> {
  // A part alone is filled on this thread: if it waits for its turn, it
  // does not hold one of the pool's threads while it waits.
  let alone = jobs.len() == 1;
  let filled: Vec<Result<(Option<Staged>, PartOutcome)>> = if alone {
    jobs
      .into_iter()
      .map(|job| fill_part(job, opts, true))
      .collect()
  } else {
    let fill_all = || {
      jobs
        .into_par_iter()
        .map(|job| fill_part(job, opts, false))
        .collect()
    };
    match part_pool() {
      Some(pool) => pool.install(fill_all),
      None => fill_all(),
    }
  };
  let mut staged = Vec::new();
  // Each part's outcome, with where its staged shard is in `staged`.
  let waiting: Vec<Result<(Option<usize>, PartOutcome)>> = filled
    .into_iter()
    .map(|r| {
      r.map(|(s, outcome)| {
        let at = s.map(|s| {
          staged.push(s);
          staged.len() - 1
        });
        (at, outcome)
      })
    })
    .collect();
  let mut committed: Vec<Option<Result<WriteSummary>>> =
    commit(staged).into_iter().map(Some).collect();
  waiting
    .into_iter()
    .map(|r| {
      let (at, mut outcome) = r?;
      if let Some(i) = at {
        let summary = committed[i]
          .take()
          .unwrap_or_else(|| Err(DesError::BadArg("part committed twice".to_string())))?;
        outcome.summary = Some(summary);
      }
      Ok(outcome)
    })
    .collect()
}

/// Fills one part and stages it (nothing staged when nothing was added).
fn fill_part(
  job: PartJob,
  opts: &WriterOptions,
  alone: bool,
) -> Result<(Option<Staged>, PartOutcome)> {
  let mut opts = opts.clone();
  if job.bigfiles_dir.is_some() {
    opts.bigfiles_dir = job.bigfiles_dir;
  }
  opts.skip_existing = job.skip_existing;
  let writer = if job.wait && alone {
    Some(ShardWriter::append(&job.target, opts.clone())?)
  } else {
    ShardWriter::try_append(&job.target, opts.clone())?
  };
  let Some(mut writer) = writer else {
    let busy = PartOutcome {
      skipped: Vec::new(),
      consumed: 0,
      summary: None,
      busy: true,
    };
    return Ok((None, busy));
  };
  let mut skipped = Vec::new();
  let mut items = job.items;
  if job.skip_existing && !opts.replace && !writer.entries().is_empty() {
    let mut kept = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
      if writer.contains(&item.uid) {
        skipped.push(i);
      } else {
        kept.push(item);
      }
    }
    items = kept;
  }
  let progress = pack_into(&mut writer, items, &opts, job.max_data_size)?;
  let outcome = PartOutcome {
    skipped,
    consumed: progress.consumed,
    summary: None,
    busy: false,
  };
  // Nothing added: the writer is dropped, the part stays as it was.
  let staged = if progress.consumed > 0 {
    Some(writer.stage_deferred()?)
  } else {
    None
  };
  Ok((staged, outcome))
}

/// Adds one prepared payload, unless it would take a shard that holds
/// something past `max_data_size` (then false: the caller stops there).
fn place(
  writer: &mut ShardWriter,
  p: Prepared,
  max_data_size: Option<u64>,
  progress: &mut PackProgress,
) -> Result<bool> {
  let stored = match &p.kind {
    PreparedKind::Inline { stored, .. } => stored.len() as u64,
    PreparedKind::BigFile { .. } | PreparedKind::Stored { .. } => 0,
  };
  if let Some(max) = max_data_size {
    if !writer.entries().is_empty() && writer.data_size() + stored > max {
      return Ok(false);
    }
  }
  progress.bytes_in += p.size;
  progress.bytes_stored += stored;
  writer.add_prepared(p)?;
  progress.consumed += 1;
  Ok(true)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::reader::ShardFile;

  fn file_item(dir: &Path, uid: &str, data: &[u8], expected_size: Option<u64>) -> PackItem {
    let path = dir.join(uid);
    std::fs::write(&path, data).unwrap();
    PackItem {
      uid: uid.to_string(),
      meta: None,
      source: PackSource::Path {
        path,
        expected_size,
      },
    }
  }

  /// `n` files of `size` bytes each, each declared with its true size.
  fn items(dir: &Path, n: usize, size: usize) -> Vec<PackItem> {
    (0..n)
      .map(|i| {
        let data: Vec<u8> = (0..size).map(|b| (b * 31 + i * 7) as u8).collect();
        file_item(dir, &format!("u{i}"), &data, Some(size as u64))
      })
      .collect()
  }

  fn pack(items: Vec<PackItem>, max: Option<u64>) -> (PackProgress, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("0A.des");
    let mut w = ShardWriter::create(&target, WriterOptions::default()).unwrap();
    let progress = pack_into(&mut w, items, &WriterOptions::default(), max).unwrap();
    w.finish().unwrap();
    let shard = ShardFile::open(&target).unwrap();
    (progress, shard.index().entries().map(|e| e.uid).collect())
  }

  #[test]
  fn small_and_large_batches_keep_the_input_order_and_stop_at_the_same_item() {
    let dir = tempfile::tempdir().unwrap();
    // 8 files of 4 KiB: below PARALLEL_MIN_BYTES, prepared on this thread.
    let small = pack(items(dir.path(), 8, 4 << 10), None);
    assert_eq!(small.1, (0..8).map(|i| format!("u{i}")).collect::<Vec<_>>());
    // 40 files of 64 KiB: above it, prepared on the pool; same order.
    let large = pack(items(dir.path(), 40, 64 << 10), None);
    assert_eq!(
      large.1,
      (0..40).map(|i| format!("u{i}")).collect::<Vec<_>>()
    );
    assert_eq!(large.0.consumed, 40);
    assert_eq!(large.0.bytes_in, 40 * (64 << 10));
    // A data-size limit stops both paths before the same file.
    let codec_none = |mut o: WriterOptions| {
      o.compression.codec = crate::entry::Codec::None;
      o
    };
    for (n, size) in [(8usize, 4usize << 10), (40, 64 << 10)] {
      let sub = tempfile::tempdir().unwrap();
      let target = sub.path().join("0B.des");
      let opts = codec_none(WriterOptions::default());
      let mut w = ShardWriter::create(&target, opts.clone()).unwrap();
      let header = w.data_size();
      let max = header + 3 * size as u64;
      let p = pack_into(&mut w, items(sub.path(), n, size), &opts, Some(max)).unwrap();
      assert_eq!(p.consumed, 3, "{n} files of {size} bytes");
    }
  }

  fn job(target: PathBuf, items: Vec<PackItem>) -> PartJob {
    PartJob {
      target,
      items,
      skip_existing: false,
      max_data_size: None,
      bigfiles_dir: None,
      wait: false,
    }
  }

  fn uids_in(path: &Path) -> Vec<String> {
    let shard = ShardFile::open(path).unwrap();
    shard.index().entries().map(|e| e.uid).collect()
  }

  #[test]
  fn a_batch_of_parts_stores_each_and_a_failing_part_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let opts = WriterOptions::default();
    // An existing shard, appended to by the batch.
    let old = dir.path().join("d/01.des");
    let mut w = ShardWriter::append(&old, opts.clone()).unwrap();
    w.add("old", b"old bytes".to_vec(), None).unwrap();
    w.finish().unwrap();

    let mut jobs = Vec::new();
    for k in 0..5 {
      let items = (0..3)
        .map(|i| file_item(&src, &format!("k{k}-{i}"), &[k as u8; 100], Some(100)))
        .collect();
      jobs.push(job(dir.path().join(format!("d/1{k}.des")), items));
    }
    jobs.push(job(
      old.clone(),
      vec![file_item(&src, "new", b"new", Some(3))],
    ));
    // A source whose size is not the declared one: its part fails, alone.
    let bad_target = dir.path().join("d/20.des");
    jobs.push(job(
      bad_target.clone(),
      vec![
        file_item(&src, "fine", b"fine", Some(4)),
        file_item(&src, "short", b"abc", Some(10)),
      ],
    ));
    let outcomes = pack_parts(jobs, &opts);
    assert_eq!(outcomes.len(), 7);
    for (k, o) in outcomes[..5].iter().enumerate() {
      let o = o.as_ref().unwrap();
      assert_eq!((o.consumed, o.skipped.len()), (3, 0));
      let s = o.summary.as_ref().unwrap();
      assert_eq!((s.added, s.bytes_in), (3, 300));
      let path = dir.path().join(format!("d/1{k}.des"));
      assert_eq!(
        uids_in(&path),
        (0..3).map(|i| format!("k{k}-{i}")).collect::<Vec<_>>()
      );
    }
    assert_eq!(outcomes[5].as_ref().unwrap().consumed, 1);
    assert_eq!(uids_in(&old), vec!["old".to_string(), "new".to_string()]);
    let err = outcomes[6].as_ref().unwrap_err();
    assert_eq!(
      (err.code(), err.uid()),
      ("DES_SOURCE_CHANGED", Some("short"))
    );
    assert!(!bad_target.exists(), "a failed new part is not created");
    // Nothing but shards is left in the folder (no temp files).
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("d"))
      .unwrap()
      .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
      .collect();
    names.sort();
    assert_eq!(
      names,
      vec!["01.des", "10.des", "11.des", "12.des", "13.des", "14.des"]
    );
  }

  #[test]
  fn parts_take_the_payloads_read_ahead_and_store_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let text = |k: usize| {
      format!(
        "{{\"invoice\": {k}, \"lines\": [{}]}}",
        "1, ".repeat(50 + k)
      )
      .into_bytes()
    };
    let jobs = |store: &str| -> Vec<PartJob> {
      (0..4)
        .map(|k| {
          let items = (0..3)
            .map(|i| {
              file_item(
                &src,
                &format!("k{k}-{i}.json"),
                &text(k * 3 + i),
                Some(text(k * 3 + i).len() as u64),
              )
            })
            .collect();
          job(dir.path().join(format!("{store}/1{k}.des")), items)
        })
        .collect()
    };
    let plain = WriterOptions::default();
    assert!(pack_parts(jobs("plain"), &plain).iter().all(|o| o.is_ok()));

    let ahead = crate::prefetch::Prefetch::start(
      plain.compression.clone(),
      plain.big_file_threshold,
      1 << 20,
      2,
    );
    let sources: Vec<crate::prefetch::Ahead> = (0..12)
      .map(|n| crate::prefetch::Ahead {
        uid: format!("k{}-{}.json", n / 3, n % 3),
        path: src.join(format!("k{}-{}.json", n / 3, n % 3)),
        expected_size: text(n).len() as u64,
      })
      .collect();
    ahead.add(sources);
    ahead.settle();
    assert_eq!(ahead.made().len(), 12);
    let opts = WriterOptions {
      prefetched: Some(ahead.clone()),
      ..WriterOptions::default()
    };
    assert!(pack_parts(jobs("ahead"), &opts).iter().all(|o| o.is_ok()));
    assert!(
      ahead.made().is_empty(),
      "every payload read ahead was taken"
    );
    for k in 0..4 {
      let name = format!("1{k}.des");
      let (a, b) = (
        dir.path().join("plain").join(&name),
        dir.path().join("ahead").join(&name),
      );
      assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{name}"
      );
    }
  }

  #[test]
  fn a_source_changed_after_its_read_ahead_is_stored_as_it_is_now_or_refused_as_changed() {
    // What a writer that read it itself would do: the payload read ahead
    // before the change is not stored.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let before = b"{\"invoice\": 1, \"total\": 100}".to_vec();
    let after = b"{\"invoice\": 1, \"total\": 999}".to_vec();
    let plain = WriterOptions::default();
    let ahead = crate::prefetch::Prefetch::start(
      plain.compression.clone(),
      plain.big_file_threshold,
      1 << 20,
      1,
    );
    let item = |uid: &str, data: &[u8]| file_item(&src, uid, data, Some(data.len() as u64));
    let (rewritten, grown) = (item("rewritten", &before), item("grown", &before));
    ahead.add(
      ["rewritten", "grown"]
        .iter()
        .map(|uid| crate::prefetch::Ahead {
          uid: uid.to_string(),
          path: src.join(uid),
          expected_size: before.len() as u64,
        })
        .collect(),
    );
    ahead.settle();
    assert_eq!(ahead.made().len(), 2);
    // As many bytes, other ones, put in its place; and one grown.
    std::fs::write(src.join("new"), &after).unwrap();
    std::fs::rename(src.join("new"), src.join("rewritten")).unwrap();
    std::fs::write(src.join("grown"), [&before[..], b"more"].concat()).unwrap();
    let opts = WriterOptions {
      prefetched: Some(ahead.clone()),
      ..WriterOptions::default()
    };
    let outcomes = pack_parts(
      vec![
        job(dir.path().join("d/01.des"), vec![rewritten]),
        job(dir.path().join("d/02.des"), vec![grown]),
      ],
      &opts,
    );
    assert!(outcomes[0].is_ok());
    let shard = ShardFile::open(dir.path().join("d/01.des")).unwrap();
    assert_eq!(shard.read("rewritten", "_bigFiles").unwrap(), after);
    let err = outcomes[1].as_ref().unwrap_err();
    assert_eq!(
      (err.code(), err.uid()),
      ("DES_SOURCE_CHANGED", Some("grown"))
    );
    assert!(!dir.path().join("d/02.des").exists());
  }

  #[test]
  fn a_part_whose_turn_is_held_comes_back_busy_in_a_batch_and_waits_alone() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions::default();
    let held = dir.path().join("0E.des");
    let mut w = ShardWriter::append(&held, opts.clone()).unwrap();
    w.add("old", b"old".to_vec(), None).unwrap();
    w.finish().unwrap();
    let before = std::fs::read(&held).unwrap();
    // Another writer holds the shard's turn.
    let holder = ShardWriter::append(&held, opts.clone()).unwrap();
    let free = dir.path().join("0F.des");
    let mut waiting = job(
      held.clone(),
      vec![file_item(dir.path(), "a", b"aa", Some(2))],
    );
    waiting.wait = true; // not alone: it does not wait
    let outcomes = pack_parts(
      vec![
        waiting,
        job(
          free.clone(),
          vec![file_item(dir.path(), "b", b"bb", Some(2))],
        ),
      ],
      &opts,
    );
    let busy = outcomes[0].as_ref().unwrap();
    assert!(busy.busy && busy.consumed == 0 && busy.summary.is_none());
    assert_eq!(
      std::fs::read(&held).unwrap(),
      before,
      "nothing written to the held shard"
    );
    assert_eq!(uids_in(&free), vec!["b"]);
    // Alone and told to wait, it gets its turn when the holder lets go.
    let mut alone = job(
      held.clone(),
      vec![file_item(dir.path(), "a", b"aa", Some(2))],
    );
    alone.wait = true;
    let later = std::thread::spawn(move || pack_parts(vec![alone], &WriterOptions::default()));
    drop(holder);
    let o = later.join().unwrap().pop().unwrap().unwrap();
    assert!(!o.busy && o.consumed == 1);
    assert_eq!(uids_in(&held), vec!["old", "a"]);
  }

  #[test]
  fn a_batch_part_skips_or_refuses_stored_uids_and_stops_at_its_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions::default();
    let target = dir.path().join("0C.des");
    let mut w = ShardWriter::append(&target, opts.clone()).unwrap();
    w.add("b", b"stored".to_vec(), None).unwrap();
    w.finish().unwrap();
    let stored = std::fs::read(&target).unwrap();
    let three = |tag: &str| {
      ["a", "b", "c"]
        .iter()
        .map(|u| file_item(dir.path(), u, format!("{tag}{u}").as_bytes(), Some(2)))
        .collect::<Vec<_>>()
    };
    // Without skip_existing, a stored uid fails the part and changes nothing.
    let refused = pack_parts(vec![job(target.clone(), three("x"))], &opts);
    let err = refused[0].as_ref().unwrap_err();
    assert_eq!((err.code(), err.uid()), ("DES_DUPLICATE", Some("b")));
    assert_eq!(std::fs::read(&target).unwrap(), stored);
    // With it, "b" is skipped (its position reported) and the others go in.
    let mut skipping = job(target.clone(), three("y"));
    skipping.skip_existing = true;
    let o = pack_parts(vec![skipping], &opts).pop().unwrap().unwrap();
    assert_eq!((o.skipped, o.consumed), (vec![1], 2));
    assert_eq!(uids_in(&target), vec!["b", "a", "c"]);
    // A limit the shard has already reached: nothing goes in, nothing is written.
    let before = std::fs::read(&target).unwrap();
    let mut full = job(
      target.clone(),
      vec![file_item(dir.path(), "d", b"dd", Some(2))],
    );
    full.max_data_size = Some(1);
    let o = pack_parts(vec![full], &opts).pop().unwrap().unwrap();
    assert_eq!((o.consumed, o.summary.is_none()), (0, true));
    assert_eq!(std::fs::read(&target).unwrap(), before);
  }

  #[test]
  fn sources_are_stated_in_order_as_files_missing_or_not_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"12345").unwrap();
    let paths = vec![
      file.clone(),
      dir.path().join("absent"),
      dir.path().to_path_buf(),
      file.join("through-a-file"),
    ];
    assert_eq!(
      stat_sources(&paths),
      vec![
        SourceStat::File(5),
        SourceStat::Missing,
        SourceStat::NotFile,
        SourceStat::Missing
      ]
    );
  }

  #[test]
  fn a_source_of_another_size_than_declared_is_refused_as_changed_with_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for (uid, declared) in [("short", 10u64), ("long", 3)] {
      let item = file_item(dir.path(), uid, b"0123456", Some(declared));
      let target = dir.path().join(format!("{uid}.des"));
      let mut w = ShardWriter::create(&target, WriterOptions::default()).unwrap();
      let err = pack_into(&mut w, vec![item], &WriterOptions::default(), None).unwrap_err();
      let msg = err.to_string();
      // Its size was checked before the read: it changed since.
      assert_eq!(err.code(), "DES_SOURCE_CHANGED", "{msg}");
      assert!(
        msg.contains("is 7 bytes") && msg.contains(&format!("says {declared}")),
        "{msg}"
      );
    }
    // A file whose stat says less than it holds (as /proc files say 0).
    #[cfg(target_os = "linux")]
    {
      let item = PackItem {
        uid: "proc".into(),
        meta: None,
        source: PackSource::Path {
          path: "/proc/self/status".into(),
          expected_size: Some(0),
        },
      };
      let target = dir.path().join("proc.des");
      let mut w = ShardWriter::create(&target, WriterOptions::default()).unwrap();
      let msg = pack_into(&mut w, vec![item], &WriterOptions::default(), None)
        .unwrap_err()
        .to_string();
      assert!(
        msg.contains("is more than 0 bytes, the manifest says 0"),
        "{msg}"
      );
    }
    // A FIFO put where the checked file was: refused as changed, not waited on for ever.
    #[cfg(unix)]
    {
      use std::io::Write;
      let fifo = dir.path().join("fifo");
      let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
      assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
      // A writer holding bytes in it, so that even a read that waits on it ends.
      let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
      writer.write_all(b"abcd").unwrap();
      let item = PackItem {
        uid: "fifo".into(),
        meta: None,
        source: PackSource::Path {
          path: fifo.clone(),
          expected_size: Some(3),
        },
      };
      let target = dir.path().join("fifo.des");
      let mut w = ShardWriter::create(&target, WriterOptions::default()).unwrap();
      let err = pack_into(&mut w, vec![item], &WriterOptions::default(), None).unwrap_err();
      assert_eq!(err.code(), "DES_SOURCE_CHANGED", "{err}");
      assert!(
        err.to_string().contains("is no longer a regular file"),
        "{err}"
      );
    }
    // No declared size: read whole, whatever its length.
    let item = file_item(dir.path(), "free", b"abc", None);
    let (p, uids) = pack(vec![item], None);
    assert_eq!(
      (p.consumed, p.bytes_in, uids),
      (1, 3, vec!["free".to_string()])
    );
  }
}
