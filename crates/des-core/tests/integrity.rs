//! Every byte a shard holds is covered: flip any one of them and `verify`
//! names the damage, and no read hands out wrong bytes as success.

use des_core::{
  encode_index, footer_bytes, header_bytes, index_from_tail, verify_file, Body, Codec,
  CompressionPolicy, Entry, Region, ShardFile, ShardIndex, ShardWriter, StreamVerifier,
  WriterOptions, MAX_STATED_SIZE,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CODECS: [Codec; 3] = [Codec::None, Codec::Zstd, Codec::Lz4];

fn opts(codec: Codec, replace: bool) -> WriterOptions {
  WriterOptions {
    compression: CompressionPolicy {
      codec,
      raw_if_larger: false,
      ..CompressionPolicy::default()
    },
    big_file_threshold: 3000,
    replace,
    ..WriterOptions::default()
  }
}

fn payload(seed: u8, len: usize) -> Vec<u8> {
  (0..len)
    .map(|i| {
      if i % 7 == 0 {
        seed ^ (i as u8)
      } else {
        b'a' + (i % 5) as u8
      }
    })
    .collect()
}

/// A shard of `codec` with inline entries (one empty), a BigFile, meta, and a
/// replaced entry (so it has a retired range): what the packer writes.
/// Returns the path and every uid's expected payload.
fn written_shard(dir: &Path, codec: Codec) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
  let path = dir.join("20240101/0A.des");
  let mut expect = BTreeMap::new();
  let mut w = ShardWriter::create(&path, opts(codec, false)).unwrap();
  for (i, len) in [0usize, 1, 90, 400, 5000].into_iter().enumerate() {
    let uid = format!("doc-{i}.txt");
    let data = payload(i as u8, len);
    w.add(&uid, data.clone(), Some(r#"{"k":"v"}"#)).unwrap();
    expect.insert(uid, data);
  }
  // Bytes no codec shrinks: live data outweighs the old index the append
  // leaves behind, so the shard is appended to in place (not compacted).
  let mut x = 0x2545f491u32;
  let noise: Vec<u8> = (0..1500)
    .map(|_| {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      x as u8
    })
    .collect();
  w.add("noise.bin", noise.clone(), None).unwrap();
  expect.insert("noise.bin".to_string(), noise);
  w.finish().unwrap();
  let mut w = ShardWriter::append(&path, opts(codec, true)).unwrap();
  let data = payload(99, 120);
  w.add("doc-2.txt", data.clone(), None).unwrap();
  expect.insert("doc-2.txt".to_string(), data);
  w.add("late.txt", payload(7, 60), None).unwrap();
  expect.insert("late.txt".to_string(), payload(7, 60));
  w.finish().unwrap();
  (path, expect)
}

/// The one BigFile `written_shard` stores (doc-4.txt).
fn the_bigfile(dir: &Path) -> PathBuf {
  std::fs::read_dir(dir.join("20240101/_bigFiles"))
    .unwrap()
    .next()
    .unwrap()
    .unwrap()
    .path()
}

fn region_of(pos: usize, data_end: usize, len: usize) -> Region {
  if pos < 8 {
    Region::Header
  } else if pos < data_end {
    Region::Entry
  } else if pos < len - 12 {
    Region::Index
  } else {
    Region::Footer
  }
}

/// Reads every uid; Ok must mean the exact bytes.
fn no_wrong_bytes(path: &Path, expect: &BTreeMap<String, Vec<u8>>, what: &str) {
  let Ok(shard) = ShardFile::open(path) else {
    return;
  };
  for (uid, want) in expect {
    if let Ok(got) = shard.read(uid, "_bigFiles") {
      assert_eq!(
        &got, want,
        "{what}: uid {uid} read back wrong bytes as success"
      );
    }
  }
}

#[test]
fn every_single_byte_flip_in_a_written_shard_is_reported_in_its_region() {
  for codec in CODECS {
    let dir = tempfile::tempdir().unwrap();
    let (path, expect) = written_shard(dir.path(), codec);
    let clean = verify_file(&path, Some("_bigFiles")).unwrap();
    assert!(clean.checksummed, "{codec:?}");
    assert!(clean.problems.is_empty(), "{codec:?}: {:?}", clean.problems);
    assert_eq!(clean.entries, 7, "{codec:?}");
    let good = std::fs::read(&path).unwrap();
    let data_end = ShardFile::open(&path).unwrap().index().data_end() as usize;
    let retired = ShardFile::open(&path).unwrap().index().retired().to_vec();
    // The replaced entry's bytes, and the index and footer the in-place
    // append left behind (with any padding before the new index).
    assert!(
      (2..=3).contains(&retired.len()),
      "retired ranges: {retired:?}"
    );
    for pos in 0..good.len() {
      for mask in [0x01u8, 0x80] {
        let mut bad = good.clone();
        bad[pos] ^= mask;
        std::fs::write(&path, &bad).unwrap();
        let what = format!("{codec:?}: byte {pos} ^ {mask:#04x} of {}", good.len());
        let report = verify_file(&path, Some("_bigFiles")).unwrap();
        assert!(!report.problems.is_empty(), "{what}: not reported");
        let mut want = region_of(pos, data_end, good.len());
        let in_retired = retired
          .iter()
          .any(|r| (r.offset..r.offset + r.length).contains(&(pos as u64)));
        if in_retired {
          want = Region::Data;
        }
        let regions: Vec<Region> = report.problems.iter().map(|p| p.region).collect();
        let fits = match want {
          // A flipped version byte can make the index unreadable as that version.
          Region::Header => regions.contains(&Region::Header),
          // A flipped size moves the index start: either refusal names the damage.
          Region::Footer => regions
            .iter()
            .any(|r| *r == Region::Footer || *r == Region::Index),
          other => regions.contains(&other),
        };
        assert!(fits, "{what}: expected {want:?}, got {:?}", report.problems);
        no_wrong_bytes(&path, &expect, &what);
      }
    }
  }
}

/// `written_shard`'s BigFile with one bit of it flipped (the same size, other bytes); its path.
fn flip_the_bigfile(dir: &Path) -> PathBuf {
  let big = the_bigfile(dir);
  let mut bytes = std::fs::read(&big).unwrap();
  bytes[100] ^= 0x04;
  std::fs::write(&big, &bytes).unwrap();
  big
}

#[test]
fn a_flipped_bigfile_is_reported_once_and_never_served() {
  let dir = tempfile::tempdir().unwrap();
  let (path, expect) = written_shard(dir.path(), Codec::Zstd);
  let big = flip_the_bigfile(dir.path());
  let report = verify_file(&path, Some("_bigFiles")).unwrap();
  assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
  assert_eq!(report.problems[0].region, Region::BigFile);
  assert_eq!(report.problems[0].uid.as_deref(), Some("doc-4.txt"));
  no_wrong_bytes(&path, &expect, "flipped BigFile");
  std::fs::remove_file(&big).unwrap();
  let report = verify_file(&path, Some("_bigFiles")).unwrap();
  assert_eq!(report.problems[0].region, Region::BigFile);
  assert_eq!(report.problems[0].code, "DES_NO_FILE");
}

#[test]
fn a_bigfile_of_the_right_size_but_other_bytes_is_written_over_not_reused() {
  let dir = tempfile::tempdir().unwrap();
  let (path, expect) = written_shard(dir.path(), Codec::Zstd);
  let big = flip_the_bigfile(dir.path());
  // The same bytes stored again (another uid, in another shard): the damaged
  // file of the same size is not taken for them.
  let other = dir.path().join("20240101/0B.des");
  let mut w = ShardWriter::create(&other, opts(Codec::Zstd, false)).unwrap();
  w.add("again.bin", expect["doc-4.txt"].clone(), None)
    .unwrap();
  w.finish().unwrap();
  assert_eq!(std::fs::read(&big).unwrap(), expect["doc-4.txt"]);
  for shard in [&path, &other] {
    let report = verify_file(shard, Some("_bigFiles")).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
  }
  no_wrong_bytes(&path, &expect, "mended BigFile");
}

/// A BigFile longer than its indexed size is refused after one byte past
/// that size, by a read and by verify: never read whole.
#[test]
fn a_bigfile_that_does_not_end_at_its_size_is_refused_without_reading_it_whole() {
  let dir = tempfile::tempdir().unwrap();
  let (path, _) = written_shard(dir.path(), Codec::Zstd);
  let big = the_bigfile(dir.path());
  let mut bytes = std::fs::read(&big).unwrap();
  bytes.push(0);
  std::fs::write(&big, bytes).unwrap();
  let err = ShardFile::open(&path)
    .unwrap()
    .read("doc-4.txt", "_bigFiles")
    .unwrap_err()
    .to_string();
  assert!(err.contains("is more than 5000 bytes"), "{err}");
  let report = verify_file(&path, Some("_bigFiles")).unwrap();
  assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
  assert!(
    report.problems[0].message.contains("more than 5000"),
    "{:?}",
    report.problems
  );
}

/// A BigFile's object that is a device (which never ends), a folder or a
/// FIFO (whose open waits for a writer, for ever) is refused without being
/// opened for reading, by a read and by verify.
#[cfg(target_os = "linux")]
#[test]
fn a_bigfile_that_is_not_a_regular_file_is_refused_without_being_read() {
  let dir = tempfile::tempdir().unwrap();
  let (path, _) = written_shard(dir.path(), Codec::Zstd);
  let big = the_bigfile(dir.path());
  type Make<'a> = &'a dyn Fn(&Path);
  let kinds: [(&str, Make); 3] = [
    ("a device", &|p| {
      std::os::unix::fs::symlink("/dev/zero", p).unwrap()
    }),
    ("a folder", &|p| std::fs::create_dir(p).unwrap()),
    ("a FIFO", &|p| {
      assert!(std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap()
        .success())
    }),
  ];
  for (kind, make) in kinds {
    let _ = std::fs::remove_file(&big);
    let _ = std::fs::remove_dir(&big);
    make(&big);
    let err = ShardFile::open(&path)
      .unwrap()
      .read("doc-4.txt", "_bigFiles")
      .unwrap_err();
    assert_eq!(err.code(), "DES_CORRUPT", "{kind}: {err}");
    assert!(
      err.to_string().contains("not a regular file"),
      "{kind}: {err}"
    );
    let report = verify_file(&path, Some("_bigFiles")).unwrap();
    assert_eq!(report.problems.len(), 1, "{kind}: {:?}", report.problems);
    assert!(
      report.problems[0].message.contains("not a regular file"),
      "{kind}: {:?}",
      report.problems
    );
  }
}

#[test]
fn a_stream_fed_in_any_chunks_finds_what_the_file_pass_finds() {
  let dir = tempfile::tempdir().unwrap();
  let (path, _) = written_shard(dir.path(), Codec::Lz4);
  let mut bytes = std::fs::read(&path).unwrap();
  bytes[300] ^= 0x10;
  std::fs::write(&path, &bytes).unwrap();
  let from_file = verify_file(&path, Some("_bigFiles")).unwrap();
  for chunk in [1usize, 7, 64, 4096] {
    let index = Arc::new(index_from_tail(&bytes, bytes.len() as u64).unwrap());
    let mut v = StreamVerifier::new(index.clone());
    for piece in bytes[..index.data_end() as usize].chunks(chunk) {
      v.feed(piece);
    }
    let streamed = v.finish();
    let msgs = |r: &des_core::VerifyReport| {
      r.problems
        .iter()
        .filter(|p| p.region != Region::BigFile)
        .map(|p| p.message.clone())
        .collect::<Vec<_>>()
    };
    assert_eq!(msgs(&streamed), msgs(&from_file), "chunks of {chunk}");
    assert!(!streamed.problems.is_empty());
  }
  // A stream that stops short names what it never saw.
  let index = Arc::new(index_from_tail(&bytes, bytes.len() as u64).unwrap());
  let mut v = StreamVerifier::new(index);
  v.feed(&bytes[..50]);
  let report = v.finish();
  assert!(report
    .problems
    .iter()
    .any(|p| p.message.contains("ended at byte 50")));
}

#[test]
fn a_shard_without_checksums_verifies_as_far_as_it_can_and_says_so() {
  let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/shards");
  for name in [
    "v1-mixed-1.des",
    "v2-none-1.des",
    "v2-zstd-1.des",
    "v2-lz4-1.des",
  ] {
    let report = verify_file(&golden.join(name), Some("_bigFiles")).unwrap();
    assert!(!report.checksummed, "{name}");
    assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
    assert_eq!(report.ok, report.entries, "{name}");
  }
}

#[test]
fn appending_to_a_shard_without_checksums_checks_its_entries_and_adds_them() {
  let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/shards");
  for name in ["v1-mixed-1.des", "v2-zstd-1.des"] {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::copy(golden.join(name), &path).unwrap();
    let before = ShardFile::open(&path).unwrap();
    let old: Vec<(String, Vec<u8>)> = before
      .index()
      .entries()
      .filter(|e| !e.is_bigfile())
      .map(|e| (e.uid.clone(), before.read(&e.uid, "_bigFiles").unwrap()))
      .collect();
    let mut w = ShardWriter::append(&path, WriterOptions::default()).unwrap();
    w.add("new-one", b"fresh".to_vec(), None).unwrap();
    w.finish().unwrap();
    let after = ShardFile::open(&path).unwrap();
    assert!(after.index().has_checksums(), "{name}");
    for (uid, data) in &old {
      assert_eq!(&after.read(uid, "_bigFiles").unwrap(), data, "{name} {uid}");
    }
    let report = verify_file(&path, Some("_bigFiles")).unwrap();
    let inline_problems: Vec<_> = report
      .problems
      .iter()
      .filter(|p| p.region != Region::BigFile)
      .collect();
    assert!(inline_problems.is_empty(), "{name}: {inline_problems:?}");
  }
}

#[test]
fn appending_refuses_to_bless_a_damaged_old_payload_with_a_checksum() {
  let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden");
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("x.des");
  std::fs::copy(golden.join("corrupt-payload/zstd-garbage.des"), &path).unwrap();
  let before = std::fs::read(&path).unwrap();
  let err = match ShardWriter::append(&path, WriterOptions::default()) {
    Ok(_) => panic!("append accepted a shard with a damaged payload"),
    Err(e) => e,
  };
  assert_eq!(err.code(), "DES_CORRUPT");
  assert_eq!(std::fs::read(&path).unwrap(), before, "old shard untouched");
}

/// A checksummed shard built by hand from entries (crcs as given).
fn hand_built(dir: &Path, data: &[u8], entries: &[Entry]) -> PathBuf {
  let mut bytes = header_bytes().to_vec();
  bytes.extend_from_slice(data);
  let index = encode_index(entries, &[]).unwrap();
  bytes.extend_from_slice(&index);
  bytes.extend_from_slice(&footer_bytes(index.len() as u64));
  let path = dir.join("hand.des");
  std::fs::write(&path, bytes).unwrap();
  path
}

fn inline(uid: &str, offset: u64, stored: &[u8], size: u64, codec: Codec) -> Entry {
  Entry {
    uid: uid.to_string(),
    body: Body::Inline {
      offset,
      length: stored.len() as u64,
      codec,
      size,
      crc: Some(des_core::crc32c(stored)),
    },
    meta: String::new(),
  }
}

#[test]
fn overlapping_entries_are_reported_even_when_each_checks_out() {
  let dir = tempfile::tempdir().unwrap();
  let data = b"abcdefgh";
  let path = hand_built(
    dir.path(),
    data,
    &[
      inline("a", 8, &data[..6], 6, Codec::None),
      inline("b", 12, &data[4..], 4, Codec::None),
    ],
  );
  let report = verify_file(&path, Some("_bigFiles")).unwrap();
  assert_eq!(report.ok, 2);
  assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
  assert_eq!(report.problems[0].region, Region::Index);
  assert!(
    report.problems[0].message.contains("overlaps"),
    "{:?}",
    report.problems
  );
}

#[test]
fn two_entries_starting_at_the_same_byte_are_refused_when_the_index_is_read() {
  let dir = tempfile::tempdir().unwrap();
  let data = b"abcdefgh";
  // Out of order but apart: read as they are.
  let apart = hand_built(
    dir.path(),
    data,
    &[
      inline("b", 12, &data[4..], 4, Codec::None),
      inline("a", 8, &data[..4], 4, Codec::None),
    ],
  );
  let file = ShardFile::open(&apart).unwrap();
  assert_eq!(file.read("a", "_bigFiles").unwrap(), b"abcd");
  // The same start for two (a payload cache names a payload by its start).
  let same = hand_built(
    dir.path(),
    data,
    &[
      inline("a", 8, &data[..4], 4, Codec::None),
      inline("e", 12, &data[4..4], 0, Codec::None),
      inline("b", 8, &data[..6], 6, Codec::None),
    ],
  );
  let Err(err) = ShardFile::open(&same) else {
    panic!("two entries at byte 8 were read");
  };
  assert!(
    err
      .to_string()
      .contains(r#"uids "a" and "b" both start at byte 8"#),
    "{err}"
  );
  // Empty payloads take no bytes: they may share a start.
  let empties = hand_built(
    dir.path(),
    data,
    &[
      inline("a", 8, &data[..4], 4, Codec::None),
      inline("e1", 12, &[], 0, Codec::None),
      inline("e2", 12, &[], 0, Codec::None),
      inline("b", 12, &data[4..], 4, Codec::None),
    ],
  );
  assert_eq!(
    ShardFile::open(&empties)
      .unwrap()
      .read("b", "_bigFiles")
      .unwrap(),
    b"efgh"
  );
}

#[test]
fn a_stated_size_beyond_two_to_the_53_is_refused_when_the_index_is_read() {
  let dir = tempfile::tempdir().unwrap();
  let frame = des_core::compress(Codec::Zstd, 3, b"tiny").unwrap();
  let path = hand_built(
    dir.path(),
    &frame,
    &[inline("a", 8, &frame, u64::MAX, Codec::Zstd)],
  );
  let err = ShardFile::open(&path).unwrap_err();
  assert_eq!(err.code(), "DES_CORRUPT");
  assert!(err.to_string().contains("2^53"), "{err}");
  let path = hand_built(
    dir.path(),
    &frame,
    &[inline("a", 8, &frame, MAX_STATED_SIZE, Codec::Zstd)],
  );
  let shard = ShardFile::open(&path).unwrap();
  let err = shard.read("a", "_bigFiles").unwrap_err();
  assert_eq!(err.code(), "DES_CORRUPT");
  assert!(err.to_string().contains("ceiling"), "{err}");
}

#[test]
fn a_bigfile_hash_in_upper_case_is_refused_when_the_index_is_read() {
  let dir = tempfile::tempdir().unwrap();
  let bigfile = |sha256: String| Entry {
    uid: "big".to_string(),
    body: Body::BigFile { sha256, size: 3 },
    meta: String::new(),
  };
  let lower = des_core::sha256_hex(b"abc");
  let path = hand_built(dir.path(), b"", &[bigfile(lower.clone())]);
  assert!(ShardFile::open(&path).is_ok());
  let path = hand_built(dir.path(), b"", &[bigfile(lower.to_uppercase())]);
  let err = ShardFile::open(&path).unwrap_err();
  assert_eq!(err.code(), "DES_CORRUPT");
  assert!(err.to_string().contains("lower-case hex"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_footer_stating_a_huge_index_is_refused_from_the_index_s_first_bytes() {
  // A header, 256 MiB of hole, and a footer whose index is all of it: the
  // index's first bytes (no entries, then no checksum block) are damage
  // enough; the rest of the section is not read.
  let dir = tempfile::tempdir().unwrap();
  let path = dir.path().join("huge.des");
  let hole = 256u64 << 20;
  let file = std::fs::File::create(&path).unwrap();
  std::os::unix::fs::FileExt::write_all_at(&file, &header_bytes(), 0).unwrap();
  std::os::unix::fs::FileExt::write_all_at(&file, &footer_bytes(hole), 8 + hole).unwrap();
  drop(file);
  let Err(err) = ShardFile::open(&path) else {
    panic!("read as a shard");
  };
  assert_eq!(err.code(), "DES_CORRUPT");
  assert!(err.to_string().contains("not a checksum block"), "{err}");
}

#[test]
fn a_zstd_frame_whose_stated_size_disagrees_with_the_index_is_not_decoded() {
  let big = vec![0u8; 1 << 20];
  let frame = des_core::compress(Codec::Zstd, 3, &big).unwrap();
  assert!(frame.len() < 200);
  let err = des_core::decompress(Codec::Zstd, &frame, 1 << 19, "u").unwrap_err();
  assert!(
    err.to_string().contains("zstd frame says 1048576 bytes"),
    "{err}"
  );
}

#[test]
fn the_index_is_checked_against_its_own_checksum() {
  let dir = tempfile::tempdir().unwrap();
  let (path, _) = written_shard(dir.path(), Codec::None);
  let bytes = std::fs::read(&path).unwrap();
  let index = ShardFile::open(&path).unwrap().index().clone();
  // Change a uid's byte inside the index: it still parses, the CRC refuses it.
  let at = index.data_end() as usize + 4 + 2;
  let mut bad = bytes.clone();
  bad[at] = b'D';
  let err = ShardIndex::parse(
    bad[index.data_end() as usize..bad.len() - 12].to_vec(),
    2,
    index.data_end(),
  )
  .unwrap_err();
  assert!(err.to_string().contains("index checksum mismatch"), "{err}");
}
