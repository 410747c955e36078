//! DES core: the shard format of Data Easy Store.
//!
//! A shard is `[header 8 B][data][index][footer 12 B]`; see `docs/FORMAT.md`.
//! This crate routes `(uid, created_at)` to a shard key, reads shards (v1 and
//! v2) from files or from the tail bytes of an object, and writes v2 shards.
//! It does no networking and makes no storage policy decisions.

mod append;
mod bigfile;
mod checksum;
mod codec;
mod cursor;
mod entry;
mod error;
mod format;
mod index;
mod lock;
mod lz4frame;
mod manifest;
mod meta;
mod pack;
mod payload;
mod payload_cache;
mod prefetch;
mod reader;
mod routing;
mod shard_out;
mod temps;
mod timestamp;
mod verify;
mod writer;

pub use bigfile::{
  sha256_hex, verify_bigfile, DEFAULT_BIGFILES_PREFIX, DEFAULT_BIG_FILE_THRESHOLD,
};
pub use checksum::{crc32c, crc32c_append, Checksums, Retired, CHECKSUM_MAGIC};
pub use codec::{
  check_ceiling, compress, decompress, payload_ceiling, set_payload_ceiling, uid_suffix,
  CompressionPolicy, DEFAULT_PAYLOAD_CEILING, DEFAULT_SKIP_EXTENSIONS, DEFAULT_ZSTD_LEVEL,
};
pub use entry::{Body, Codec, Entry};
pub use error::{DesError, Result};
pub use format::{
  footer_bytes, header_bytes, parse_footer, parse_header, Footer, FOOTER_SIZE, HEADER_SIZE,
  VERSION_1, VERSION_2,
};
pub use index::{encode_index, ShardIndex, MAX_STATED_SIZE};
pub use manifest::{Found, ManifestScanner, ScanError, Span, MAX_ENTRY_BYTES};
pub use meta::canonical_meta;
pub use pack::{
  pack_into, pack_parts, stat_sources, PackItem, PackProgress, PackSource, PartJob, PartOutcome,
  SourceStat, BATCH_BYTES,
};
pub use payload::{check_fetched, read_payload, KeepIn, PayloadForm, ShardSource};
pub use payload_cache::{PayloadCache, PayloadCacheStats, PayloadKey};
pub use prefetch::{Ahead, Prefetch, MAX_AHEAD_ITEM};
pub use reader::{
  check_stored, decode_payload, footer_from_tail, index_from_tail, index_start_is_foreign,
  ShardFile,
};
pub use routing::{
  check_n_bits, locate, shard_hex, shard_index, Location, DEFAULT_N_BITS, MAX_N_BITS, MIN_N_BITS,
};
pub use temps::{is_temp_name, remove_stale_temps};
pub use timestamp::{parse_iso8601, utc_date_dir};
pub use verify::{check_bigfile_file, verify_file, Problem, Region, StreamVerifier, VerifyReport};
pub use writer::{
  commit, prepare, Prepared, PreparedKind, ShardWriter, Staged, WriteSummary, WriterOptions,
};
