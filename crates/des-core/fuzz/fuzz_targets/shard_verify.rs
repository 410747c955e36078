//! Feeds arbitrary bytes as a whole shard to the streaming verifier (index
//! and checksum block parsed from the tail, then the data section streamed
//! in uneven chunks): it must report, never panic, hang or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
  let Ok(index) = des_core::index_from_tail(data, data.len() as u64) else {
    return;
  };
  let index = Arc::new(index);
  let mut verifier = des_core::StreamVerifier::new(index.clone());
  let end = (index.data_end() as usize).min(data.len());
  let step = 1 + data.first().copied().unwrap_or(0) as usize;
  for piece in data[..end].chunks(step) {
    verifier.feed(piece);
  }
  let report = verifier.finish();
  assert!(report.ok <= report.entries);
  // Every read the verifier passed must succeed; none may return other bytes.
  for entry in index.entries() {
    if let des_core::Body::Inline { offset, length, .. } = entry.body {
      let stored = &data[offset as usize..(offset + length) as usize];
      let _ = des_core::decode_payload(&entry, stored);
    }
  }
});
