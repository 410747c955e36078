//! The packing loop: read and compress payloads on every core, write them in
//! order. Memory stays bounded by the batch budget, whatever the shard size.

use crate::error::{DesError, Result};
use crate::writer::{prepare, Prepared, ShardWriter, WriterOptions};
use rayon::prelude::*;
use std::path::PathBuf;

/// Bytes of payload read and compressed at once (per batch, across threads).
pub const BATCH_BYTES: u64 = 32 << 20;
const BATCH_ITEMS: usize = 512;

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
      } => {
        let data = std::fs::read(&path).map_err(|e| {
          DesError::io(
            format!("uid {:?}: read source {}", self.uid, path.display()),
            e,
          )
        })?;
        if let Some(want) = expected_size {
          if data.len() as u64 != want {
            return Err(DesError::BadArg(format!(
              "uid {:?}: source {} is {} bytes, the manifest says {want}",
              self.uid,
              path.display(),
              data.len()
            )));
          }
        }
        data
      }
    };
    prepare(&self.uid, data, self.meta.as_deref(), opts)
  }
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
    let prepared: Vec<Result<Prepared>> = batch
      .into_par_iter()
      .map(|item| item.load_and_prepare(opts))
      .collect();
    for p in prepared {
      let p = p?;
      let stored = match &p.kind {
        crate::writer::PreparedKind::Inline { stored, .. } => stored.len() as u64,
        crate::writer::PreparedKind::BigFile { .. }
        | crate::writer::PreparedKind::Stored { .. } => 0,
      };
      let has_any = !writer.entries().is_empty();
      if let Some(max) = max_data_size {
        if has_any && writer.data_size() + stored > max {
          return Ok(progress);
        }
      }
      progress.bytes_in += p.size;
      progress.bytes_stored += stored;
      writer.add_prepared(p)?;
      progress.consumed += 1;
    }
  }
  Ok(progress)
}
