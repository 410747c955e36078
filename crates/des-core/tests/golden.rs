//! Compatibility with the reference implementation: the vectors in `shared/golden`.

use des_core::{locate, sha256_hex, Body, DesError, ShardFile, ShardIndex};
use serde_json::Value;
use std::path::PathBuf;

fn golden() -> PathBuf {
  let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden");
  assert!(
    dir.is_dir(),
    "golden vectors not found at {}",
    dir.display()
  );
  dir
}

fn read_json(path: &PathBuf) -> Value {
  serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn every_routing_vector_routes_like_the_reference() {
  let text = std::fs::read_to_string(golden().join("routing.jsonl")).unwrap();
  let mut checked = 0;
  for line in text.lines().filter(|l| !l.trim().is_empty()) {
    let case: Value = serde_json::from_str(line).unwrap();
    let uid = match &case["uid"] {
      Value::String(s) => s.clone(),
      other => other.to_string(),
    };
    let got = locate(
      &uid,
      case["created_at"].as_str().unwrap(),
      case["n_bits"].as_i64().unwrap(),
    );
    if case.get("error").is_some() {
      assert!(
        matches!(got, Err(DesError::BadArg(_))),
        "{line} must be refused"
      );
    } else {
      let loc = got.unwrap_or_else(|e| panic!("{line}: {e}"));
      assert_eq!(
        u64::from(loc.shard_index),
        case["shard_index"].as_u64().unwrap(),
        "{line}"
      );
      assert_eq!(loc.shard_hex, case["shard_hex"].as_str().unwrap(), "{line}");
      assert_eq!(
        loc.object_key,
        case["object_key"].as_str().unwrap(),
        "{line}"
      );
    }
    checked += 1;
  }
  assert!(checked > 5000);
}

#[test]
fn every_golden_shard_reads_back_byte_exact() {
  let dir = golden().join("shards");
  let mut shards = 0;
  for item in std::fs::read_dir(&dir).unwrap() {
    let path = item.unwrap().path();
    if path.extension().and_then(|e| e.to_str()) != Some("des") {
      continue;
    }
    let expect = read_json(&path.with_extension("expect.json"));
    let shard = ShardFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
      u64::from(shard.index().version()),
      expect["version"].as_u64().unwrap()
    );
    let entries = expect["entries"].as_array().unwrap();
    assert_eq!(shard.index().len(), entries.len(), "{}", path.display());
    for want in entries {
      let uid = want["uid"].as_str().unwrap();
      let entry = shard
        .index()
        .get(uid)
        .unwrap_or_else(|| panic!("{uid} missing"));
      assert_eq!(
        entry.is_bigfile(),
        want["is_bigfile"].as_bool().unwrap(),
        "{uid}"
      );
      match (&entry.body, want["codec"].as_str()) {
        (Body::Inline { codec, .. }, Some(name)) => assert_eq!(codec.name(), name, "{uid}"),
        (Body::BigFile { .. }, None) => {}
        (body, codec) => panic!("{uid}: body {body:?} vs expected codec {codec:?}"),
      }
      let meta: Value = serde_json::from_str(entry.meta_json()).unwrap();
      assert_eq!(meta, want["meta"], "{uid} meta");
      let data = shard
        .read(uid, "_bigFiles")
        .unwrap_or_else(|e| panic!("{uid}: {e}"));
      assert_eq!(
        data.len() as u64,
        want["size"].as_u64().unwrap(),
        "{uid} size"
      );
      assert_eq!(
        sha256_hex(&data),
        want["sha256"].as_str().unwrap(),
        "{uid} sha256"
      );
    }
    shards += 1;
  }
  assert!(shards >= 5);
}

#[test]
fn every_corrupt_shard_is_refused_with_a_message() {
  for item in std::fs::read_dir(golden().join("corrupt")).unwrap() {
    let path = item.unwrap().path();
    let err = ShardFile::open(&path).expect_err(&format!("{} must be refused", path.display()));
    assert_eq!(err.code(), "DES_CORRUPT", "{}: {err}", path.display());
    assert!(err.to_string().len() > 20, "{err}");
  }
}

#[test]
fn a_damaged_payload_fails_to_decode_and_returns_nothing() {
  let path = golden().join("corrupt-payload/zstd-garbage.des");
  let shard = ShardFile::open(&path).unwrap();
  let err = shard.read("a", "_bigFiles").unwrap_err();
  assert_eq!(err.code(), "DES_CORRUPT", "{err}");
  assert!(err.to_string().contains("\"a\""), "{err}");
}

#[test]
fn a_tail_holding_the_index_parses_without_the_header() {
  for name in ["v2-zstd-1.des", "v1-mixed-1.des", "v2-lz4-1.des"] {
    let bytes = std::fs::read(golden().join("shards").join(name)).unwrap();
    let whole = ShardFile::open(golden().join("shards").join(name)).unwrap();
    let index_size = whole.index().index_size() as usize;
    let tail = &bytes[bytes.len() - index_size - 12..];
    let index = des_core::index_from_tail(tail, bytes.len() as u64).unwrap();
    assert_eq!(index.version(), whole.index().version(), "{name}");
    assert_eq!(index.len(), whole.index().len());
    let short = &bytes[bytes.len() - 12..];
    match des_core::index_from_tail(short, bytes.len() as u64) {
      Err(DesError::NeedMore { index_offset, .. }) => {
        assert_eq!(index_offset, whole.index().data_end())
      }
      other => panic!("expected NeedMore, got {other:?}"),
    }
    let _: &ShardIndex = &index;
  }
}

#[test]
fn the_flat_store_of_the_reference_packer_reads_back() {
  let dir = golden().join("flat-store");
  let expect = read_json(&dir.join("expect.json"));
  let mut found = 0;
  let shards: Vec<ShardFile> = std::fs::read_dir(&dir)
    .unwrap()
    .map(|e| e.unwrap().path())
    .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("des"))
    .map(|p| ShardFile::open(p).unwrap())
    .collect();
  for want in expect["files"].as_array().unwrap() {
    let uid = want["uid"].as_str().unwrap();
    let shard = shards.iter().find(|s| s.index().contains(uid)).expect(uid);
    let data = shard.read(uid, "_bigFiles").unwrap();
    assert_eq!(sha256_hex(&data), want["sha256"].as_str().unwrap());
    found += 1;
  }
  assert!(found > 50);
}
