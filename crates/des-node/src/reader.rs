//! `ShardReader`: a parsed index held in Rust (never one JS object per entry),
//! over a local file or over tail bytes handed in by the S3 code.

use crate::entry::{entry_info, EntryInfo};
use crate::error::{bad_arg, IntoNapi};
use crate::payload_cache::PayloadCache;
use des_core::{Body, PayloadForm, ShardFile, ShardIndex, ShardSource as Source};
use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi::{Env, Task};
use napi_derive::napi;
use std::sync::Arc;

/// Where the footer says the index lies.
#[napi(object)]
pub struct TailFooter {
  pub index_offset: i64,
  pub index_size: i64,
}

/// Reads the footer from the last bytes of an object of `objectSize` bytes,
/// so a caller knows whether its tail holds the whole index.
#[napi]
pub fn footer_from_tail(tail: Buffer, object_size: i64) -> napi::Result<TailFooter> {
  let footer = des_core::footer_from_tail(&tail, to_u64(object_size)?).napi()?;
  Ok(TailFooter {
    index_offset: footer.index_offset as i64,
    index_size: footer.index_size as i64,
  })
}

/// True when the first bytes of a large index section, walked as a v2 index,
/// are followed by something that is not a checksum block (damage in a v2
/// shard; see `shardHeaderVersion`).
#[napi]
pub fn index_start_is_foreign(prefix: Buffer) -> bool {
  des_core::index_start_is_foreign(&prefix)
}

/// The layout version (1 or 2) a shard's first 8 bytes state; DES_CORRUPT
/// when they are no shard header.
#[napi]
pub fn shard_header_version(header: Buffer) -> napi::Result<u32> {
  Ok(u32::from(des_core::parse_header(&header).napi()?))
}

fn to_u64(v: i64) -> napi::Result<u64> {
  u64::try_from(v).map_err(|_| bad_arg(format!("expected a non-negative size, got {v}")))
}

/// A shard's parsed index, with payload reads for local files and payload
/// decoding for bytes fetched elsewhere.
#[napi]
pub struct ShardReader {
  source: Source,
}

/// Parses a shard off the event loop.
pub struct OpenTask {
  path: Option<String>,
  tail: Option<(Vec<u8>, u64)>,
}

impl Task for OpenTask {
  type Output = Source;
  type JsValue = ShardReader;
  fn compute(&mut self) -> napi::Result<Source> {
    match (&self.path, self.tail.take()) {
      (Some(path), _) => Ok(Source::File(Arc::new(ShardFile::open(path).napi()?))),
      (None, Some((tail, size))) => Ok(Source::Tail(Arc::new(
        des_core::index_from_tail(&tail, size).napi()?,
      ))),
      (None, None) => Err(bad_arg("nothing to open")),
    }
  }
  fn resolve(&mut self, _env: Env, source: Source) -> napi::Result<ShardReader> {
    Ok(ShardReader { source })
  }
}

/// Decodes or reads a payload off the event loop (see `des_core::read_payload`).
pub struct PayloadTask {
  source: Source,
  uid: String,
  stored: Option<Vec<u8>>,
  bigfiles_prefix: String,
  form: PayloadForm,
  keep: Option<des_core::KeepIn>,
}

impl Task for PayloadTask {
  type Output = Vec<u8>;
  type JsValue = Buffer;
  fn compute(&mut self) -> napi::Result<Vec<u8>> {
    des_core::read_payload(
      &self.source,
      &self.uid,
      self.stored.take(),
      self.form,
      &self.bigfiles_prefix,
      self.keep.as_ref(),
    )
    .napi()
  }
  fn resolve(&mut self, _env: Env, data: Vec<u8>) -> napi::Result<Buffer> {
    Ok(data.into())
  }
}

const DEFAULT_PREFIX: &str = des_core::DEFAULT_BIGFILES_PREFIX;

fn keep(
  cache: Option<&PayloadCache>,
  shard: Option<i64>,
) -> napi::Result<Option<des_core::KeepIn>> {
  match (cache, shard) {
    (Some(cache), Some(shard)) => Ok(Some(des_core::KeepIn {
      cache: cache.shared(),
      shard: crate::payload_cache::payload_key(shard, 0)?.shard,
    })),
    _ => Ok(None),
  }
}

impl ShardReader {
  pub(crate) fn with_index<T>(&self, f: impl FnOnce(&ShardIndex) -> T) -> T {
    f(self.source.index())
  }

  /// A task that reads and decodes `uid` from the local file, keeping nothing;
  /// the other payload calls change a field or two of it.
  fn task(&self, uid: String, bigfiles_prefix: Option<String>) -> PayloadTask {
    PayloadTask {
      source: self.source.clone(),
      uid,
      stored: None,
      bigfiles_prefix: bigfiles_prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
      form: PayloadForm::Decoded,
      keep: None,
    }
  }
}

#[napi]
impl ShardReader {
  /// Opens a local shard file (header, footer and index validated) off the event loop.
  #[napi(ts_return_type = "Promise<ShardReader>")]
  pub fn open(path: String) -> AsyncTask<OpenTask> {
    AsyncTask::new(OpenTask {
      path: Some(path),
      tail: None,
    })
  }

  /// Same as `open`, on the calling thread.
  #[napi]
  pub fn open_sync(path: String) -> napi::Result<ShardReader> {
    OpenTask {
      path: Some(path),
      tail: None,
    }
    .compute()
    .map(|source| ShardReader { source })
  }

  /// Parses the index from the last bytes of an object of `objectSize` bytes.
  /// Rejects with `DES_NEED_MORE` when the tail does not reach the index start
  /// (see `footerFromTail`).
  #[napi(ts_return_type = "Promise<ShardReader>")]
  pub fn from_tail(tail: Buffer, object_size: i64) -> napi::Result<AsyncTask<OpenTask>> {
    Ok(AsyncTask::new(OpenTask {
      path: None,
      tail: Some((tail.to_vec(), to_u64(object_size)?)),
    }))
  }

  /// Same as `fromTail`, on the calling thread.
  #[napi]
  pub fn from_tail_sync(tail: Buffer, object_size: i64) -> napi::Result<ShardReader> {
    OpenTask {
      path: None,
      tail: Some((tail.to_vec(), to_u64(object_size)?)),
    }
    .compute()
    .map(|source| ShardReader { source })
  }

  /// Layout version of the shard (1 or 2).
  #[napi(getter)]
  pub fn version(&self) -> u32 {
    u32::from(self.source.index().version())
  }

  /// Number of entries.
  #[napi(getter)]
  pub fn entry_count(&self) -> u32 {
    self.source.index().len() as u32
  }

  /// Size of the index section in bytes (what a cache should weigh it at).
  #[napi(getter)]
  pub fn index_size(&self) -> i64 {
    self.source.index().index_size() as i64
  }

  /// Offset where the data section ends (= where the index starts).
  #[napi(getter)]
  pub fn data_end(&self) -> i64 {
    self.source.index().data_end() as i64
  }

  /// True when the shard carries a checksum block (entries and index are
  /// then checked on every read).
  #[napi(getter)]
  pub fn checksummed(&self) -> bool {
    self.source.index().has_checksums()
  }

  /// Size of the shard file, for a local shard.
  #[napi(getter)]
  pub fn file_size(&self) -> Option<i64> {
    match &self.source {
      Source::File(f) => Some(f.size() as i64),
      Source::Tail(_) => None,
    }
  }

  /// True if the uid is in the shard.
  #[napi]
  pub fn has(&self, uid: String) -> bool {
    self.source.index().contains(&uid)
  }

  /// The entry of a uid, or null.
  #[napi]
  pub fn entry(&self, uid: String) -> Option<EntryInfo> {
    self.source.index().get(&uid).map(|e| entry_info(&e))
  }

  /// `entry` as a row, for the retriever's hot path (an array crosses into
  /// JS much more cheaply than an object with named properties):
  /// `[size, storedSize, offset, codec, meta, sha256, crc32c]`, where codec
  /// is the codec's byte (its name is `codecNames()[codec]`) or -1 for a
  /// BigFile (then offset is -1 and sha256 is set), and crc32c the stored
  /// bytes' checksum (null for a BigFile or a shard without checksums).
  #[napi(
    ts_return_type = "[number, number, number, number, string, string | null, number | null] | null"
  )]
  #[allow(clippy::type_complexity)]
  pub fn entry_row(
    &self,
    uid: String,
  ) -> Option<(i64, i64, i64, i32, String, Option<String>, Option<u32>)> {
    let e = self.source.index().get(&uid)?;
    let meta = e.meta_json().to_string();
    Some(match &e.body {
      Body::Inline {
        codec, offset, crc, ..
      } => (
        e.size() as i64,
        e.stored_size() as i64,
        *offset as i64,
        i32::from(codec.id()),
        meta,
        None,
        *crc,
      ),
      Body::BigFile { sha256, .. } => {
        (e.size() as i64, 0, -1, -1, meta, Some(sha256.clone()), None)
      }
    })
  }

  /// Entries `start .. start + count` in index order (for listing in pages).
  #[napi]
  pub fn entries(&self, start: Option<u32>, count: Option<u32>) -> Vec<EntryInfo> {
    let index = self.source.index();
    let start = (start.unwrap_or(0) as usize).min(index.len());
    let end = start
      .saturating_add(count.map_or(index.len(), |c| c as usize))
      .min(index.len());
    (start..end).map(|i| entry_info(&index.entry(i))).collect()
  }

  /// Reads and decodes a uid's payload from a local shard (BigFiles from
  /// `<shard dir>/<bigfilesPrefix>/`, checked by size and sha256).
  /// With `cache` and `cacheShard` (the caller's number for this shard
  /// version), an inline payload is also kept in `cache`.
  #[napi(ts_return_type = "Promise<Buffer>")]
  pub fn read(
    &self,
    uid: String,
    bigfiles_prefix: Option<String>,
    cache: Option<&PayloadCache>,
    cache_shard: Option<i64>,
  ) -> napi::Result<AsyncTask<PayloadTask>> {
    Ok(AsyncTask::new(PayloadTask {
      keep: keep(cache, cache_shard)?,
      ..self.task(uid, bigfiles_prefix)
    }))
  }

  /// Same as `read`, on the calling thread.
  #[napi]
  pub fn read_sync(&self, uid: String, bigfiles_prefix: Option<String>) -> napi::Result<Buffer> {
    self.task(uid, bigfiles_prefix).compute().map(Buffer::from)
  }

  /// Reads an inline entry's stored bytes from a local shard, not decoded
  /// (to send a zstd payload as-is to a client that accepts zstd).
  #[napi(ts_return_type = "Promise<Buffer>")]
  pub fn read_stored(&self, uid: String) -> AsyncTask<PayloadTask> {
    AsyncTask::new(PayloadTask {
      form: PayloadForm::Stored,
      ..self.task(uid, None)
    })
  }

  /// Decodes a uid's stored bytes (fetched by the caller, e.g. a range GET)
  /// off the event loop; the decoded size must match the index.
  /// With `cache` and `cacheShard`, the decoded payload is also kept in `cache`.
  #[napi(ts_return_type = "Promise<Buffer>")]
  pub fn decode(
    &self,
    uid: String,
    stored: Buffer,
    cache: Option<&PayloadCache>,
    cache_shard: Option<i64>,
  ) -> napi::Result<AsyncTask<PayloadTask>> {
    Ok(AsyncTask::new(PayloadTask {
      stored: Some(stored.to_vec()),
      keep: keep(cache, cache_shard)?,
      ..self.task(uid, None)
    }))
  }

  /// Checks stored bytes fetched by the caller against the entry's checksum
  /// (a no-op for shards without checksums), on the calling thread: CRC32C
  /// runs at several GB/s, so this is for bytes about to be sent as stored.
  #[napi]
  pub fn check_stored(&self, uid: String, stored: Buffer) -> napi::Result<()> {
    des_core::check_fetched(self.source.index(), &uid, &stored).napi()
  }

  /// Same as `decode`, on the calling thread (fine for small payloads).
  #[napi]
  pub fn decode_sync(&self, uid: String, stored: Buffer) -> napi::Result<Buffer> {
    PayloadTask {
      stored: Some(stored.to_vec()),
      ..self.task(uid, None)
    }
    .compute()
    .map(Buffer::from)
  }

  /// Verifies the whole local shard file in one pass: header, every entry's
  /// checksum and decode, dead ranges, overlaps, and the BigFiles beside it.
  /// Damage is reported in the result, not thrown.
  #[napi(ts_return_type = "Promise<VerifyReport>")]
  pub fn verify(
    &self,
    bigfiles_prefix: Option<String>,
  ) -> napi::Result<AsyncTask<crate::verify::VerifyTask>> {
    match &self.source {
      Source::File(file) => Ok(AsyncTask::new(crate::verify::VerifyTask::new(
        file.path().display().to_string(),
        bigfiles_prefix,
        true,
      ))),
      Source::Tail(_) => Err(bad_arg("verify needs a local shard file")),
    }
  }
}

/// Checks a BigFile's bytes against the entry of `uid` (size and sha256).
#[napi]
pub fn verify_bigfile(reader: &ShardReader, uid: String, data: Buffer) -> napi::Result<()> {
  let entry = reader
    .source
    .index()
    .get(&uid)
    .ok_or_else(|| crate::error::to_napi(des_core::DesError::NotFound(uid.clone())))?;
  des_core::verify_bigfile(&entry, &data).napi()
}

/// Codec names by their byte, as `entryRow` gives codecs.
#[napi]
pub fn codec_names() -> Vec<&'static str> {
  des_core::Codec::ALL.iter().map(|c| c.name()).collect()
}
