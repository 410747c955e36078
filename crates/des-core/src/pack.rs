//! The packing loop: read and compress payloads on every core, write them in
//! order. Memory stays bounded by the batch budget, whatever the shard size.

use crate::error::{DesError, Result};
use crate::writer::{prepare, Prepared, PreparedKind, ShardWriter, WriterOptions};
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
const MAX_RESERVE: u64 = 64 << 20;

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
    let data = match self.source {
      PackSource::Bytes(b) => b,
      PackSource::Path {
        path,
        expected_size,
      } => read_source(&self.uid, &path, expected_size)?,
    };
    prepare(&self.uid, data, self.meta.as_deref(), opts)
  }
}

/// Reads a source file. With `want`, its size is checked by the read itself
/// (at most `want + 1` bytes are read, no separate stat); a file of another
/// size is refused.
fn read_source(uid: &str, path: &Path, want: Option<u64>) -> Result<Vec<u8>> {
  let failed = |e| DesError::io(format!("uid {uid:?}: read source {}", path.display()), e);
  let Some(want) = want else {
    return std::fs::read(path).map_err(failed);
  };
  let file = std::fs::File::open(path).map_err(failed)?;
  let mut data = Vec::with_capacity(want.min(MAX_RESERVE) as usize + 1);
  (&file)
    .take(want.saturating_add(1))
    .read_to_end(&mut data)
    .map_err(failed)?;
  let have = data.len() as u64;
  if have != want {
    // Longer than expected: only `want + 1` bytes were read; the stat says how long.
    let size = match file.metadata() {
      Ok(m) if have > want => m.len(),
      _ => have,
    };
    return Err(DesError::BadArg(format!(
      "uid {uid:?}: source {} is {size} bytes, the manifest says {want}",
      path.display()
    )));
  }
  Ok(data)
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

  #[test]
  fn a_source_of_another_size_than_declared_is_refused_with_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for (uid, declared) in [("short", 10u64), ("long", 3)] {
      let item = file_item(dir.path(), uid, b"0123456", Some(declared));
      let target = dir.path().join(format!("{uid}.des"));
      let mut w = ShardWriter::create(&target, WriterOptions::default()).unwrap();
      let err = pack_into(&mut w, vec![item], &WriterOptions::default(), None).unwrap_err();
      let msg = err.to_string();
      assert_eq!(err.code(), "DES_BAD_ARG", "{msg}");
      assert!(
        msg.contains("is 7 bytes") && msg.contains(&format!("says {declared}")),
        "{msg}"
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
