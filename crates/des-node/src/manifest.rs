//! The manifest scanner (`des_core::ManifestScanner`) for `src/pack/manifest.ts`.

use napi::bindgen_prelude::{Buffer, Uint32Array};
use napi_derive::napi;

/// Finds the entries of a manifest fed in chunks (see `feed`).
#[napi]
pub struct ManifestScan {
  inner: des_core::ManifestScanner,
}

/// An entry that cannot be JSON: what was read of it, for the JSON parser to say why.
#[napi(object)]
pub struct BadManifestEntry {
  pub text: String,
  pub line: u32,
  pub entry: u32,
}

/// What one `feed` or `end` found, in order: the entries, then any problem.
#[napi(object)]
pub struct ManifestFound {
  /// Four numbers an entry: start and end (byte offsets in the bytes
  /// given), the line it starts on, its number in the array (0 in JSON lines).
  pub spans: Uint32Array,
  /// Every entry found is an element of the array that is an object: they
  /// may be parsed as one array (see `des_core::Found`).
  pub all_objects: bool,
  /// Where the entry still open at the end begins (give the bytes from
  /// there first next time); -1 when none is open.
  pub keep_from: i64,
  /// Why the manifest is refused, in words.
  pub refused: Option<String>,
  pub bad_entry: Option<BadManifestEntry>,
}

fn found_of(f: des_core::Found) -> ManifestFound {
  let mut spans = Vec::with_capacity(f.spans.len() * 4);
  for s in &f.spans {
    // Offsets fit: the bytes given are a chunk and one entry of at most 16 MiB.
    spans.extend([s.start as u32, s.end as u32, s.line, s.entry]);
  }
  let (refused, bad_entry) = match f.error {
    None => (None, None),
    Some(des_core::ScanError::Refused(m)) => (Some(m), None),
    Some(des_core::ScanError::BadEntry { text, line, entry }) => (
      None,
      Some(BadManifestEntry {
        text: String::from_utf8_lossy(&text).into_owned(),
        line,
        entry,
      }),
    ),
  };
  ManifestFound {
    spans: spans.into(),
    all_objects: f.all_objects,
    keep_from: f.keep_from.map_or(-1, |k| k as i64),
    refused,
    bad_entry,
  }
}

#[napi]
impl ManifestScan {
  #[napi(constructor)]
  #[allow(clippy::new_without_default)]
  pub fn new() -> Self {
    ManifestScan {
      inner: des_core::ManifestScanner::new(),
    }
  }

  /// Scans `buf` from `from`: `buf` is the bytes kept from the last call
  /// (`keepFrom` on) followed by the next chunk, `from` their length.
  #[napi]
  pub fn feed(&mut self, buf: Buffer, from: u32) -> ManifestFound {
    found_of(self.inner.feed(&buf, from as usize))
  }

  /// The input has ended; `buf` is what was kept.
  #[napi]
  pub fn end(&mut self, buf: Buffer) -> ManifestFound {
    found_of(self.inner.end(&buf))
  }
}
