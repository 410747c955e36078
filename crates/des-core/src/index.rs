//! The index section: parsed once into compact records that point into the
//! raw index bytes, so a shard with millions of entries costs ~48 bytes each
//! and a lookup by uid is one hash probe.

use crate::checksum::{append_block, block_len_at, parse_block, starts_block, Checksums, Retired};
use crate::cursor::Cursor;
use crate::entry::{Body, Codec, Entry};
use crate::error::{DesError, Result};
use crate::format::{
  footer_bytes, parse_footer, FOOTER_MAGIC, FOOTER_SIZE, HEADER_SIZE, VERSION_1, VERSION_2,
};
use crate::meta::check_stored;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

const BIGFILE_FLAG: u8 = 0x01;
/// The codec slot of a record that is a BigFile.
const BIGFILE_CODEC: u8 = u8::MAX;
/// Smallest possible encoded entry (v1 with an empty uid), used to bound
/// pre-allocation by what the bytes can actually hold.
const MIN_ENTRY_BYTES: usize = 2 + 33;
const SHA256_HEX_LEN: usize = 64;
/// Largest size an index may state (2^53 - 1): every size stays exact as a
/// JavaScript number, so no crafted size can pass for a sentinel such as -1.
pub const MAX_STATED_SIZE: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, Copy)]
struct Record {
  uid_at: u32,
  uid_len: u16,
  /// `Codec as u8`, or `BIGFILE_CODEC`.
  codec: u8,
  meta_at: u32,
  meta_len: u32,
  /// Inline: absolute offset. BigFile: position of the hash in `raw`.
  offset: u64,
  length: u64,
  size: u64,
}

/// A parsed, validated index. Holds the raw bytes; entries are materialised
/// only when asked for.
pub struct ShardIndex {
  version: u8,
  data_end: u64,
  raw: Vec<u8>,
  records: Vec<Record>,
  by_uid: HashTable<u32>,
  hasher: DefaultHashBuilder,
  /// The checksum block, when the shard carries one.
  checksums: Option<Checksums>,
  /// Bytes of an unfinished in-place append that follow this index's own
  /// footer (see `unfinished_append`); 0 for a finished shard.
  unfinished: u64,
}

impl std::fmt::Debug for ShardIndex {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("ShardIndex")
      .field("version", &self.version)
      .field("entries", &self.records.len())
      .field("index_size", &self.raw.len())
      .field("checksummed", &self.checksums.is_some())
      .finish()
  }
}

impl ShardIndex {
  /// Parses index bytes of a shard of `version` whose data section ends at
  /// `data_end` (= the index offset). Every field is checked.
  pub fn parse(mut raw: Vec<u8>, version: u8, data_end: u64) -> Result<ShardIndex> {
    if version != VERSION_1 && version != VERSION_2 {
      return Err(DesError::corrupt(format!(
        "unsupported shard version {version}"
      )));
    }
    let mut records;
    let mut checksums = None;
    let mut by_uid = HashTable::new();
    let hasher = DefaultHashBuilder::default();
    let count;
    let entries_end;
    {
      let mut cur = Cursor::new(&raw, data_end);
      count = cur.u32("index entry count")? as usize;
      let fits = cur.remaining() / MIN_ENTRY_BYTES;
      if count > fits {
        return Err(DesError::corrupt(format!(
          "index at byte {data_end} claims {count} entries, but its {} bytes hold at most {fits}",
          raw.len()
        )));
      }
      records = Vec::with_capacity(count);
      for n in 0..count {
        let rec = parse_record(&mut cur, &raw, version, data_end, n)?;
        let uid = record_uid(&raw, &rec);
        let hash = hasher.hash_one(uid);
        let i = records.len() as u32;
        let dup = by_uid
          .find(hash, |&j: &u32| {
            record_uid(&raw, &records[j as usize]) == uid
          })
          .is_some();
        if dup {
          return Err(DesError::corrupt(format!(
            "index entry {n}: uid {uid:?} appears twice in the index"
          )));
        }
        by_uid.insert_unique(hash, i, |&j: &u32| {
          hasher.hash_one(record_uid(&raw, &records[j as usize]))
        });
        records.push(rec);
      }
      entries_end = cur.pos();
    }
    check_distinct_starts(&raw, &records)?;
    let mut unfinished = 0;
    if entries_end != raw.len() {
      let rest = &raw[entries_end..];
      if !starts_block(rest) {
        return Err(DesError::corrupt(format!(
          "index has {} unexplained bytes after its last entry (at byte {})",
          rest.len(),
          data_end + entries_end as u64
        )));
      }
      if let Some(end) = unfinished_index_end(&raw, entries_end, data_end) {
        unfinished = (raw.len() - end) as u64 - FOOTER_SIZE;
        raw.truncate(end);
        raw.shrink_to_fit();
      }
      checksums = Some(parse_block(&raw, entries_end, count, data_end)?);
    }
    Ok(ShardIndex {
      version,
      data_end,
      raw,
      records,
      by_uid,
      hasher,
      checksums,
      unfinished,
    })
  }

  /// Parses an index section as a local reader read it (see `read_section`),
  /// as `version`, or as either when the header could not tell.
  pub(crate) fn parse_section(
    section: crate::reader::Section,
    version: Option<u8>,
    data_end: u64,
  ) -> Result<ShardIndex> {
    let mut index = match version {
      Some(version) => ShardIndex::parse(section.raw, version, data_end)?,
      None => ShardIndex::parse_any_version(section.raw, data_end)?,
    };
    index.unfinished += section.skipped;
    Ok(index)
  }

  /// Parses an index whose shard version is unknown (a tail read from S3 holds
  /// no header): tries the v2 layout, then v1. The strict checks make a false
  /// match practically impossible.
  pub fn parse_any_version(raw: Vec<u8>, data_end: u64) -> Result<ShardIndex> {
    match ShardIndex::parse(raw.clone(), VERSION_2, data_end) {
      Ok(index) => Ok(index),
      Err(v2_error) => ShardIndex::parse(raw, VERSION_1, data_end).map_err(|_| v2_error),
    }
  }

  /// Layout version of the shard (1 or 2).
  pub fn version(&self) -> u8 {
    self.version
  }

  /// Number of entries.
  pub fn len(&self) -> usize {
    self.records.len()
  }

  /// True when the shard holds no entries.
  pub fn is_empty(&self) -> bool {
    self.records.is_empty()
  }

  /// Size in bytes of the index section (and roughly of this structure's heap).
  pub fn index_size(&self) -> u64 {
    self.raw.len() as u64
  }

  /// Offset where the data section ends and the index begins.
  pub fn data_end(&self) -> u64 {
    self.data_end
  }

  /// True when the shard carries a checksum block (every entry's stored
  /// bytes and the index itself are then checked on read).
  pub fn has_checksums(&self) -> bool {
    self.checksums.is_some()
  }

  /// Bytes an in-place append had written past this index's own footer when
  /// the shard was read: the append is under way or was interrupted. The
  /// shard reads as it was before it (this index), and the next write to it
  /// cuts them off. 0 for a finished shard.
  pub fn unfinished_append(&self) -> u64 {
    self.unfinished
  }

  /// Dead byte ranges of the data section with their checksums (empty
  /// without a checksum block).
  pub fn retired(&self) -> &[Retired] {
    self.checksums.as_ref().map_or(&[], |c| &c.retired)
  }

  /// Position of a uid, if present.
  pub fn position(&self, uid: &str) -> Option<usize> {
    let hash = self.hasher.hash_one(uid);
    self
      .by_uid
      .find(hash, |&j| {
        record_uid(&self.raw, &self.records[j as usize]) == uid
      })
      .map(|&j| j as usize)
  }

  /// True if the uid is in the index.
  pub fn contains(&self, uid: &str) -> bool {
    self.position(uid).is_some()
  }

  /// The entry of a uid, materialised.
  pub fn get(&self, uid: &str) -> Option<Entry> {
    self.position(uid).map(|i| self.entry(i))
  }

  /// The uid of entry `i` (in index order), without materialising the entry.
  pub fn uid_at(&self, i: usize) -> &str {
    record_uid(&self.raw, &self.records[i])
  }

  /// Entry `i` in index order. Panics if `i >= len()`.
  pub fn entry(&self, i: usize) -> Entry {
    let rec = &self.records[i];
    let meta_bytes = &self.raw[rec.meta_at as usize..rec.meta_at as usize + rec.meta_len as usize];
    // Checked as UTF-8 JSON when parsed; lossless here.
    let meta = String::from_utf8_lossy(meta_bytes).into_owned();
    let body = if rec.codec == BIGFILE_CODEC {
      let at = rec.offset as usize;
      Body::BigFile {
        sha256: String::from_utf8_lossy(&self.raw[at..at + SHA256_HEX_LEN]).into_owned(),
        size: rec.size,
      }
    } else {
      Body::Inline {
        offset: rec.offset,
        length: rec.length,
        codec: Codec::from_byte(rec.codec).unwrap_or(Codec::None),
        size: rec.size,
        crc: self.checksums.as_ref().map(|c| c.entries[i]),
      }
    };
    Entry {
      uid: self.uid_at(i).to_string(),
      body,
      meta,
    }
  }

  /// All entries in index order.
  pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
    (0..self.records.len()).map(move |i| self.entry(i))
  }
}

/// How far the entries and checksum block of an index section reach, judged
/// from its first bytes without checking them (`ShardIndex::parse` does).
pub(crate) enum IndexReach {
  /// They end at this byte.
  Ends(usize),
  /// The bytes end first.
  NeedMore,
  /// Not laid out as a v2 index with a checksum block.
  Other,
}

/// Walks the v2 entries and the checksum block's counts in `raw`.
pub(crate) fn index_reach(raw: &[u8]) -> IndexReach {
  let mut at = 0usize;
  let field = |at: usize, n: usize| raw.get(at..at.checked_add(n)?);
  let uint = |b: &[u8]| b.iter().rev().fold(0usize, |v, &x| v << 8 | x as usize);
  let Some(count) = field(0, 4).map(uint) else {
    return IndexReach::NeedMore;
  };
  at += 4;
  for _ in 0..count {
    let Some(name_len) = field(at, 2).map(uint) else {
      return IndexReach::NeedMore;
    };
    let Some(flags) = field(at + 2 + name_len, 1).map(uint) else {
      return IndexReach::NeedMore;
    };
    at += 2 + name_len + 1;
    if flags as u8 & BIGFILE_FLAG != 0 {
      let Some(hash_len) = field(at, 2).map(uint) else {
        return IndexReach::NeedMore;
      };
      at += 2 + hash_len + 8;
    } else {
      at += 8 + 8 + 1 + 8 + 8;
    }
    let Some(meta_len) = field(at, 4).map(uint) else {
      return IndexReach::NeedMore;
    };
    at += 4 + meta_len;
  }
  match field(at, 4) {
    None => IndexReach::NeedMore,
    Some(magic) if !starts_block(magic) => IndexReach::Other,
    Some(_) => match block_len_at(raw, at) {
      Some(len) => IndexReach::Ends(at + len),
      None => IndexReach::NeedMore,
    },
  }
}

/// An in-place append first extends the shard with a footer that points at the
/// old index, so until it finishes the index section is the old index, the
/// old footer, then the append's bytes. Returns where the old index ends when
/// `raw` (the section, starting at byte `data_end` of the file) is laid out
/// so: its checksum block ends before `raw` does, is followed by exactly the
/// footer of an index that long, and the section ends in a slot an append
/// leaves (`append_slot_ok`; a reader that read only the old index and its
/// footer checked that slot itself). (The CRC is checked by `parse_block` as
/// for any index.)
fn unfinished_index_end(raw: &[u8], block_at: usize, data_end: u64) -> Option<usize> {
  let end = block_at.checked_add(block_len_at(raw, block_at)?)?;
  if !own_footer_at(raw, end) {
    return None;
  }
  let old_end = end + FOOTER_SIZE as usize;
  if raw.len() > old_end {
    let slot = &raw[raw.len() - FOOTER_SIZE as usize..];
    let section_end = data_end + raw.len() as u64;
    if !append_slot_ok(slot, section_end, data_end + old_end as u64) {
      return None;
    }
  }
  Some(end)
}

/// The 12 bytes just below the last footer of an append under way (or
/// interrupted), ending at byte `slot_end`: zeros (the new footer not written
/// yet), the new footer begun (part of its magic, then zeros) or written,
/// its index starting past the old footer's end (`old_end`; a size written
/// in part reads as a smaller one, which still does). Anything else is no
/// append but a damaged footer: two changed bytes in the last footer of an
/// appended shard must not roll it back to its old index.
pub(crate) fn append_slot_ok(slot: &[u8], slot_end: u64, old_end: u64) -> bool {
  let written = slot.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
  written == 0
    || (written < FOOTER_MAGIC.len() && slot[..written] == FOOTER_MAGIC[..written])
    || parse_footer(slot, slot_end).is_ok_and(|f| f.index_offset >= old_end)
}

/// True if `raw` holds, at `end`, the footer of an index `end` bytes long:
/// what follows an old index in the section of an unfinished append.
pub(crate) fn own_footer_at(raw: &[u8], end: usize) -> bool {
  end
    .checked_add(FOOTER_SIZE as usize)
    .and_then(|to| raw.get(end..to))
    .is_some_and(|footer| footer == footer_bytes(end as u64))
}

/// Two entries whose stored bytes start at the same byte are damage (a
/// writer gives every payload bytes of its own), refused when the index is
/// read: a payload is then named by its shard and offset alone, which is the
/// payload cache's key. Empty payloads take no bytes and may share a start.
fn check_distinct_starts(raw: &[u8], records: &[Record]) -> Result<()> {
  let stored = |r: &&Record| r.codec != BIGFILE_CODEC && r.length > 0;
  // Writers list entries in the order of their bytes: one pass, no sort.
  let mut last = None;
  let in_order = records.iter().filter(stored).all(|r| {
    let later = last.is_none_or(|l| r.offset > l);
    last = Some(r.offset);
    later
  });
  if in_order {
    return Ok(());
  }
  let mut starts: Vec<(u64, usize)> = records
    .iter()
    .enumerate()
    .filter(|(_, r)| stored(r))
    .map(|(i, r)| (r.offset, i))
    .collect();
  starts.sort_unstable();
  match starts.windows(2).find(|w| w[0].0 == w[1].0) {
    Some(w) => Err(DesError::corrupt(format!(
      "index entries of uids {:?} and {:?} both start at byte {}",
      record_uid(raw, &records[w[0].1]),
      record_uid(raw, &records[w[1].1]),
      w[0].0
    ))),
    None => Ok(()),
  }
}

fn record_uid<'a>(raw: &'a [u8], rec: &Record) -> &'a str {
  let bytes = &raw[rec.uid_at as usize..rec.uid_at as usize + rec.uid_len as usize];
  // Validated as UTF-8 when the record was parsed.
  std::str::from_utf8(bytes).unwrap_or("")
}

fn parse_record(
  cur: &mut Cursor<'_>,
  raw: &[u8],
  version: u8,
  data_end: u64,
  n: usize,
) -> Result<Record> {
  let uid_len = cur.u16("uid length")?;
  let uid_at = cur.pos() as u32;
  let uid_bytes = cur.take(uid_len as usize, "uid")?;
  let uid = std::str::from_utf8(uid_bytes)
    .map_err(|_| DesError::corrupt(format!("index entry {n}: uid is not valid UTF-8")))?;
  let whence = || format!("index entry {n} (uid {uid:?})");
  let flags = if version == VERSION_2 {
    cur.u8("entry flags")?
  } else {
    0
  };
  if flags & !BIGFILE_FLAG != 0 {
    return Err(DesError::corrupt(format!(
      "{}: unknown flag bits {flags:#04x}",
      whence()
    )));
  }
  if flags & BIGFILE_FLAG != 0 {
    let hash_len = cur.u16("BigFile hash length")? as usize;
    let hash_at = cur.pos() as u32;
    let hash = cur.take(hash_len, "BigFile hash")?;
    // Lower case, as every writer (and Python's hexdigest) writes it: the
    // hash names the BigFile's object and is compared with its sha256 as text.
    let lower_hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if hash_len != SHA256_HEX_LEN || !hash.iter().all(lower_hex) {
      return Err(DesError::corrupt(format!(
        "{}: BigFile hash is not 64 lower-case hex digits ({hash_len} bytes)",
        whence()
      )));
    }
    let size = cur.u64("BigFile size")?;
    check_stated_size(size, &whence)?;
    let (meta_at, meta_len) = take_meta(cur, raw, &whence)?;
    return Ok(Record {
      uid_at,
      uid_len,
      codec: BIGFILE_CODEC,
      meta_at,
      meta_len,
      offset: u64::from(hash_at),
      length: 0,
      size,
    });
  }
  let offset = cur.u64("entry offset")?;
  let length = cur.u64("entry length")?;
  let codec_byte = cur.u8("entry codec")?;
  let compressed = cur.u64("entry compressed size")?;
  let size = cur.u64("entry uncompressed size")?;
  let (meta_at, meta_len) = if version == VERSION_2 {
    take_meta(cur, raw, &whence)?
  } else {
    (cur.pos() as u32, 0)
  };
  let codec = Codec::from_byte(codec_byte)
    .ok_or_else(|| DesError::corrupt(format!("{}: unknown codec byte {codec_byte}", whence())))?;
  check_stated_size(size, &whence)?;
  let end = offset.checked_add(length).ok_or_else(|| {
    DesError::corrupt(format!(
      "{}: offset {offset} + length {length} overflows",
      whence()
    ))
  })?;
  if offset < HEADER_SIZE || end > data_end {
    return Err(DesError::corrupt(format!(
      "{}: offset {offset} + length {length} lies outside the data section {HEADER_SIZE}..{data_end}",
      whence()
    )));
  }
  if compressed != length {
    return Err(DesError::corrupt(format!(
      "{}: compressed size {compressed} differs from stored length {length}",
      whence()
    )));
  }
  if codec == Codec::None && size != length {
    return Err(DesError::corrupt(format!(
      "{}: uncompressed entry stores {length} bytes but claims {size}",
      whence()
    )));
  }
  Ok(Record {
    uid_at,
    uid_len,
    codec: codec as u8,
    meta_at,
    meta_len,
    offset,
    length,
    size,
  })
}

fn check_stated_size(size: u64, whence: &dyn Fn() -> String) -> Result<()> {
  if size > MAX_STATED_SIZE {
    return Err(DesError::corrupt(format!(
      "{}: size {size} is beyond the largest this format accepts (2^53 - 1)",
      whence()
    )));
  }
  Ok(())
}

fn take_meta(cur: &mut Cursor<'_>, _raw: &[u8], whence: &dyn Fn() -> String) -> Result<(u32, u32)> {
  let meta_len = cur.u32("meta length")?;
  let meta_at = cur.pos() as u32;
  let meta = cur.take(meta_len as usize, "meta")?;
  check_stored(meta, whence)?;
  Ok((meta_at, meta_len))
}

/// Appends one v2 entry's bytes to `out`.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) -> Result<()> {
  let uid = entry.uid.as_bytes();
  let uid_len = u16::try_from(uid.len()).map_err(|_| {
    DesError::BadArg(format!(
      "uid of {} bytes is longer than the 65535 the format allows",
      uid.len()
    ))
  })?;
  let meta_len = u32::try_from(entry.meta.len())
    .map_err(|_| DesError::BadArg("meta longer than 4 GiB".to_string()))?;
  out.extend_from_slice(&uid_len.to_le_bytes());
  out.extend_from_slice(uid);
  match &entry.body {
    Body::BigFile { sha256, size } => {
      out.push(BIGFILE_FLAG);
      out.extend_from_slice(&(sha256.len() as u16).to_le_bytes());
      out.extend_from_slice(sha256.as_bytes());
      out.extend_from_slice(&size.to_le_bytes());
    }
    Body::Inline {
      offset,
      length,
      codec,
      size,
      ..
    } => {
      out.push(0);
      out.extend_from_slice(&offset.to_le_bytes());
      out.extend_from_slice(&length.to_le_bytes());
      out.push(*codec as u8);
      out.extend_from_slice(&length.to_le_bytes());
      out.extend_from_slice(&size.to_le_bytes());
    }
  }
  out.extend_from_slice(&meta_len.to_le_bytes());
  out.extend_from_slice(entry.meta.as_bytes());
  Ok(())
}

/// Encodes a whole v2 index section: the entries, then the checksum block.
/// Every inline entry must carry its CRC (see `Body::Inline::crc`).
pub fn encode_index(entries: &[Entry], retired: &[Retired]) -> Result<Vec<u8>> {
  let count = u32::try_from(entries.len())
    .map_err(|_| DesError::BadArg("more than 4 billion entries in one shard".to_string()))?;
  let mut out = Vec::with_capacity(4 + entries.len() * 68 + 16);
  out.extend_from_slice(&count.to_le_bytes());
  let mut crcs = Vec::with_capacity(entries.len());
  for entry in entries {
    encode_entry(entry, &mut out)?;
    crcs.push(match &entry.body {
      Body::Inline { crc: Some(crc), .. } => *crc,
      Body::Inline { crc: None, .. } => {
        return Err(DesError::BadArg(format!(
          "uid {:?} has no checksum: its stored bytes must be checked before it is written",
          entry.uid
        )))
      }
      Body::BigFile { .. } => 0,
    });
  }
  append_block(&mut out, &crcs, retired)?;
  Ok(out)
}
