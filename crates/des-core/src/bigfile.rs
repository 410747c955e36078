//! BigFiles: payloads above a threshold, kept outside the shard and named by sha256.

use crate::entry::Entry;
use crate::error::{DesError, Result};
use sha2::{Digest, Sha256};

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
