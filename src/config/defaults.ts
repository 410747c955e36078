// Every default that more than one command uses, defined once. The config
// loaders fill them in; store, pack, migrate and convert fall back to these
// when a caller (a test, the library API) leaves a setting out.

/** Region of an S3 client when neither the setting nor AWS_REGION / AWS_DEFAULT_REGION names one. */
export const DEFAULT_S3_REGION = 'us-east-1'

/** Folder of BigFiles beside the shards (`DES_BIGFILES_PREFIX`, `packer.bigfiles_prefix`). */
export const DEFAULT_BIGFILES_PREFIX = '_bigFiles'

/** Size of the suffix read that fetches footer and index together (`DES_TAIL_BYTES`). */
export const DEFAULT_TAIL_BYTES = 64 * 1024
/** A local store's new shards are written past the page cache (`DES_WRITE_PAST_CACHE`). */
export const DEFAULT_WRITE_PAST_CACHE = true

/**
 * A writer's temp file in the store (`.des-tmp-*.part`) unchanged this long,
 * and held by no writer, was left by one that died: des pack removes it
 * from the folders it writes to, and des verify --store warns of it.
 */
export const STALE_TEMP_MS = 60 * 60 * 1000

/** Bytes of parsed indexes kept in memory (`DES_INDEX_CACHE_BYTES`). */
export const DEFAULT_INDEX_CACHE_BYTES = 256 * 1024 * 1024

/** Smallest payload stored as a BigFile (`DES_BIG_FILE_THRESHOLD_BYTES`, `packer.big_file_threshold`). */
export const DEFAULT_BIG_FILE_THRESHOLD = 10 * 1024 * 1024

/** Largest inline payload a read holds in memory, unless the BigFile threshold is larger (`DES_MAX_PAYLOAD_BYTES`). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

/** Routing bits (`DES_N_BITS`, `packer.n_bits`, `--n-bits`) and their range. */
export const DEFAULT_N_BITS = 8
export const MIN_N_BITS = 4
export const MAX_N_BITS = 16

/** The zstd levels a shard may be written with (`--level`, `packer.level`): zstd's fast levels down to -7, up to 22. */
export const MIN_ZSTD_LEVEL = -7
export const MAX_ZSTD_LEVEL = 22

/** How long a cached shard is trusted before it is re-checked (`DES_SHARD_RECHECK_MS` unset): a stat on local disk, a suffix GET on S3. */
export const DEFAULT_SHARD_RECHECK_MS = { local: 2_000, s3: 30_000 } as const

/** Shard size at which the migrator and the packer start a new part (`packer.max_shard_size`, `des pack --max-shard-size`): the original's default for both. */
export const DEFAULT_MAX_SHARD_SIZE = 1_000_000_000

/** Inputs `des pack` plans in memory before the plan spills to temp files (`DES_PACK_MEMORY_ENTRIES`). */
export const DEFAULT_MEMORY_ENTRIES = 25_000
/**
 * Bytes of manifest text `des pack` plans in memory before the plan spills,
 * whatever the count of entries: a meta may be megabytes, and 25,000 of them
 * would not fit in the heap.
 */
export const DEFAULT_MEMORY_BYTES = 128 * 1024 * 1024

/** How `des pack` reads s3:// sources: retries after the first attempt, first backoff (doubling, with jitter). */
export const DEFAULT_SOURCE_RETRIES = 3
export const DEFAULT_SOURCE_RETRY_DELAY_MS = 200

/**
 * Keys packed into S3 at once. Each key's part costs round trips (its PUT,
 * the read-back; a tail GET when it exists), so against a region 20 ms away
 * three at a time left the run waiting on the network: 12,000 files over 768
 * keys took 18.5 s through bench/latency-proxy.js, 6.4 s with 16. The upload
 * bodies they hold in memory are bounded for the whole process, not per key
 * (storage/s3-upload.ts, UPLOAD_BODY_BYTES).
 */
export const S3_KEYS_AT_ONCE = 16
