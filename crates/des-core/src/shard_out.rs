//! A new shard's temp file, written past the page cache where the system
//! allows it (Linux `O_DIRECT`). A packer syncs every shard it writes at once
//! and reads none of them back, so the cache gains nothing from them: written
//! through it, a run's bytes are copied once more, evict what readers had
//! cached, and cost a freshly allocated page each (slow under a hypervisor
//! that backs guest memory lazily). Bytes are gathered in an aligned buffer
//! and written in whole blocks; the last partial block, and what the caller
//! wants cached (the index and footer: read soon after), are written through
//! the cache once direct writing is switched off. Where direct writes are
//! refused (tmpfs, some network filesystems) the file is written through the
//! cache.

use std::io::{self, Write};
use tempfile::NamedTempFile;

/// Alignment of direct writes, in memory, length and file offset: a
/// multiple of every logical block size in common use.
const BLOCK: usize = 4096;
/// Bytes gathered before they are written.
const CHUNK: usize = 1 << 20;

/// A temp file with a write buffer, written directly when `go_direct` took.
pub(crate) struct ShardOut {
  file: NamedTempFile,
  /// `buf[skip..]` are the bytes not yet written; `skip` aligns them.
  buf: Vec<u8>,
  skip: usize,
  /// The file's status flags before `O_DIRECT` was added, while it is on.
  direct: Option<i32>,
  /// Bytes written to the file so far.
  written: u64,
  /// A write failed: what is in the file is not what was given, and every
  /// later call fails too (a caller that went on would finish a shard with
  /// bytes missing or moved).
  failed: bool,
}

impl ShardOut {
  /// A buffered writer over `file` (new and empty), not direct.
  pub(crate) fn new(file: NamedTempFile) -> ShardOut {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + BLOCK);
    let skip = buf.as_ptr().align_offset(BLOCK).min(BLOCK);
    buf.resize(skip, 0);
    ShardOut {
      file,
      buf,
      skip,
      direct: None,
      written: 0,
      failed: false,
    }
  }

  /// Writes past the page cache from here on, if the file's system allows.
  /// Only before anything was written out: direct writes start at offset 0.
  pub(crate) fn go_direct(&mut self) {
    #[cfg(target_os = "linux")]
    if self.written == 0 && self.direct.is_none() {
      use std::os::unix::io::AsRawFd;
      let fd = self.file.as_file().as_raw_fd();
      // SAFETY: fcntl on a descriptor this writer owns; it only sets status flags.
      unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) == 0 {
          self.direct = Some(flags);
        }
      }
    }
  }

  /// Back to writes through the cache (for a last partial block, or when a
  /// direct write was refused).
  fn go_cached(&mut self) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(flags) = self.direct {
      use std::os::unix::io::AsRawFd;
      let fd = self.file.as_file().as_raw_fd();
      // SAFETY: as in go_direct.
      if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } != 0 {
        return Err(io::Error::last_os_error());
      }
    }
    self.direct = None;
    Ok(())
  }

  fn usable(&self) -> io::Result<()> {
    if self.failed {
      return Err(io::Error::other("an earlier write to this file failed"));
    }
    Ok(())
  }

  /// Writes the first `n` pending bytes, then keeps the rest at the front.
  fn write_pending(&mut self, n: usize) -> io::Result<()> {
    self.usable()?;
    let wrote = self.write_out(n);
    self.failed = wrote.is_err();
    wrote
  }

  fn write_out(&mut self, n: usize) -> io::Result<()> {
    let (mut at, end) = (self.skip, self.skip + n);
    while at < end {
      match self.file.as_file().write(&self.buf[at..end]) {
        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
        Ok(wrote) => {
          at += wrote;
          self.written += wrote as u64;
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        // A direct write refused (EINVAL: this filesystem, or a short write
        // before it left the rest unaligned) wrote nothing: the rest goes
        // through the cache.
        Err(e) if self.direct.is_some() && e.kind() == io::ErrorKind::InvalidInput => {
          self.go_cached()?
        }
        Err(e) => return Err(e),
      }
    }
    self.buf.copy_within(end.., self.skip);
    self.buf.truncate(self.buf.len() - n);
    Ok(())
  }

  fn pending(&self) -> usize {
    self.buf.len() - self.skip
  }

  /// Writes what is pending in whole blocks directly, and everything after
  /// through the cache: for bytes read back soon (a shard's index and
  /// footer: a migration's verify and the shard's first reader read them).
  pub(crate) fn cached_from_here(&mut self) -> io::Result<()> {
    self.usable()?;
    let whole = self.pending() / BLOCK * BLOCK;
    if self.direct.is_some() && whole > 0 {
      self.write_pending(whole)?;
    }
    self.go_cached()
  }

  /// Everything written; the file, its cursor at the end, no longer direct.
  pub(crate) fn into_inner(mut self) -> io::Result<NamedTempFile> {
    self.cached_from_here()?;
    let rest = self.pending();
    if rest > 0 {
      self.write_pending(rest)?;
    }
    Ok(self.file)
  }
}

impl Write for ShardOut {
  fn write(&mut self, data: &[u8]) -> io::Result<usize> {
    self.usable()?;
    let take = data.len().min(CHUNK - self.pending());
    self.buf.extend_from_slice(&data[..take]);
    if self.pending() == CHUNK {
      self.write_pending(CHUNK)?;
    }
    Ok(take)
  }

  /// Nothing: a partial block cannot be written directly, so the bytes wait
  /// for `into_inner`.
  fn flush(&mut self) -> io::Result<()> {
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// Bytes that show where each one was (no block repeats another).
  fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
  }

  fn written(mut out: ShardOut, data: &[u8], piece: usize) -> Vec<u8> {
    for part in data.chunks(piece.max(1)) {
      out.write_all(part).unwrap();
    }
    let file = out.into_inner().unwrap();
    std::fs::read(file.path()).unwrap()
  }

  #[test]
  fn every_byte_lands_in_order_direct_or_not_whatever_the_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
      0,
      1,
      4095,
      4096,
      4097,
      CHUNK - 1,
      CHUNK,
      CHUNK + 1,
      2 * CHUNK + 12345,
    ];
    for direct in [false, true] {
      for size in sizes {
        for piece in [777, CHUNK + 5] {
          let data = bytes(size);
          let mut out = ShardOut::new(NamedTempFile::new_in(dir.path()).unwrap());
          if direct {
            out.go_direct();
          }
          let got = written(out, &data, piece);
          assert!(
            got == data,
            "direct {direct}, {size} bytes in pieces of {piece}"
          );
        }
      }
    }
  }

  #[test]
  fn bytes_after_cached_from_here_follow_the_direct_ones_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for (direct_part, cached_part) in [
      (0, 10),
      (4096, 1),
      (CHUNK + 4095, 70_000),
      (3 * 4096 + 7, 0),
    ] {
      let data = bytes(direct_part + cached_part);
      let mut out = ShardOut::new(NamedTempFile::new_in(dir.path()).unwrap());
      out.go_direct();
      out.write_all(&data[..direct_part]).unwrap();
      out.cached_from_here().unwrap();
      assert!(out.direct.is_none());
      out.write_all(&data[direct_part..]).unwrap();
      let file = out.into_inner().unwrap();
      assert!(
        std::fs::read(file.path()).unwrap() == data,
        "{direct_part} + {cached_part} bytes"
      );
    }
  }

  #[test]
  fn direct_writing_starts_only_before_anything_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = ShardOut::new(NamedTempFile::new_in(dir.path()).unwrap());
    let data = bytes(CHUNK + 5000);
    out.write_all(&data[..CHUNK + 10]).unwrap();
    out.go_direct();
    assert!(out.direct.is_none());
    out.write_all(&data[CHUNK + 10..]).unwrap();
    let file = out.into_inner().unwrap();
    assert!(std::fs::read(file.path()).unwrap() == data);
  }

  /// Whether this folder's filesystem refuses misaligned direct writes
  /// (ext2/3/4 and XFS do; tmpfs takes them): there the fallback must run.
  #[cfg(target_os = "linux")]
  fn refuses_misaligned(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
      return false;
    };
    // SAFETY: statfs fills the zeroed struct it is given; c is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
      return false;
    }
    matches!(st.f_type as i64, 0xEF53 | 0x5846_5342)
  }
  #[cfg(not(target_os = "linux"))]
  fn refuses_misaligned(_dir: &std::path::Path) -> bool {
    false
  }

  #[test]
  fn a_refused_direct_write_goes_through_the_cache_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = ShardOut::new(NamedTempFile::new_in(dir.path()).unwrap());
    out.go_direct();
    let must_fall_back = out.direct.is_some() && refuses_misaligned(dir.path());
    // Pending bytes that start one byte past the aligned place: a direct
    // write of them is refused with EINVAL (where the filesystem checks).
    out.buf.push(0);
    out.skip += 1;
    let data = bytes(3 * CHUNK + 100);
    for part in data.chunks(4096) {
      out.write_all(part).unwrap();
    }
    if must_fall_back {
      assert!(
        out.direct.is_none(),
        "the refused write switched direct writing off"
      );
    } else {
      eprintln!("no misaligned direct write was refused here: only the bytes were checked");
    }
    let file = out.into_inner().unwrap();
    assert!(std::fs::read(file.path()).unwrap() == data);
  }

  #[cfg(target_os = "linux")]
  #[test]
  fn after_a_failed_write_every_later_call_fails_so_no_shard_is_finished_short() {
    let dir = tempfile::tempdir().unwrap();
    // Writes to /dev/full fail (ENOSPC); the temp path is a file of our own.
    let full = std::fs::OpenOptions::new()
      .write(true)
      .open("/dev/full")
      .unwrap();
    let ours = NamedTempFile::new_in(dir.path()).unwrap().into_temp_path();
    let mut out = ShardOut::new(NamedTempFile::from_parts(full, ours));
    let data = bytes(CHUNK + 10);
    assert!(out.write_all(&data).is_err());
    assert!(out.write_all(b"more").is_err());
    assert!(out.cached_from_here().is_err());
    let err = out
      .into_inner()
      .expect_err("finishing after a failed write fails");
    assert!(err.to_string().contains("an earlier write"), "{err}");
  }
}
