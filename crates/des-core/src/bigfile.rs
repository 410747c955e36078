//! BigFiles: payloads above a threshold, kept outside the shard and named by sha256.

use crate::entry::Entry;
use crate::error::{DesError, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::Path;

/// Default size above which a payload becomes a BigFile (10 MiB).
pub const DEFAULT_BIG_FILE_THRESHOLD: u64 = 10 * 1024 * 1024;
/// Default folder name beside the shard.
pub const DEFAULT_BIGFILES_PREFIX: &str = "_bigFiles";

/// Lower-case hex sha256 of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
  let digest = Sha256::digest(data);
  let mut out = String::with_capacity(64);
  for b in digest {
    out.push_str(&format!("{b:02x}"));
  }
  out
}

/// Checks a BigFile's bytes against its entry: size and sha256.
pub fn verify_bigfile(entry: &Entry, data: &[u8]) -> Result<()> {
  let crate::entry::Body::BigFile { sha256, size } = &entry.body else {
    return Err(DesError::BadArg(format!(
      "uid {:?} is not a BigFile",
      entry.uid
    )));
  };
  if data.len() as u64 != *size {
    // A read stops one byte past the indexed size: longer is "more than".
    let is = if data.len() as u64 > *size {
      format!("more than {size}")
    } else {
      data.len().to_string()
    };
    return Err(DesError::corrupt(format!(
      "BigFile {sha256} of uid {:?} is {is} bytes, the index says {size}",
      entry.uid
    )));
  }
  let actual = sha256_hex(data);
  if !actual.eq_ignore_ascii_case(sha256) {
    return Err(DesError::corrupt(format!(
      "BigFile of uid {:?} has sha256 {actual}, the index says {sha256}",
      entry.uid
    )));
  }
  Ok(())
}

/// Opens a BigFile's object for reading. Anything but a regular file (a
/// folder, a device that never ends, a FIFO) is refused without being
/// opened, and looked at again once open (opened without waiting: a FIFO put
/// there between the two cannot hold the thread). `failed` names the object
/// in I/O errors.
pub(crate) fn open_bigfile(
  path: &Path,
  entry: &Entry,
  failed: impl Fn(std::io::Error) -> DesError,
) -> Result<File> {
  let not_a_file = || {
    DesError::corrupt(format!(
      "BigFile of uid {:?} is not a regular file",
      entry.uid
    ))
  };
  if !std::fs::metadata(path).map_err(&failed)?.is_file() {
    return Err(not_a_file());
  }
  let file = crate::pack::open_without_waiting(path).map_err(&failed)?;
  if !file.metadata().map_err(&failed)?.is_file() {
    return Err(not_a_file());
  }
  Ok(file)
}
