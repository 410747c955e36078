//! Feeds arbitrary bytes to the footer/index parser as a whole object and as
//! a tail, then decodes every entry the parser accepted. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
  // As a whole object (header present).
  if let Ok(index) = des_core::index_from_tail(data, data.len() as u64) {
    for entry in index.entries() {
      if let des_core::Body::Inline { offset, length, .. } = entry.body {
        let stored = &data[offset as usize..(offset + length) as usize];
        let _ = des_core::decode_payload(&entry, stored);
      }
    }
  }
  // As a tail of a larger object (version recognised from the index).
  if data.len() > 4 {
    let _ = des_core::index_from_tail(&data[4..], data.len() as u64);
  }
  // As a bare index of either version.
  let _ = des_core::ShardIndex::parse(data.to_vec(), 2, 1 << 20);
  let _ = des_core::ShardIndex::parse(data.to_vec(), 1, 1 << 20);
});
