//! Reading shards: a local file by positional reads, or an index from the tail
//! bytes of an object (what one suffix-range GET on S3 returns).

use crate::bigfile::verify_bigfile;
use crate::checksum::crc32c;
use crate::codec::{check_ceiling, decompress};
use crate::entry::{Body, Entry};
use crate::error::{DesError, Result};
use crate::format::{
  check_index_size, parse_footer, parse_header, Footer, FOOTER_SIZE, HEADER_SIZE, VERSION_2,
};
use crate::index::{append_slot_ok, index_reach, own_footer_at, IndexReach, ShardIndex};
use crate::lock::wait_for_writer;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Fills `buf` from `offset` of `file` without moving a cursor (so one open
/// file serves concurrent reads).
#[cfg(unix)]
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
  std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
pub(crate) fn read_exact_at(
  file: &File,
  mut buf: &mut [u8],
  mut offset: u64,
) -> std::io::Result<()> {
  use std::os::windows::fs::FileExt;
  while !buf.is_empty() {
    match file.seek_read(buf, offset) {
      Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
      Ok(n) => {
        buf = &mut buf[n..];
        offset += n as u64;
      }
      Err(e) => return Err(e),
    }
  }
  Ok(())
}

/// Reads the footer from the last bytes of an object.
pub fn footer_from_tail(tail: &[u8], object_size: u64) -> Result<Footer> {
  if tail.len() as u64 > object_size {
    return Err(DesError::BadArg(format!(
      "tail of {} bytes is longer than the object ({object_size} bytes)",
      tail.len()
    )));
  }
  if (tail.len() as u64) < FOOTER_SIZE.min(object_size) {
    return Err(DesError::BadArg(format!(
      "tail of {} bytes cannot hold the 12-byte footer",
      tail.len()
    )));
  }
  if object_size < HEADER_SIZE + FOOTER_SIZE {
    return parse_footer(&[], object_size);
  }
  let footer = parse_footer(&tail[tail.len() - FOOTER_SIZE as usize..], object_size)?;
  // A caller fetches what the tail lacks of the index: bound it first.
  check_index_size(footer.index_size)?;
  Ok(footer)
}

/// Parses the index from the last `tail.len()` bytes of an object of
/// `object_size` bytes. When the tail does not reach back to the index start,
/// fails with `NeedMore` naming the offset to fetch from. When the tail is the
/// whole object its header is checked; otherwise the version is recognised
/// from the index itself.
pub fn index_from_tail(tail: &[u8], object_size: u64) -> Result<ShardIndex> {
  let footer = footer_from_tail(tail, object_size)?;
  let tail_start = object_size - tail.len() as u64;
  if footer.index_offset < tail_start {
    return Err(DesError::NeedMore {
      index_offset: footer.index_offset,
      tail_start,
    });
  }
  let from = (footer.index_offset - tail_start) as usize;
  let raw = tail[from..from + footer.index_size as usize].to_vec();
  if tail_start == 0 {
    let version = parse_header(tail)?;
    ShardIndex::parse(raw, version, footer.index_offset)
  } else {
    ShardIndex::parse_any_version(raw, footer.index_offset)
  }
}

/// True when the first bytes of a large index section, walked as a v2 index,
/// are followed by something that is not a checksum block: a v2 index never
/// is, so a remote reader that fetched only these bytes (as `read_section`
/// reads locally) refuses the shard once its header says v2, without
/// fetching the rest a damaged footer states (up to 4 GiB). A v1 index is
/// not walked so: it is fetched whole.
pub fn index_start_is_foreign(prefix: &[u8]) -> bool {
  matches!(index_reach(prefix), IndexReach::Other)
}

/// Decodes an entry's stored bytes to its payload (inline entries).
pub fn decode_payload(entry: &Entry, stored: &[u8]) -> Result<Vec<u8>> {
  match &entry.body {
    Body::Inline {
      length,
      codec,
      size,
      ..
    } => {
      if stored.len() as u64 != *length {
        return Err(DesError::BadArg(format!(
          "uid {:?}: given {} stored bytes, the entry has {length}",
          entry.uid,
          stored.len()
        )));
      }
      check_stored(entry, stored)?;
      decompress(*codec, stored, *size, &entry.uid)
    }
    Body::BigFile { .. } => Err(DesError::BadArg(format!(
      "uid {:?} is a BigFile: read its object, not the shard",
      entry.uid
    ))),
  }
}

/// Checks an inline entry's stored bytes against the CRC32C its index holds
/// (entries of shards without a checksum block pass: they have none).
pub fn check_stored(entry: &Entry, stored: &[u8]) -> Result<()> {
  if let Body::Inline {
    crc: Some(want), ..
  } = &entry.body
  {
    let got = crc32c(stored);
    if got != *want {
      return Err(DesError::corrupt(format!(
        "payload of uid {:?}: stored bytes fail their checksum (CRC32C {got:08x}, the index says {want:08x})",
        entry.uid
      )));
    }
  }
  Ok(())
}

/// What a reader of a shard file starts from: its 8 header bytes and, as its
/// footer places it, its index section (or why the footer is refused). Header
/// and footer are read whatever the other holds, so each can be judged alone.
pub(crate) struct Frame {
  pub header: [u8; HEADER_SIZE as usize],
  pub index: Result<(Footer, Section)>,
}

/// The bytes of an index section a reader needs.
pub(crate) struct Section {
  pub raw: Vec<u8>,
  /// Bytes of an unfinished append left unread after the old index and its
  /// footer (`raw` then ends with that footer).
  pub skipped: u64,
}

/// An index section's first bytes read at once; a larger section is read in
/// growing steps, so that of an unfinished append (the old index, its footer,
/// then all the append has written) costs only its old index.
const FIRST_SECTION_READ: u64 = 1 << 20;

/// `version` is the header's, when it could be read: a v2 section whose
/// entries are followed by anything but a checksum block is damage, found
/// without reading the rest of the section (whose size a damaged footer may
/// state as gigabytes).
fn read_section(file: &File, footer: &Footer, version: Option<u8>, shown: &str) -> Result<Section> {
  let size = footer.index_size;
  let mut raw: Vec<u8> = Vec::new();
  let mut want = size.min(FIRST_SECTION_READ);
  loop {
    check_index_size(want)?;
    let have = raw.len();
    // Safe to allocate: parse_footer bounded the section by the file's size.
    raw.resize(want as usize, 0);
    read_exact_at(file, &mut raw[have..], footer.index_offset + have as u64)
      .map_err(|e| DesError::io(format!("read {shown}"), e))?;
    if want == size {
      return Ok(Section { raw, skipped: 0 });
    }
    want = match index_reach(&raw) {
      IndexReach::Ends(end) => {
        let with_footer = end as u64 + FOOTER_SIZE;
        if with_footer >= size {
          size
        } else if (raw.len() as u64) < with_footer {
          with_footer
        } else if own_footer_at(&raw, end) && append_slot_at(file, footer, with_footer, shown)? {
          raw.truncate(with_footer as usize);
          return Ok(Section {
            raw,
            skipped: size - with_footer,
          });
        } else {
          size
        }
      }
      IndexReach::NeedMore => want.saturating_mul(2).min(size),
      IndexReach::Other if version == Some(VERSION_2) => {
        return Err(DesError::corrupt(format!(
          "the index at byte {} ({size} bytes, as the footer says) has bytes after its last entry that are not a checksum block",
          footer.index_offset
        )))
      }
      // A v1 index is not walked: it is read whole.
      IndexReach::Other => size,
    };
  }
}

/// Whether the section of `footer`, whose old index and footer take its first
/// `old_len` bytes, ends in the slot an append leaves (`append_slot_ok`): the
/// 12 bytes below the last footer, read on their own.
fn append_slot_at(file: &File, footer: &Footer, old_len: u64, shown: &str) -> Result<bool> {
  let section_end = footer.index_offset + footer.index_size;
  let mut slot = [0u8; FOOTER_SIZE as usize];
  read_exact_at(file, &mut slot, section_end - FOOTER_SIZE)
    .map_err(|e| DesError::io(format!("read {shown}"), e))?;
  Ok(append_slot_ok(
    &slot,
    section_end,
    footer.index_offset + old_len,
  ))
}

/// Reads the frame of a file of `size` bytes; a file too small for header
/// and footer is refused, and I/O errors name `shown`.
pub(crate) fn read_frame(file: &File, size: u64, shown: &str) -> Result<Frame> {
  if size < HEADER_SIZE + FOOTER_SIZE {
    return Err(DesError::corrupt(format!(
      "file too small to be a shard: {size} bytes, header and footer alone are 20"
    )));
  }
  let io = |e| DesError::io(format!("read {shown}"), e);
  let mut header = [0u8; HEADER_SIZE as usize];
  read_exact_at(file, &mut header, 0).map_err(io)?;
  let mut last = [0u8; FOOTER_SIZE as usize];
  read_exact_at(file, &mut last, size - FOOTER_SIZE).map_err(io)?;
  let index = match parse_footer(&last, size) {
    Ok(footer) => match read_section(file, &footer, parse_header(&header).ok(), shown) {
      Ok(section) => Ok((footer, section)),
      Err(e @ DesError::Io { .. }) => return Err(e),
      Err(e) => Err(e),
    },
    Err(e) => Err(e),
  };
  Ok(Frame { header, index })
}

/// What identifies one version of a file: a file renamed over it differs,
/// and so does one appended to in place (every step of an append changes its
/// size; the modification time too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
  len: u64,
  #[cfg(unix)]
  dev_ino: (u64, u64),
  modified: Option<std::time::SystemTime>,
}

impl FileIdentity {
  fn of(meta: &std::fs::Metadata) -> FileIdentity {
    #[cfg(unix)]
    {
      use std::os::unix::fs::MetadataExt;
      FileIdentity {
        len: meta.len(),
        dev_ino: (meta.dev(), meta.ino()),
        modified: meta.modified().ok(),
      }
    }
    #[cfg(not(unix))]
    {
      FileIdentity {
        len: meta.len(),
        modified: meta.modified().ok(),
      }
    }
  }
}

/// A shard file on local disk, its index parsed and shared. It holds no open
/// file: a server caches thousands of indexes and must not hold a descriptor
/// for each. Reads open the file, check it is still the version the index
/// came from (`DES_CHANGED` if an append replaced it), and close it.
#[derive(Debug)]
pub struct ShardFile {
  path: PathBuf,
  identity: FileIdentity,
  index: Arc<ShardIndex>,
}

impl ShardFile {
  /// Opens and validates a shard: header, footer and the whole index.
  pub fn open(path: impl AsRef<Path>) -> Result<ShardFile> {
    let path = path.as_ref().to_path_buf();
    let shown = path.display().to_string();
    let file = File::open(&path).map_err(|e| DesError::io(format!("open {shown}"), e))?;
    // An append in place may be at work: a file caught while being cut back
    // (or anything else that does not read as a shard) is read again once
    // the writer's turn is over. (An unfinished append reads as the old
    // shard, and its last step changes the file's size, so the index read
    // from it is known stale from then on.) Never taken by a writer on its
    // own shard (`open_held`): it would wait for itself.
    let first = ShardFile::read_index(path.clone(), &file);
    let again = match &first {
      Ok(_) => false,
      Err(DesError::Corrupt(_) | DesError::Truncated { .. }) => true,
      Err(DesError::Io { source, .. }) => source.kind() == std::io::ErrorKind::UnexpectedEof,
      Err(_) => false,
    };
    if again && wait_for_writer(&file) {
      return ShardFile::read_index(path, &file);
    }
    first
  }

  /// Opens a shard whose turn the caller holds (no writer can be at work).
  pub(crate) fn open_held(path: &Path) -> Result<ShardFile> {
    let file = File::open(path).map_err(|e| DesError::io(format!("open {}", path.display()), e))?;
    ShardFile::read_index(path.to_path_buf(), &file)
  }

  fn read_index(path: PathBuf, file: &File) -> Result<ShardFile> {
    let shown = path.display().to_string();
    let meta = file
      .metadata()
      .map_err(|e| DesError::io(format!("stat {shown}"), e))?;
    let identity = FileIdentity::of(&meta);
    let size = meta.len();
    let in_file = |e: DesError| match e {
      DesError::Corrupt(msg) => DesError::Corrupt(format!("{shown}: {msg}")),
      other => other,
    };
    let frame = read_frame(file, size, &shown).map_err(in_file)?;
    let version = parse_header(&frame.header).map_err(in_file)?;
    let (footer, section) = frame.index.map_err(in_file)?;
    let index =
      ShardIndex::parse_section(section, Some(version), footer.index_offset).map_err(in_file)?;
    Ok(ShardFile {
      path,
      identity,
      index: Arc::new(index),
    })
  }

  /// Opens the file again, checking it is the version the index was read from.
  pub fn reopen(&self) -> Result<File> {
    let shown = self.path.display().to_string();
    let file = File::open(&self.path).map_err(|e| match e.kind() {
      std::io::ErrorKind::NotFound => DesError::Changed(shown.clone()),
      _ => DesError::io(format!("open {shown}"), e),
    })?;
    let meta = file
      .metadata()
      .map_err(|e| DesError::io(format!("stat {shown}"), e))?;
    if FileIdentity::of(&meta) != self.identity {
      return Err(DesError::Changed(shown));
    }
    Ok(file)
  }

  /// The parsed index.
  pub fn index(&self) -> &Arc<ShardIndex> {
    &self.index
  }

  /// Size of the shard file in bytes.
  pub fn size(&self) -> u64 {
    self.identity.len
  }

  /// Path the shard was opened from.
  pub fn path(&self) -> &Path {
    &self.path
  }

  /// Reads an inline entry's stored (undecoded) bytes.
  pub fn read_stored(&self, entry: &Entry) -> Result<Vec<u8>> {
    self.read_stored_from(&self.reopen()?, entry)
  }

  /// Reads an inline entry's stored bytes from a file got from `reopen`
  /// (so a loop over many entries opens the file once), checked against the
  /// entry's checksum.
  pub fn read_stored_from(&self, file: &File, entry: &Entry) -> Result<Vec<u8>> {
    let stored = self.read_stored_unchecked(file, entry)?;
    check_stored(entry, &stored)?;
    Ok(stored)
  }

  fn read_stored_unchecked(&self, file: &File, entry: &Entry) -> Result<Vec<u8>> {
    let Body::Inline { offset, length, .. } = entry.body else {
      return Err(DesError::BadArg(format!(
        "uid {:?} is a BigFile",
        entry.uid
      )));
    };
    // Bounded by the file size (the index check keeps offset + length below
    // the index) and by the payload ceiling.
    check_ceiling(length, &entry.uid)?;
    let mut buf = vec![0u8; length as usize];
    read_exact_at(file, &mut buf, offset)
      .map_err(|e| DesError::io(format!("read {}", self.path.display()), e))?;
    Ok(buf)
  }

  /// Where a BigFile of this shard lives: `<shard dir>/<prefix>/<sha256>`.
  pub fn bigfile_path(&self, prefix: &str, sha256: &str) -> PathBuf {
    self
      .path
      .parent()
      .unwrap_or_else(|| Path::new("."))
      .join(prefix)
      .join(sha256)
  }

  /// Reads and decodes an entry's payload. BigFiles are read from `prefix`
  /// beside the shard and checked against size and sha256.
  pub fn read_entry(&self, entry: &Entry, bigfiles_prefix: &str) -> Result<Vec<u8>> {
    match &entry.body {
      Body::Inline { .. } => self.read_entry_from(&self.reopen()?, entry, bigfiles_prefix),
      Body::BigFile { .. } => self.read_bigfile(entry, bigfiles_prefix),
    }
  }

  /// `read_entry` with the shard file already open (see `reopen`).
  pub fn read_entry_from(
    &self,
    file: &File,
    entry: &Entry,
    bigfiles_prefix: &str,
  ) -> Result<Vec<u8>> {
    match &entry.body {
      Body::Inline { .. } => decode_payload(entry, &self.read_stored_unchecked(file, entry)?),
      Body::BigFile { .. } => self.read_bigfile(entry, bigfiles_prefix),
    }
  }

  fn read_bigfile(&self, entry: &Entry, bigfiles_prefix: &str) -> Result<Vec<u8>> {
    match &entry.body {
      Body::Inline { .. } => Err(DesError::BadArg(format!(
        "uid {:?} is not a BigFile",
        entry.uid
      ))),
      Body::BigFile { sha256, .. } => {
        let path = self.bigfile_path(bigfiles_prefix, sha256);
        let failed = |e| DesError::io(format!("read BigFile {}", path.display()), e);
        // At most one byte past the indexed size is read: a file that does
        // not end there (a device, a grown file) is refused, never read whole.
        let want = entry.size();
        let mut data = Vec::with_capacity(want.min(crate::pack::MAX_RESERVE) as usize + 1);
        std::io::Read::read_to_end(
          &mut std::io::Read::take(
            crate::bigfile::open_bigfile(&path, entry, failed)?,
            want.saturating_add(1),
          ),
          &mut data,
        )
        .map_err(failed)?;
        verify_bigfile(entry, &data)?;
        Ok(data)
      }
    }
  }

  /// Reads a uid's payload.
  pub fn read(&self, uid: &str, bigfiles_prefix: &str) -> Result<Vec<u8>> {
    let entry = self
      .index
      .get(uid)
      .ok_or_else(|| DesError::NotFound(uid.to_string()))?;
    self.read_entry(&entry, bigfiles_prefix)
  }
}
