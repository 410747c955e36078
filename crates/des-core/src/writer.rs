//! Writing shards: payloads stream to a temp file beside the target, the index
//! and footer are written on `finish`, then the temp file is renamed over the
//! target; an append to one of our shards instead writes the temp file's bytes
//! after the shard's end in place (see `append`). A writer dropped before
//! `finish` leaves the target as it was.

use crate::append::{self, OldEnd};
use crate::bigfile::{sha256_hex, DEFAULT_BIGFILES_PREFIX, DEFAULT_BIG_FILE_THRESHOLD};
use crate::checksum::{crc32c, Retired};
use crate::codec::CompressionPolicy;
use crate::entry::{Body, Codec, Entry};
use crate::error::{DesError, Result};
use crate::format::{footer_bytes, header_bytes, HEADER_SIZE};
use crate::index::{encode_index, ShardIndex};
use crate::lock::{bigfile_turn, take_turn, ShardLock, Turn};
use crate::meta::canonical_meta;
use crate::reader::{decode_payload, read_exact_at, ShardFile};
use crate::shard_out::ShardOut;
use crate::temps::{self, temp_beside};
use crate::verify::crc_of_range;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// How a writer stores payloads.
#[derive(Debug, Clone)]
pub struct WriterOptions {
  pub compression: CompressionPolicy,
  /// Payloads larger than this become BigFiles.
  pub big_file_threshold: u64,
  /// Folder for BigFiles; `None` means `<shard dir>/_bigFiles`.
  pub bigfiles_dir: Option<PathBuf>,
  /// When appending, a uid already in the shard replaces the old entry
  /// instead of failing.
  pub replace: bool,
  /// A uid that turns out to be in the shard already is skipped instead of
  /// failing: where a writer finds a shard it did not open (it lost the race
  /// to create it and adds to the winner's).
  pub skip_existing: bool,
  /// A new shard file is written past the page cache where the system
  /// allows (`shard_out`): for a packer whose shards nobody reads back soon.
  pub write_past_cache: bool,
  /// Payloads read and compressed ahead for this run (`prefetch`), taken
  /// by the items they were made for.
  pub prefetched: Option<std::sync::Arc<crate::prefetch::Prefetch>>,
}

impl Default for WriterOptions {
  fn default() -> Self {
    WriterOptions {
      compression: CompressionPolicy::default(),
      big_file_threshold: DEFAULT_BIG_FILE_THRESHOLD,
      bigfiles_dir: None,
      replace: false,
      skip_existing: false,
      write_past_cache: false,
      prefetched: None,
    }
  }
}

/// A payload made ready for the shard (compressed, or hashed as a BigFile).
/// Preparing is pure, so many can be prepared in parallel and written in order.
#[derive(Debug)]
pub struct Prepared {
  pub uid: String,
  pub meta: String,
  pub size: u64,
  pub kind: PreparedKind,
}

/// What a prepared payload holds.
#[derive(Debug)]
pub enum PreparedKind {
  /// `crc` is the CRC32C of `stored`, computed where it was compressed.
  Inline {
    codec: Codec,
    stored: Vec<u8>,
    crc: u32,
  },
  BigFile {
    sha256: String,
    data: Vec<u8>,
  },
  /// A BigFile whose object is already stored.
  Stored {
    sha256: String,
  },
}

/// Compresses (or hashes, past the BigFile threshold) one payload.
pub fn prepare(
  uid: &str,
  data: Vec<u8>,
  meta_json: Option<&str>,
  opts: &WriterOptions,
) -> Result<Prepared> {
  let meta = canonical_meta(meta_json.unwrap_or(""))?;
  let size = data.len() as u64;
  let kind = if size > opts.big_file_threshold {
    PreparedKind::BigFile {
      sha256: sha256_hex(&data),
      data,
    }
  } else {
    let (codec, stored) = opts.compression.encode_owned(uid, data)?;
    let crc = crc32c(&stored);
    PreparedKind::Inline { codec, stored, crc }
  };
  Ok(Prepared {
    uid: uid.to_string(),
    meta,
    size,
    kind,
  })
}

/// What `finish` wrote.
#[derive(Debug, Clone)]
pub struct WriteSummary {
  pub path: PathBuf,
  pub entries: u64,
  /// Entries added by this writer (not carried over from an existing shard).
  pub added: u64,
  pub file_size: u64,
  pub index_size: u64,
  /// Uncompressed bytes of the payloads this writer added.
  pub bytes_in: u64,
  /// Bytes those payloads take in the shard.
  pub bytes_stored: u64,
  pub bigfiles: u64,
  /// Bytes of the BigFiles this writer wrote to the BigFile folder; one
  /// already there with the same bytes is kept, not written, so not counted.
  pub bigfile_bytes_written: u64,
  /// uids this writer held that the shard already had when it landed (it
  /// lost the race to create it, with `skip_existing`): not added by it.
  pub skipped: Vec<String>,
}

/// Streams a v2 shard to a temp file and renames it over `target` on finish.
pub struct ShardWriter {
  target: PathBuf,
  tmp: Option<ShardOut>,
  /// Logical position in the final shard of the next payload byte.
  pos: u64,
  /// Where the bytes this writer emits start in the final shard (0, or the
  /// old data end when emitting only the new tail of an object on S3).
  emit_base: u64,
  entries: Vec<Entry>,
  by_uid: HashMap<String, usize>,
  /// Dead data-section ranges (replaced entries, gaps of an older shard),
  /// kept with their checksums so every stored byte stays covered.
  retired: Vec<Retired>,
  opts: WriterOptions,
  bigfiles_dir: PathBuf,
  added: u64,
  bytes_in: u64,
  /// Inline bytes only: the shard's data size, which size limits compare.
  bytes_stored: u64,
  bigfiles: u64,
  bigfile_bytes_written: u64,
  /// The data-section size the caller fills up to (`pack_into`'s limit):
  /// a writer that lost the race to create its shard adds to the winner's
  /// only within it.
  size_limit: Option<u64>,
  /// How `finish` puts the file at the target.
  landing: Landing,
  /// Held until finished or dropped, so writers of one shard take turns.
  _lock: Option<ShardLock>,
  /// The target's folder, when this writer created it: removed again if the
  /// writer is dropped unfinished, so a refused write leaves nothing behind.
  created_dir: Option<PathBuf>,
}

/// How a finished shard reaches its target.
#[derive(Debug)]
enum Landing {
  /// Renamed over whatever is there (a shard we hold the turn on, or an
  /// explicit `create`).
  Replace,
  /// Renamed only if nothing is there; if another writer created the shard
  /// meanwhile, our entries are appended to theirs instead.
  CreateNew,
  /// The temp file holds only new payloads: they, a new index and a new
  /// footer are written after the old shard's end, in place.
  InPlace(OldEnd),
}

/// True when more than half of the file would be dead bytes once an append
/// in place retired its index too: then the shard is compacted instead.
/// Each append in place leaves the old index behind, so without this a shard
/// of many small entries appended to often would grow with the square of its
/// appends; compacting when dead bytes pass the live ones keeps the file
/// under twice its live size at a cost, spread over the appends between two
/// compactions, of about two index writes each.
fn mostly_dead(old: &ShardFile) -> bool {
  let index = old.index();
  let retired: u64 = index.retired().iter().map(|r| r.length).sum();
  let dead = retired + index.index_size() + crate::format::FOOTER_SIZE;
  dead.saturating_mul(2) > old.size()
}

/// Shards we wrote (v2, with checksums) are appended to in place; others are
/// rewritten whole once, which gives them a checksum block. Windows keeps
/// rewriting: its writers lock a `.lock` file, which readers do not wait on.
fn appends_in_place(old: &ShardIndex) -> bool {
  cfg!(unix) && old.version() == crate::format::VERSION_2 && old.has_checksums()
}

/// The file a shard path that is a symlink points to, else the path itself.
/// An append in place writes into that file anyway; a compaction or a
/// rewrite renamed over the link would make the shard a plain file and leave
/// the one linked to behind, stale.
fn through_link(target: &Path) -> Result<PathBuf> {
  match std::fs::symlink_metadata(target) {
    Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(target)
      .map_err(|e| DesError::io(format!("follow the link {}", target.display()), e)),
    _ => Ok(target.to_path_buf()),
  }
}

/// The nearest missing ancestor of `dir` (what `create_dir_all` would create first).
fn first_missing(dir: &Path) -> Option<PathBuf> {
  let mut missing = None;
  let mut at = Some(dir);
  while let Some(d) = at {
    if d.as_os_str().is_empty() || d.exists() {
      break;
    }
    missing = Some(d.to_path_buf());
    at = d.parent();
  }
  missing
}

impl ShardWriter {
  fn empty(target: PathBuf, opts: WriterOptions, emit_base: u64) -> Result<ShardWriter> {
    let bigfiles_dir = opts.bigfiles_dir.clone().unwrap_or_else(|| {
      target
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(DEFAULT_BIGFILES_PREFIX)
    });
    let created_dir = first_missing(target.parent().unwrap_or_else(|| Path::new(".")));
    let tmp = temp_beside(&target)?;
    Ok(ShardWriter {
      target,
      tmp: Some(ShardOut::new(tmp)),
      pos: emit_base,
      emit_base,
      entries: Vec::new(),
      by_uid: HashMap::new(),
      retired: Vec::new(),
      opts,
      bigfiles_dir,
      added: 0,
      bytes_in: 0,
      bytes_stored: 0,
      bigfiles: 0,
      bigfile_bytes_written: 0,
      size_limit: None,
      landing: Landing::Replace,
      _lock: None,
      created_dir,
    })
  }

  /// A new shard at `target` (replacing any file there on finish).
  pub fn create(target: impl AsRef<Path>, opts: WriterOptions) -> Result<ShardWriter> {
    let past_cache = opts.write_past_cache;
    let mut w = ShardWriter::empty(target.as_ref().to_path_buf(), opts, 0)?;
    if past_cache {
      w.out()?.go_direct();
    }
    w.emit(&header_bytes())?;
    Ok(w)
  }

  /// Adds to the shard at `target` if one exists (its data copied, its
  /// entries kept), else starts a new one. Holds the turn on the target
  /// until finished or dropped, so concurrent writers of one shard never lose
  /// each other's files (see `lock`); nothing but the shard is left beside it.
  pub fn append(target: impl AsRef<Path>, opts: WriterOptions) -> Result<ShardWriter> {
    let writer = ShardWriter::append_when(target.as_ref(), opts, true)?;
    writer.ok_or_else(|| DesError::BadArg("a waiting turn came back empty".to_string()))
  }

  /// `append`, or None at once when another writer holds the shard's turn:
  /// for a caller that holds other shards' turns, which must not wait (see
  /// `lock::take_turn`).
  pub fn try_append(target: impl AsRef<Path>, opts: WriterOptions) -> Result<Option<ShardWriter>> {
    ShardWriter::append_when(target.as_ref(), opts, false)
  }

  fn append_when(target: &Path, opts: WriterOptions, wait: bool) -> Result<Option<ShardWriter>> {
    let target = through_link(target)?;
    let Some(turn) = take_turn(&target, wait)? else {
      return Ok(None);
    };
    let (lock, landing) = match turn {
      Turn::Existing(lock) => (Some(lock), Landing::Replace),
      Turn::Absent(Some(lock)) => (Some(lock), Landing::Replace),
      Turn::Absent(None) => (None, Landing::CreateNew),
    };
    let opened = match &lock {
      Some(held) if matches!(landing, Landing::Replace) && target.exists() => {
        Some((ShardFile::open_held(&target), held))
      }
      _ => None,
    };
    let mut w = match opened {
      Some((Ok(old), _)) if old.index().has_checksums() && mostly_dead(&old) => {
        ShardWriter::compacting(target.clone(), &old, opts)?
      }
      Some((Ok(old), held)) if appends_in_place(old.index()) => {
        let end = append::prepare(&target, old.index(), held.file())?;
        let mut w = ShardWriter::empty(target.clone(), opts, end.end)?;
        w.carry(old.index())?;
        w.landing = Landing::InPlace(end);
        w
      }
      Some((Ok(old), _)) => {
        let data_end = old.index().data_end();
        // The header is rewritten as v2; the data section is copied as is, so
        // every old offset stays valid.
        let mut w = ShardWriter::create(&target, opts)?;
        let mut src =
          File::open(&target).map_err(|e| DesError::io(format!("open {}", target.display()), e))?;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(HEADER_SIZE))
          .map_err(|e| DesError::io(format!("seek {}", target.display()), e))?;
        let mut limited = std::io::Read::take(src, data_end - HEADER_SIZE);
        let copied = std::io::copy(&mut limited, w.out()?)
          .map_err(|e| DesError::io(format!("copy {}", target.display()), e))?;
        if copied != data_end - HEADER_SIZE {
          return Err(DesError::corrupt(format!(
            "{} shrank while being appended to",
            target.display()
          )));
        }
        w.pos = data_end;
        if old.index().has_checksums() {
          w.carry(old.index())?;
        } else {
          w.carry_unchecked(&old)?;
        }
        w
      }
      Some((Err(e), _)) => return Err(e),
      None => ShardWriter::create(&target, opts)?,
    };
    w._lock = lock;
    if !matches!(w.landing, Landing::InPlace(_)) {
      w.landing = landing;
    }
    Ok(Some(w))
  }

  /// A new file with only `old`'s live entries, their stored bytes moved up
  /// to close the space old indexes and replaced entries left, each checked
  /// against its CRC on the way (nothing damaged is carried). Offsets change:
  /// a reader holding the old index finds a new file (`Changed`) and reads
  /// its index again.
  fn compacting(target: PathBuf, old: &ShardFile, opts: WriterOptions) -> Result<ShardWriter> {
    let mut w = ShardWriter::create(&target, opts)?;
    let file = old.reopen()?;
    w.entries.reserve(old.index().len());
    for mut entry in old.index().entries() {
      if let Body::Inline { .. } = entry.body {
        let stored = old.read_stored_from(&file, &entry)?;
        let at = w.pos;
        w.emit(&stored)?;
        if let Body::Inline { offset, .. } = &mut entry.body {
          *offset = at;
        }
      }
      w.by_uid.insert(entry.uid.clone(), w.entries.len());
      w.entries.push(entry);
    }
    Ok(w)
  }

  /// Writes only what follows `old`'s data section: new payloads, the merged
  /// index and the footer. The final object is `old[0..old.data_end()]` then
  /// these bytes (how an S3 append copies the old part server-side).
  /// `old` must be a v2 shard (a v1 header cannot be kept in front of a v2
  /// index) with a checksum block (the old bytes are not here to checksum):
  /// rewrite any other shard whole, with `append`.
  pub fn continue_after(
    old: &ShardIndex,
    tail_path: impl AsRef<Path>,
    opts: WriterOptions,
  ) -> Result<ShardWriter> {
    if old.version() != crate::format::VERSION_2 {
      return Err(DesError::BadArg(
        "a v1 shard cannot be continued in place; rewrite it whole".to_string(),
      ));
    }
    if !old.has_checksums() {
      return Err(DesError::BadArg(
        "a shard without checksums cannot be continued in place; rewrite it whole".to_string(),
      ));
    }
    let mut w = ShardWriter::empty(tail_path.as_ref().to_path_buf(), opts, old.data_end())?;
    w.carry(old)?;
    Ok(w)
  }

  fn carry(&mut self, old: &ShardIndex) -> Result<()> {
    self.entries.reserve(old.len());
    for entry in old.entries() {
      self.by_uid.insert(entry.uid.clone(), self.entries.len());
      self.entries.push(entry);
    }
    self.retired.extend_from_slice(old.retired());
    Ok(())
  }

  /// Carries the entries of a shard that has no checksum block: each one is
  /// read, decoded to check it, and given its CRC; bytes no entry covers
  /// become retired ranges. Nothing damaged is blessed with a checksum: a
  /// payload that fails to decode stops the append.
  fn carry_unchecked(&mut self, old: &ShardFile) -> Result<()> {
    let index = old.index();
    let file = old.reopen()?;
    let io = |e| DesError::io(format!("read {}", old.path().display()), e);
    let mut spans = Vec::with_capacity(index.len());
    self.entries.reserve(index.len());
    for mut entry in index.entries() {
      if let Body::Inline { offset, length, .. } = entry.body {
        let stored = old.read_stored_from(&file, &entry)?;
        decode_payload(&entry, &stored)?;
        if let Body::Inline { crc, .. } = &mut entry.body {
          *crc = Some(crc32c(&stored));
        }
        spans.push((offset, length));
      }
      self.by_uid.insert(entry.uid.clone(), self.entries.len());
      self.entries.push(entry);
    }
    spans.sort_unstable();
    let mut at = HEADER_SIZE;
    for (offset, length) in spans.into_iter().chain([(index.data_end(), 0)]) {
      if offset > at {
        let crc = crc_of_range(&file, at, offset - at).map_err(io)?;
        self.retired.push(Retired {
          offset: at,
          length: offset - at,
          crc,
        });
      }
      at = at.max(offset + length);
    }
    Ok(())
  }

  fn out(&mut self) -> Result<&mut ShardOut> {
    self
      .tmp
      .as_mut()
      .ok_or_else(|| DesError::BadArg("writer already finished".to_string()))
  }

  fn emit(&mut self, bytes: &[u8]) -> Result<()> {
    let wrote = self.out()?.write_all(bytes);
    wrote.map_err(|e| self.write_failed(e))?;
    self.pos += bytes.len() as u64;
    Ok(())
  }

  /// A failed write to the temp file, naming the shard (made only on failure:
  /// `emit` runs for every payload).
  fn write_failed(&self, e: std::io::Error) -> DesError {
    DesError::io(format!("write shard {}", self.target.display()), e)
  }

  /// The entries so far (carried and added), in index order.
  pub fn entries(&self) -> &[Entry] {
    &self.entries
  }

  /// True if the uid is already in the shard being written.
  pub fn contains(&self, uid: &str) -> bool {
    self.by_uid.contains_key(uid)
  }

  /// Sets the data-section size the caller fills up to (see `size_limit`).
  pub fn set_size_limit(&mut self, limit: Option<u64>) {
    self.size_limit = limit;
  }

  /// Bytes the shard's data section may take if finished now (data so far,
  /// no index; appending in place, with the most padding `finish` may add).
  pub fn data_size(&self) -> u64 {
    match self.landing {
      Landing::InPlace(_) => self.pos + append::MAX_PAD,
      _ => self.pos,
    }
  }

  /// Compresses and appends one payload.
  pub fn add(&mut self, uid: &str, data: Vec<u8>, meta_json: Option<&str>) -> Result<Entry> {
    self.check_uid(uid)?;
    let prepared = prepare(uid, data, meta_json, &self.opts)?;
    self.add_prepared(prepared)
  }

  fn check_uid(&self, uid: &str) -> Result<()> {
    if uid.len() > u16::MAX as usize {
      return Err(DesError::BadArg(format!(
        "uid of {} bytes is longer than the 65535 the format allows",
        uid.len()
      )));
    }
    if self.by_uid.contains_key(uid) && !self.opts.replace {
      return Err(DesError::Duplicate(uid.to_string()));
    }
    Ok(())
  }

  /// Appends a payload made by `prepare`.
  pub fn add_prepared(&mut self, p: Prepared) -> Result<Entry> {
    self.check_uid(&p.uid)?;
    let body = match p.kind {
      PreparedKind::Inline { codec, stored, crc } => {
        let offset = self.pos;
        self.emit(&stored)?;
        self.bytes_stored += stored.len() as u64;
        Body::Inline {
          offset,
          length: stored.len() as u64,
          codec,
          size: p.size,
          crc: Some(crc),
        }
      }
      PreparedKind::BigFile { sha256, data } => {
        self.bigfile_bytes_written += self.store_bigfile(&sha256, &data)?;
        self.bigfiles += 1;
        Body::BigFile {
          sha256,
          size: p.size,
        }
      }
      PreparedKind::Stored { sha256 } => {
        self.bigfiles += 1;
        Body::BigFile {
          sha256,
          size: p.size,
        }
      }
    };
    let entry = Entry {
      uid: p.uid,
      body,
      meta: p.meta,
    };
    self.added += 1;
    self.bytes_in += p.size;
    match self.by_uid.get(&entry.uid) {
      // Replacing: the old bytes stay as dead space, checksummed as retired.
      Some(&i) => {
        let old = std::mem::replace(&mut self.entries[i], entry.clone());
        if let Body::Inline {
          offset,
          length,
          crc: Some(crc),
          ..
        } = old.body
        {
          self.retired.push(Retired {
            offset,
            length,
            crc,
          });
        }
      }
      None => {
        self.by_uid.insert(entry.uid.clone(), self.entries.len());
        self.entries.push(entry.clone());
      }
    }
    Ok(entry)
  }

  /// Content-addressed: an existing object with these bytes is kept (dedup).
  /// Returns the bytes written: 0 when it was kept.
  fn store_bigfile(&self, sha256: &str, data: &[u8]) -> Result<u64> {
    let path = self.bigfiles_dir.join(sha256);
    let _turn = bigfile_turn(&path);
    // Kept only when it holds these very bytes: one of the same size but
    // other bytes (damaged, or put there by someone else) is written over,
    // which also mends every shard that names it.
    if holds_exactly(&path, data) {
      return Ok(0);
    }
    let made = first_missing(&self.bigfiles_dir);
    let mut tmp = temp_beside(&path)?;
    tmp
      .write_all(data)
      .and_then(|_| tmp.as_file().sync_all())
      .map_err(|e| DesError::io(format!("write BigFile {}", path.display()), e))?;
    temps::release(&tmp);
    tmp
      .persist(&path)
      .map_err(|e| DesError::io(format!("rename BigFile {}", path.display()), e.error))?;
    // Its name is durable before any shard that refers to it is committed.
    folders_to_sync(&path, made.as_deref())
      .iter()
      .for_each(|d| sync_dir(d));
    Ok(data.len() as u64)
  }

  /// Writes index and footer, syncs, and puts the shard in place: renamed
  /// over the target, or, appending in place, its footer rewritten (see
  /// `append`). `stage` and `commit` do the same for many shards at once.
  pub fn finish(self) -> Result<WriteSummary> {
    commit_one(self.stage()?)
  }

  /// Writes everything but makes nothing durable or visible yet: the index
  /// and footer go into the temp file, or, appending in place, the new bytes
  /// go below a footer that still names the old index (readers read the old
  /// shard). `commit` finishes it. The writer's turn on the shard is held
  /// until then; a `Staged` dropped uncommitted leaves the target as it was.
  pub fn stage(self) -> Result<Staged> {
    let staged = self.stage_deferred()?;
    if staged.creates() {
      // A new shard is created now, on its own: which of two writers creating
      // it at once wins is settled while the loser still holds its own turn
      // and adds to the winner's, as before; deferred to a group commit held
      // open for a whole run, the race would stay open that long.
      let path = staged.path().to_path_buf();
      // Its failure (such as losing the race with no room in the winner's)
      // is the caller's to handle now, not at a later commit.
      let summary = commit_one(staged)?;
      return Ok(Staged(State::Done { path, summary }));
    }
    Ok(staged)
  }

  /// `stage`, leaving a new shard to the commit too: for a group committed as
  /// soon as it is filled (`pack_parts`); the race to create the shard stays
  /// open that long, and its loser adds to the winner's at the commit.
  pub(crate) fn stage_deferred(mut self) -> Result<Staged> {
    let staged = if let Landing::InPlace(_) = self.landing {
      let Landing::InPlace(old) = std::mem::replace(&mut self.landing, Landing::Replace) else {
        unreachable!()
      };
      self.stage_in_place(old)?
    } else {
      let index = encode_index(&self.entries, &self.retired)?;
      // Payloads may go past the page cache; the index and footer stay in
      // it, for whoever reads the new shard first.
      let switched = self.out()?.cached_from_here();
      switched.map_err(|e| self.write_failed(e))?;
      self.emit(&index)?;
      self.emit(&footer_bytes(index.len() as u64))?;
      let tmp = self.take_staged_file()?;
      let file_size = self.pos - self.emit_base;
      Staged(State::Pending {
        how: StagedHow::Temp(tmp),
        index_size: index.len() as u64,
        file_size,
        writer: Box::new(self),
      })
    };
    // The disk writes this part while the other parts of its batch are
    // filled; their commit then waits for what is left.
    if let Some(file) = staged.file() {
      start_writeback(file);
    }
    Ok(staged)
  }

  /// The temp file, its buffer flushed; the writer is finished with it.
  fn take_staged_file(&mut self) -> Result<NamedTempFile> {
    let shown = self.target.display().to_string();
    self
      .tmp
      .take()
      .ok_or_else(|| DesError::BadArg("writer already finished".to_string()))?
      .into_inner()
      .map_err(|e| DesError::io(format!("flush {shown}"), e))
  }

  /// The old shard's index and footer become a retired range (with any
  /// padding that keeps the footer inside one sector); the staged payloads
  /// and the new index go after the old end (steps 1 and 2 of `append`).
  fn stage_in_place(mut self, old: OldEnd) -> Result<Staged> {
    if self.added == 0 {
      // Nothing to add: the shard stays as it is (no dead index left behind).
      let index_size = old.end - old.index_at - crate::format::FOOTER_SIZE;
      return Ok(Staged(State::Pending {
        how: StagedHow::Unchanged,
        index_size,
        file_size: old.end,
        writer: Box::new(self),
      }));
    }
    let staged = self.take_staged_file()?;
    let data_end = self.pos;
    self.retired.push(append::old_end_range(&old));
    let mut index = encode_index(&self.entries, &self.retired)?;
    let pad = append::footer_pad(data_end, index.len() as u64);
    if pad > 0 {
      self.retired.push(append::pad_range(data_end, pad));
      index = encode_index(&self.entries, &self.retired)?;
    }
    let footer_at = append::write_below_footer(
      &self.target,
      &old,
      staged.as_file(),
      data_end - old.end,
      pad,
      &index,
    )?;
    Ok(Staged(State::Pending {
      how: StagedHow::InPlace { old, footer_at },
      index_size: index.len() as u64,
      file_size: footer_at + crate::format::FOOTER_SIZE,
      writer: Box::new(self),
    }))
  }
}

/// A shard written by `ShardWriter::stage`: not yet durable nor in place,
/// or, a new shard staged by `stage`, already created. `commit` finishes it.
pub struct Staged(State);

enum State {
  Pending {
    /// (Dropped before the writer: an uncommitted temp file goes before the
    /// writer removes the folders it made.)
    how: StagedHow,
    writer: Box<ShardWriter>,
    index_size: u64,
    file_size: u64,
  },
  Done {
    path: PathBuf,
    summary: WriteSummary,
  },
}

/// How a pending shard is put in place.
enum StagedHow {
  /// The whole shard in a temp file, to rename into place.
  Temp(NamedTempFile),
  /// An append in place after its steps 1 and 2; step 3 writes the footer.
  InPlace { old: OldEnd, footer_at: u64 },
  /// An append that added nothing.
  Unchanged,
}

/// What `land` left for the last sync.
enum Landed {
  /// Done already (committed when staged, or nothing to do).
  Nothing,
  /// Renamed into place; with the first folder the writer made for it.
  Renamed(Option<PathBuf>),
  Footer(OldEnd),
  /// Lost the race to create the shard: our temp file, to append from.
  Appended(NamedTempFile),
}

impl Staged {
  /// Where the shard goes.
  pub fn path(&self) -> &Path {
    match &self.0 {
      State::Pending { writer, .. } => &writer.target,
      State::Done { path, .. } => path,
    }
  }

  /// True for a new shard (created with a no-clobber rename).
  fn creates(&self) -> bool {
    matches!(
      &self.0,
      State::Pending { how: StagedHow::Temp(_), writer, .. } if matches!(writer.landing, Landing::CreateNew)
    )
  }

  /// The file whose bytes must reach the disk before the shard is in place.
  fn file(&self) -> Option<&File> {
    match &self.0 {
      State::Pending {
        how: StagedHow::Temp(tmp),
        ..
      } => Some(tmp.as_file()),
      State::Pending {
        how: StagedHow::InPlace { old, .. },
        ..
      } => Some(append::file_of(old)),
      _ => None,
    }
  }

  /// Puts a pending shard in place (its bytes are synced): renamed over the
  /// target, or its footer rewritten. Returns what still has to reach the
  /// disk: the folder of a rename, or the file of a rewritten footer.
  fn land(&mut self) -> Result<Landed> {
    let State::Pending {
      how,
      writer,
      index_size,
      ..
    } = &mut self.0
    else {
      return Ok(Landed::Nothing);
    };
    let target = writer.target.clone();
    let shown = target.display().to_string();
    match std::mem::replace(how, StagedHow::Unchanged) {
      StagedHow::Unchanged => Ok(Landed::Nothing),
      StagedHow::InPlace { old, footer_at } => {
        append::write_footer(&target, &old, footer_at, *index_size)?;
        Ok(Landed::Footer(old))
      }
      StagedHow::Temp(tmp) => {
        // The shard whose turn we hold must still be the one at the target:
        // a file put there outside the writers' turns is not overwritten.
        #[cfg(unix)]
        if let Some(lock) = &writer._lock {
          append::check_still_at(&target, lock.file())?;
        }
        temps::release(&tmp);
        match writer.landing {
          Landing::CreateNew => match tmp.persist_noclobber(&target) {
            Ok(_) => {}
            // Another writer created the shard since we looked: add to theirs.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
              return Ok(Landed::Appended(e.file));
            }
            Err(e) => return Err(DesError::io(format!("rename into {shown}"), e.error)),
          },
          _ => {
            tmp
              .persist(&target)
              .map_err(|e| DesError::io(format!("rename into {shown}"), e.error))?;
          }
        }
        Ok(Landed::Renamed(writer.created_dir.take()))
      }
    }
  }

  /// The outcome, once landed and synced.
  fn outcome(self, landed: Landed) -> Result<WriteSummary> {
    match self.0 {
      State::Done { summary, .. } => Ok(summary),
      State::Pending {
        writer,
        index_size,
        file_size,
        ..
      } => match landed {
        Landed::Appended(ours) => (*writer).append_to_winner(ours),
        _ => Ok(WriteSummary {
          path: writer.target.clone(),
          entries: writer.entries.len() as u64,
          added: writer.added,
          file_size,
          index_size,
          bytes_in: writer.bytes_in,
          bytes_stored: writer.bytes_stored,
          bigfiles: writer.bigfiles,
          bigfile_bytes_written: writer.bigfile_bytes_written,
          skipped: Vec::new(),
        }),
      },
    }
  }
}

/// Makes staged shards durable and puts them in place, together: every
/// staged byte is synced (`sync_together`: their syncs overlap, so many
/// appends share journal commits), then each shard is renamed
/// into place or its footer rewritten, then those footers and one sync per
/// folder follow. A shard is reported stored only when all of that is on
/// disk. Results come in the order given.
pub fn commit(mut staged: Vec<Staged>) -> Vec<Result<WriteSummary>> {
  let synced = {
    let files: Vec<&File> = staged.iter().filter_map(Staged::file).collect();
    sync_together(&files)
  };
  if let Err(e) = synced {
    let msg = e.to_string();
    return staged.iter().map(|_| Err(sync_failed(&msg))).collect();
  }
  let landed: Vec<Result<Landed>> = staged.iter_mut().map(Staged::land).collect();
  let footers: Vec<&File> = landed
    .iter()
    .filter_map(|l| match l {
      Ok(Landed::Footer(old)) => Some(append::file_of(old)),
      _ => None,
    })
    .collect();
  let footers_synced = sync_together(&footers).map_err(|e| e.to_string());
  let mut dirs = std::collections::BTreeSet::new();
  for (s, l) in staged.iter().zip(&landed) {
    if let Ok(Landed::Renamed(made)) = l {
      dirs.extend(folders_to_sync(s.path(), made.as_deref()));
    }
  }
  for dir in dirs {
    sync_dir(&dir);
  }
  // Every shard but those that lost the race to be created is finished (its
  // turn let go) before those add to the winners': adding waits for the
  // winner's turn, and waiting while holding turns can wait for ever.
  let mut results: Vec<Option<Result<WriteSummary>>> = Vec::with_capacity(staged.len());
  let mut losers = Vec::new();
  for (i, (s, l)) in staged.into_iter().zip(landed).enumerate() {
    results.push(match l {
      Err(e) => Some(Err(e)),
      Ok(Landed::Footer(_)) => Some(match &footers_synced {
        Ok(()) => s.outcome(Landed::Nothing),
        Err(msg) => Err(sync_failed(msg)),
      }),
      Ok(lost @ Landed::Appended(_)) => {
        losers.push((i, s, lost));
        None
      }
      Ok(landed) => Some(s.outcome(landed)),
    });
  }
  for (i, s, lost) in losers {
    results[i] = Some(s.outcome(lost));
  }
  results
    .into_iter()
    .map(|r| r.unwrap_or_else(|| Err(DesError::BadArg("a shard was not committed".to_string()))))
    .collect()
}

/// `commit` of one shard.
fn commit_one(staged: Staged) -> Result<WriteSummary> {
  let mut results = commit(vec![staged]);
  results
    .pop()
    .unwrap_or_else(|| Err(DesError::BadArg("nothing was committed".to_string())))
}

/// The error of every shard whose sync failed (the error itself is not Clone).
fn sync_failed(msg: &str) -> DesError {
  DesError::io(msg.to_string(), std::io::Error::other("sync failed"))
}

/// Threads that sync a group's files at once (see `sync_together`).
const SYNC_THREADS: usize = 32;

/// Syncs the data of `files`, together: the writeback of every file is
/// started first (Linux `sync_file_range`), then the files are synced a few
/// threads at a time, so their waits overlap and the journal commits them
/// together. Threads of their own, not the pool's: a sync waits, it does not
/// compute. Only these files are synced: a sync of the whole filesystem
/// (`syncfs`, used before) also waited for everything else written to it (a
/// database beside the store, the sources a migration had just been given)
/// and made a migration's first cycle four times slower.
fn sync_together(files: &[&File]) -> Result<()> {
  let io = |e| DesError::io("sync staged shards".to_string(), e);
  for file in files {
    start_writeback(file);
  }
  // One file (a single writer's finish) is synced here, without a thread.
  if files.len() <= 1 {
    return files.iter().try_for_each(|f| f.sync_data()).map_err(io);
  }
  std::thread::scope(|scope| {
    let running: Vec<_> = files
      .chunks(files.len().div_ceil(SYNC_THREADS))
      .map(|some| scope.spawn(move || some.iter().try_for_each(|f| f.sync_data())))
      .collect();
    running.into_iter().try_for_each(|t| {
      t.join()
        .unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
    })
  })
  .map_err(io)
}

/// Starts the writeback of a file's dirty pages, without waiting for it
/// (Linux `sync_file_range`; elsewhere nothing): a sync that comes later
/// then finds most of them written.
fn start_writeback(file: &File) {
  #[cfg(target_os = "linux")]
  {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a valid open descriptor; this only starts writeback of its pages.
    unsafe {
      libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
  }
  #[cfg(not(target_os = "linux"))]
  let _ = file;
}

impl ShardWriter {
  /// Our new shard lost the race to create `target`: append our entries to
  /// the shard the other writer created (in turn, under its lock), reading
  /// our stored bytes back from our own finished file.
  fn append_to_winner(mut self, ours: NamedTempFile) -> Result<WriteSummary> {
    let shown = self.target.display().to_string();
    let mut w = ShardWriter::append(&self.target, self.opts.clone())?;
    if let Some(limit) = self.size_limit {
      if !w.entries.is_empty() && w.data_size() + self.bytes_stored > limit {
        // Nothing of ours is added: the caller puts these files elsewhere.
        return Err(DesError::Changed(format!(
          "{shown} (another writer created it meanwhile, with no room for these files)"
        )));
      }
    }
    let mut skipped = Vec::new();
    for entry in std::mem::take(&mut self.entries) {
      if self.opts.skip_existing && !self.opts.replace && w.contains(&entry.uid) {
        skipped.push(entry.uid);
        continue;
      }
      let kind = match entry.body {
        Body::Inline {
          offset,
          length,
          codec,
          crc: Some(crc),
          ..
        } => {
          let mut stored = vec![0u8; length as usize];
          read_exact_at(ours.as_file(), &mut stored, offset)
            .map_err(|e| DesError::io(format!("read back {shown}"), e))?;
          PreparedKind::Inline { codec, stored, crc }
        }
        Body::BigFile { ref sha256, .. } => PreparedKind::Stored {
          sha256: sha256.clone(),
        },
        Body::Inline { crc: None, .. } => {
          return Err(DesError::BadArg(format!(
            "uid {:?} has no checksum",
            entry.uid
          )))
        }
      };
      w.add_prepared(Prepared {
        uid: entry.uid.clone(),
        meta: entry.meta.clone(),
        size: entry.size(),
        kind,
      })?;
    }
    drop(ours);
    let mut summary = w.finish()?;
    summary.skipped = skipped;
    // Our BigFiles were written before the race was lost; the winner's
    // writer only names them.
    summary.bigfile_bytes_written = self.bigfile_bytes_written;
    Ok(summary)
  }
}

impl Drop for ShardWriter {
  fn drop(&mut self) {
    // Unfinished (or staged and never committed): the temp file goes first,
    // then any folder we made for it. A landed shard clears `created_dir`.
    drop(self.tmp.take());
    if let Some(dir) = self.created_dir.take() {
      remove_empty_dirs(&dir, self.target.parent());
    }
  }
}

/// Removes the empty folders from the target's folder up to `top` (the first
/// one a writer created); a folder another writer has put a file in stays.
fn remove_empty_dirs(top: &Path, from: Option<&Path>) {
  let mut at = from;
  while let Some(dir) = at {
    if std::fs::remove_dir(dir).is_err() || dir == top {
      break;
    }
    at = dir.parent();
  }
}

/// True when the file at `path` holds exactly `data` (compared a block at a
/// time, never read whole); false when it differs, is missing or unreadable.
fn holds_exactly(path: &Path, data: &[u8]) -> bool {
  use std::io::Read;
  let Ok(mut file) = File::open(path) else {
    return false;
  };
  if !file.metadata().is_ok_and(|m| m.len() == data.len() as u64) {
    return false;
  }
  let mut buf = vec![0u8; (1 << 20).min(data.len().max(1))];
  let mut at = 0;
  while at < data.len() {
    let want = buf.len().min(data.len() - at);
    if file.read_exact(&mut buf[..want]).is_err() || buf[..want] != data[at..at + want] {
      return false;
    }
    at += want;
  }
  // Nothing after it (it did not grow since the size was read).
  matches!(file.read(&mut [0u8; 1]), Ok(0))
}

/// The folders a new shard's rename changed: its own, and, when the writer
/// made folders for it (`made`: the first of them), the folder that names
/// each one it made, up to the one above `made`.
fn folders_to_sync(shard: &Path, made: Option<&Path>) -> Vec<PathBuf> {
  let named = |p: &Path| {
    if p.as_os_str().is_empty() {
      PathBuf::from(".")
    } else {
      p.to_path_buf()
    }
  };
  let Some(folder) = shard.parent() else {
    return Vec::new();
  };
  let mut out = vec![named(folder)];
  if let Some(top) = made.filter(|top| folder.starts_with(top)) {
    for dir in folder.ancestors().skip(1) {
      out.push(named(dir));
      if Some(dir) == top.parent() {
        break;
      }
    }
  }
  out
}

/// Makes the renames in `dir` durable. Best effort: not every platform can
/// sync a directory.
fn sync_dir(dir: &Path) {
  if let Ok(d) = File::open(dir) {
    let _ = d.sync_all();
  }
}

#[cfg(test)]
mod folders {
  use super::folders_to_sync;
  use std::path::{Path, PathBuf};

  fn synced(shard: &str, made: Option<&str>) -> Vec<PathBuf> {
    folders_to_sync(Path::new(shard), made.map(Path::new))
  }

  #[test]
  fn a_new_shard_syncs_its_folder_and_the_folder_naming_each_one_made_for_it() {
    let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
    assert_eq!(synced("/s/20240101/AB.des", None), p(&["/s/20240101"]));
    assert_eq!(
      synced("/s/20240101/AB.des", Some("/s/20240101")),
      p(&["/s/20240101", "/s"])
    );
    assert_eq!(
      synced("/s/20240101/AB.des", Some("/s")),
      p(&["/s/20240101", "/s", "/"])
    );
    assert_eq!(
      synced("out/d/AB.des", Some("out")),
      p(&["out/d", "out", "."])
    );
    assert_eq!(synced("AB.des", None), p(&["."]));
    // A folder made elsewhere (not above the shard) adds nothing.
    assert_eq!(synced("/s/d/AB.des", Some("/t")), p(&["/s/d"]));
  }
}
