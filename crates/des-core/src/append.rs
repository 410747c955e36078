//! Appending to a local shard in place: the old bytes stay where they are and
//! only the new payloads, a new index and a new footer are written, so an
//! append costs what it adds, whatever the shard's size.
//!
//! Readers find a shard by its last 12 bytes, so the file must end in a valid
//! footer at every moment, whoever reads it and whenever the writer is killed:
//!
//! ```text
//! before   [H][old data][I0][F0]                                      old shard, size S
//! step 1   [H][old data][I0][F0][ zeros ...                ][P ]      old shard, size E + 12
//! step 2   [H][old data][I0][F0][new data][pad][I1][zeros  ][P ]      old shard (synced)
//! step 3   [H][old data][I0][F0][new data][pad][I1][F1]               new shard, size E
//! ```
//!
//! Step 1 extends the file with one 12-byte write: a footer `P`, just past
//! where the new shard will end (E), whose index section runs from `I0` to
//! just before `P`. Such a section is the old index, its own footer `F0`,
//! then bytes that are not part of it; readers here recognise exactly that
//! shape (`ShardIndex::unfinished_append`) and read the old shard, and the
//! original Python reader parses `entry_count` entries and ignores the rest,
//! so it reads the old shard too. Step 2 fills the space below `P` (the file
//! does not grow) and is synced. Step 3 writes the new footer `F1` below `P`
//! (still unseen) and then cuts the file at E, so `F1` becomes the last 12
//! bytes at once; it is synced. Each step after the first changes the file's
//! size, so a reader holding an index knows it is no longer current.
//! `I0`, `F0` and the padding become retired ranges of the new shard, so
//! every byte stays covered by a checksum. Neither footer straddles a
//! 512-byte sector (`pad`, zero bytes, moves them): each lands whole or not at
//! all, for a reader, a kill or a power cut.
//!
//! A writer that was killed leaves step 1 or 2 behind; the next writer of the
//! shard cuts the file back to the old end before it appends (`prepare`).
//! Writers take turns on the shard with `lock`. (The syncs are the caller's:
//! a run syncs all its staged shards at once, `writer::commit`.)

use crate::checksum::{crc32c, Retired};
use crate::error::{DesError, Result};
use crate::format::{footer_bytes, FOOTER_SIZE};
use crate::index::ShardIndex;
use crate::reader::read_exact_at;
use std::fs::File;
use std::path::Path;

/// Footer writes must not cross a boundary of this many bytes: a disk sector,
/// so a power cut cannot tear one either; pages (4 KiB and up, what readers
/// and kills see whole or not at all) are multiples of it.
const PAGE: u64 = 512;
/// The most padding `footer_pad` adds before an index.
pub(crate) const MAX_PAD: u64 = PAGE - 1;
/// Bytes one retired range adds to the checksum block.
const RETIRED_RANGE_BYTES: u64 = 20;
/// Copy buffer for the new bytes (they come from the writer's temp file).
const COPY_CHUNK: usize = 1 << 20;

/// Where the old shard ends, for an append in place, and the shard itself.
#[derive(Debug)]
pub(crate) struct OldEnd {
  /// The shard, open for writing: the very file whose turn the writer holds.
  file: File,
  /// Where the old index starts (its data end).
  pub index_at: u64,
  /// The old file size: old index and footer end here; new bytes start here.
  pub end: u64,
  /// CRC32C of the old index and footer, `[index_at, end)`.
  pub crc: u32,
}

/// Gets a shard whose turn this writer holds ready for an append in place:
/// the bytes of an interrupted append are cut off (the file then ends with
/// the old footer again), and the old index and footer are checksummed to
/// become a retired range.
pub(crate) fn prepare(path: &Path, index: &ShardIndex, locked: &File) -> Result<OldEnd> {
  let shown = path.display().to_string();
  let index_at = index.data_end();
  let end = index_at + index.index_size() + FOOTER_SIZE;
  let file = std::fs::OpenOptions::new()
    .read(true)
    .write(true)
    .open(path)
    .map_err(|e| DesError::io(format!("open {shown}"), e))?;
  if !same_file(&file, locked)? {
    return Err(DesError::Changed(shown));
  }
  if index.unfinished_append() > 0 {
    file
      .set_len(end)
      .and_then(|_| file.sync_data())
      .map_err(|e| DesError::io(format!("cut off the interrupted append of {shown}"), e))?;
  }
  let mut old = vec![0u8; (end - index_at) as usize];
  read_exact_at(&file, &mut old, index_at).map_err(|e| DesError::io(format!("read {shown}"), e))?;
  if old[old.len() - FOOTER_SIZE as usize..] != footer_bytes(index.index_size()) {
    return Err(DesError::Changed(shown));
  }
  Ok(OldEnd {
    file,
    index_at,
    end,
    crc: crc32c(&old),
  })
}

/// True if both handles are the same file.
fn same_file(a: &File, b: &File) -> Result<bool> {
  #[cfg(unix)]
  {
    use std::os::unix::fs::MetadataExt;
    let id = |f: &File| f.metadata().map(|m| (m.dev(), m.ino()));
    let io = |e| DesError::io("stat the shard being appended to".to_string(), e);
    Ok(id(a).map_err(io)? == id(b).map_err(io)?)
  }
  #[cfg(not(unix))]
  {
    let _ = (a, b);
    Ok(true)
  }
}

/// Fails with `Changed` unless `path` still names the shard being written:
/// a file put there outside the writers' turns must not be written into,
/// nor an append to a file no longer in the store be reported as stored.
pub(crate) fn check_still_at(path: &Path, file: &File) -> Result<()> {
  let shown = path.display().to_string();
  let at_path = File::open(path).map_err(|e| match e.kind() {
    std::io::ErrorKind::NotFound => DesError::Changed(shown.clone()),
    _ => DesError::io(format!("open {shown}"), e),
  })?;
  if same_file(&at_path, file)? {
    Ok(())
  } else {
    Err(DesError::Changed(shown))
  }
}

/// Padding before the index so that neither the footer of a shard whose data
/// ends at `data_end`, with an index of `index_len` bytes (before any padding
/// range is added), nor the pending footer right after it crosses a sector.
/// Padding adds one retired range.
pub(crate) fn footer_pad(data_end: u64, index_len: u64) -> u64 {
  // The shard ends at `end`: `[end - 12, end)` and `[end, end + 12)` both lie
  // in the sector of `end` when it sits at least 12 bytes from either edge.
  let fits = |end: u64| (FOOTER_SIZE..=PAGE - FOOTER_SIZE).contains(&(end % PAGE));
  if fits(data_end + index_len + FOOTER_SIZE) {
    return 0;
  }
  (1..=PAGE)
    .find(|pad| fits(data_end + pad + index_len + RETIRED_RANGE_BYTES + FOOTER_SIZE))
    .unwrap_or(PAGE)
}

/// The retired range for `pad` zero bytes at `offset`.
pub(crate) fn pad_range(offset: u64, pad: u64) -> Retired {
  Retired {
    offset,
    length: pad,
    crc: crc32c(&vec![0u8; pad as usize]),
  }
}

/// The retired range the old index and footer become.
pub(crate) fn old_end_range(old: &OldEnd) -> Retired {
  Retired {
    offset: old.index_at,
    length: old.end - old.index_at,
    crc: old.crc,
  }
}

/// Steps 1 and 2 of an append: `new_len` bytes of `staged` (from its start)
/// go at `old.end`, then `index` after `pad` zero bytes, below a footer that
/// still names the old index. Nothing is synced: the caller syncs (a group of
/// shards at once, see `writer::commit`) before `write_footer`. Returns where
/// the footer is.
pub(crate) fn write_below_footer(
  path: &Path,
  old: &OldEnd,
  staged: &File,
  new_len: u64,
  pad: u64,
  index: &[u8],
) -> Result<u64> {
  let shown = path.display().to_string();
  let io = |what: &str| {
    let what = format!("{what} {shown}");
    move |e| DesError::io(what, e)
  };
  let file = &old.file;
  check_still_at(path, file)?;
  let index_at = old.end + new_len + pad;
  let footer_at = index_at + index.len() as u64;
  let steps_1_and_2 = || -> Result<()> {
    // Step 1: the file grows past its final size, ending in a footer that
    // names the old index.
    let end = footer_at + FOOTER_SIZE;
    write_at(file, &footer_bytes(end - old.index_at), end).map_err(io("extend"))?;
    // Step 2: everything below that footer.
    let mut buf = vec![0u8; COPY_CHUNK.min(new_len as usize)];
    let mut done = 0;
    while done < new_len {
      let n = buf.len().min((new_len - done) as usize);
      read_exact_at(staged, &mut buf[..n], done).map_err(io("read staged bytes for"))?;
      write_at(file, &buf[..n], old.end + done).map_err(io("write"))?;
      done += n as u64;
    }
    write_at(file, index, index_at).map_err(io("write index of"))
  };
  if let Err(e) = steps_1_and_2() {
    // A full disk or an I/O error: give the old end back (best effort; a
    // failure here leaves an unfinished append, which the next writer cuts).
    let _ = file.set_len(old.end).and_then(|_| file.sync_data());
    return Err(e);
  }
  Ok(footer_at)
}

/// Step 3, once steps 1 and 2 are synced: the footer naming the new index
/// (`index_len` bytes) goes below the pending one, then the file is cut just
/// after it. The caller syncs again before calling it stored.
pub(crate) fn write_footer(
  path: &Path,
  old: &OldEnd,
  footer_at: u64,
  index_len: u64,
) -> Result<()> {
  let shown = path.display().to_string();
  write_at(&old.file, &footer_bytes(index_len), footer_at)
    .and_then(|_| old.file.set_len(footer_at + FOOTER_SIZE))
    .map_err(|e| DesError::io(format!("write footer of {shown}"), e))?;
  check_still_at(path, &old.file)
}

/// The shard file, for syncing.
pub(crate) fn file_of(old: &OldEnd) -> &File {
  &old.file
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
  std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
  use std::os::windows::fs::FileExt;
  while !bytes.is_empty() {
    let n = file.seek_write(bytes, offset)?;
    if n == 0 {
      return Err(std::io::ErrorKind::WriteZero.into());
    }
    bytes = &bytes[n..];
    offset += n as u64;
  }
  Ok(())
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn neither_footer_straddles_a_sector_or_a_page() {
    for data_end in (8u64..5000).chain([8180, 1 << 30]) {
      for index_len in [0u64, 1, 11, 12, 100, 4095, 4096] {
        let pad = footer_pad(data_end, index_len);
        let range = if pad > 0 { RETIRED_RANGE_BYTES } else { 0 };
        let end = data_end + pad + index_len + range + 12;
        for footer_at in [end - 12, end] {
          let what = format!("{data_end} {index_len} pad {pad}");
          assert_eq!(footer_at / PAGE, (footer_at + 11) / PAGE, "{what}");
          assert_eq!(footer_at / 4096, (footer_at + 11) / 4096, "a page: {what}");
        }
        assert!(pad <= MAX_PAD);
      }
    }
  }

  #[test]
  fn no_padding_when_the_footers_fit() {
    assert_eq!(footer_pad(100, 100), 0);
    assert_eq!(footer_pad(500 - 62, 50), 0);
    assert!(footer_pad(501 - 62, 50) > 0);
  }
}
