// `des pack` (also `des-pack`): a manifest of small files into shards, on local
// disk (--output-dir), S3 (--s3-bucket) or, with neither, the store the
// environment names for S3: DES_BACKEND=s3 packs into DES_S3_BUCKET under
// DES_S3_PREFIX (the bucket `des serve` reads), DES_BACKEND=multi_s3 into the
// zones of DES_ZONES_CONFIG. A summary at the end, or --json.

import { constants } from 'node:os'
import type { Argv } from 'yargs'
import { explicitNBits, loadConfig } from '../../config/env'
import { DesError } from '../../errors'
import type { PackOptions, PackResult, PackTarget } from '../../pack'
import type { ByteSource } from '../../storage/source'
import { removeTempDirsSync } from '../../temp-dir'
import { writeOut } from '../output'
import { nBitsFlag, wholeNumberFlag, zstdLevelFlag } from '../flags'
import { MAX_PACK_WORKERS } from '../../config/pack'
import { DEFAULT_MAX_SHARD_SIZE, DEFAULT_SOURCE_RETRIES, DEFAULT_SOURCE_RETRY_DELAY_MS } from '../../config/defaults'

/** Compression presets (SPEC §3). */
export const PROFILES: Record<string, { codec: 'zstd' | 'lz4'; level?: number }> = {
  aggressive: { codec: 'zstd', level: 9 },
  balanced: { codec: 'zstd', level: 5 },
  speed: { codec: 'lz4' },
}

/** "1048576", "64M", "64MiB", "2G" → bytes. */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$/i.exec(text)
  if (!m) throw new DesError('DES_BAD_ARG', `${what}: expected a number of bytes (e.g. 268435456 or 256M), got ${JSON.stringify(text)}`)
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't']
  const n = Number(m[1]) * mult
  if (!Number.isSafeInteger(n) || n <= 0) throw new DesError('DES_BAD_ARG', `${what}: must be a positive number of bytes, got ${JSON.stringify(text)}`)
  return n
}

/** The --json summary. */
export function summaryJson(r: PackResult, target: string, worker?: { index: number; count: number }): Record<string, unknown> {
  return {
    target,
    ...(worker ? { worker: `${worker.index}/${worker.count}` } : {}),
    ...(r.dryRun ? { dry_run: true } : {}),
    shards: r.shards.length,
    files: r.files,
    skipped: r.skipped,
    bytes_in: r.bytesIn,
    bytes_stored: r.bytesStored,
    ratio: r.bytesStored > 0 ? Number((r.bytesIn / r.bytesStored).toFixed(3)) : null,
    seconds: Number(r.seconds.toFixed(3)),
    mib_per_s: r.seconds > 0 ? Number((r.bytesIn / 1048576 / r.seconds).toFixed(1)) : null,
    ...(r.tempsRemoved ? { temps_removed: r.tempsRemoved } : {}),
    keys: r.shards.map((s) => ({ key: s.key, files: s.files, bytes_in: s.bytesIn, bytes_stored: s.bytesStored })),
  }
}

/** The store `target` writes, as sources to read (what is there already). */
async function storeSourcesOf(target: PackTarget): Promise<ByteSource[]> {
  if (target.kind === 'local') {
    const { LocalSource } = await import('../../storage/local')
    return [new LocalSource(target.dir)]
  }
  const { S3Source } = await import('../../storage/s3')
  if (target.kind === 's3') return [new S3Source(target.client, target)]
  return target.zones.map((z) => new S3Source(z.client, z, 'multi_s3'))
}

export function register(y: Argv): Argv {
  return y.command(
    'pack',
    'Pack the files of a manifest into shards (local dir, S3, or the zones of DES_ZONES_CONFIG)',
    (a) =>
      a
        .option('input-json', { type: 'string', demandOption: true, describe: 'manifest: JSON array (or lines) of {uid, created_at, size_bytes, source_path, meta?}' })
        .option('output-dir', { type: 'string', describe: 'local store: writes DIR/<YYYYMMDD>/<HEX>.des' })
        .option('s3-bucket', { type: 'string', describe: 'S3 store (default, without --output-dir: DES_S3_BUCKET with DES_BACKEND=s3; endpoint/region from DES_S3_ENDPOINT_URL/DES_S3_REGION)' })
        .option('s3-prefix', { type: 'string', describe: 'key prefix in the bucket (default DES_S3_PREFIX)' })
        .option('n-bits', { coerce: nBitsFlag, describe: 'routing bits, 4..16 (default DES_N_BITS or 8; into zones, the zones file\'s n_bits, and another is refused)' })
        .option('layout', { choices: ['nested', 'flat'] as const, describe: "nested <UTC date>/<HEX>.des, or flat: the original packer's <date>_<HEX>_<NNNN>.des, a new _NNNN per run (default DES_LAYOUT's first, else nested)" })
        .option('max-shard-size', { type: 'string', describe: 'continue a shard in <HEX>.1.des, .2.des… past this many bytes (e.g. 256M; default 1000000000, as the original des-pack)' })
        .option('codec', { choices: ['zstd', 'lz4', 'none'] as const, describe: 'payload codec (default zstd)' })
        .option('level', { coerce: zstdLevelFlag, describe: 'zstd level, -7..22 (default 3)' })
        .option('profile', { choices: ['aggressive', 'balanced', 'speed'] as const, describe: 'aggressive = zstd 9, balanced = zstd 5, speed = lz4' })
        .option('skip-extensions', { type: 'string', describe: 'comma list of extensions stored raw, matched against the uid as the original does (default .jpg,.jpeg,.png,.gif,.gz,.zip,.bz2,.xz)' })
        .option('replace', { type: 'boolean', default: false, describe: 'a uid already stored is replaced instead of refused' })
        .option('skip-existing', { type: 'boolean', default: false, describe: 'a uid already stored with the same size is skipped (idempotent reruns)' })
        // nargs 1: the next word is the value even when it starts with a dash and a digit, so
        // `--worker -1/3` is refused as a worker (packWorker) rather than read as flags -1, -/, -3.
        .option('worker', { type: 'string', nargs: 1, describe: 'I/N, 0 <= I < N: pack only the keys of worker I of N (shard index mod N = I); default from JOB_COMPLETION_INDEX in an Indexed Job' })
        .option('workers', { coerce: wholeNumberFlag('workers', 1, MAX_PACK_WORKERS), describe: 'worker count N for --worker I or JOB_COMPLETION_INDEX (default DES_PACK_WORKERS)' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'check the manifest, sources and store as a run would, write nothing' })
        .option('progress', { type: 'boolean', describe: 'progress bar (default: when stderr is a terminal)' })
        .option('json', { type: 'boolean', default: false, describe: 'print a JSON summary' })
        .example('$0 pack --input-json manifest.json --output-dir /data/des', 'pack into a local store')
        .example('$0 pack --input-json manifest.jsonl --s3-bucket my-bucket --s3-prefix des/ --skip-existing --json', 'pack into S3; a rerun skips what is stored')
        .example('DES_BACKEND=s3 DES_S3_BUCKET=my-bucket DES_S3_PREFIX=des/ $0 pack --input-json manifest.jsonl', 'pack into the bucket des serve reads with the same environment')
        .example('DES_BACKEND=multi_s3 DES_ZONES_CONFIG=zones.yaml $0 pack --input-json manifest.jsonl', 'each shard to the zone (bucket, prefix) that serves its shard index'),
    async (argv) => {
      // Loaded here, not at start-up: `des locate` and `des cat` should not pay for the packer and the AWS SDK.
      const { formatBytes, manifestEntriesHint, progressBar, readManifestBatches, runPack, zonesPackTarget } = await import('../../pack')
      const { writeZonesFromEnv } = await import('../../config/zones')
      // The S3 client brings the AWS SDK (~80 ms to load): only when S3 is used.
      type S3ClientModule = typeof import('../../storage/s3-client')
      const createS3Client: S3ClientModule['createS3Client'] = (...args) =>
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        (require('../../storage/s3-client') as S3ClientModule).createS3Client(...args)
      const { packMemoryEntries, packS3Target, packWorker, s3SourceSettings } = await import('../../config/pack')
      const config = loadConfig()
      const outputDir = argv['output-dir']
      // --s3-bucket, or neither flag and DES_BACKEND=s3 (or DES_S3_BUCKET alone): the bucket des serve
      // reads, so one setting (a ConfigMap's DES_S3_BUCKET) names the store of every process.
      const s3 = packS3Target({ outputDir, s3Bucket: argv['s3-bucket'], s3Prefix: argv['s3-prefix'] })
      const bucket = s3?.bucket
      // Neither flag, DES_BACKEND=multi_s3: each shard to the zone of its shard index (DES_ZONES_CONFIG),
      // routed with the zones file's n_bits; --n-bits or DES_N_BITS set to another is refused.
      const nBitsSet = argv['n-bits'] !== undefined ? { nBits: argv['n-bits'], from: '--n-bits' } : explicitNBits(config)
      const zoned = !outputDir && !bucket ? writeZonesFromEnv(nBitsSet) : undefined
      if (!zoned && !outputDir === !bucket) {
        throw new DesError(
          'DES_BAD_ARG',
          'give exactly one of --output-dir DIR or --s3-bucket BUCKET (or neither, with DES_BACKEND=s3 and DES_S3_BUCKET: that bucket; with DES_BACKEND=multi_s3 and DES_ZONES_CONFIG: the zones)',
        )
      }
      if (argv['s3-prefix'] !== undefined && !bucket) throw new DesError('DES_BAD_ARG', '--s3-prefix needs --s3-bucket (or DES_BACKEND=s3 and DES_S3_BUCKET)')

      const profile = argv.profile ? PROFILES[argv.profile] : undefined
      const opts: PackOptions = {
        nBits: zoned?.zones.nBits ?? argv['n-bits'] ?? config.nBits,
        layout: argv.layout ?? config.layout,
        codec: argv.codec ?? profile?.codec,
        level: argv.level ?? profile?.level,
        bigFileThreshold: config.bigFileThreshold,
        bigfilesPrefix: config.bigfilesPrefix,
        tailBytes: config.tailBytes,
        writePastCache: config.writePastCache,
        replace: argv.replace,
        skipExisting: argv['skip-existing'],
        worker: packWorker({ worker: argv.worker, workers: argv.workers }),
        dryRun: argv['dry-run'],
        // Made only if the manifest names an s3:// source.
        sourceS3: () => ({ client: createS3Client(s3SourceSettings(), { maxAttempts: DEFAULT_SOURCE_RETRIES + 1, retryDelayMs: DEFAULT_SOURCE_RETRY_DELAY_MS }) }),
      }
      const memoryEntries = packMemoryEntries()
      // Unset: the original des-pack's default (and packer.max_shard_size's), so its command lines split shards alike.
      opts.maxShardSize = argv['max-shard-size'] !== undefined ? parseSize(argv['max-shard-size'], '--max-shard-size') : DEFAULT_MAX_SHARD_SIZE
      if (argv['skip-extensions'] !== undefined) {
        opts.skipExtensions = argv['skip-extensions']
          .split(',')
          .map((e) => e.trim())
          .filter(Boolean)
      }

      let target: PackTarget
      let where: string
      if (zoned) {
        target = zonesPackTarget(zoned.zones, (s3) => createS3Client(s3))
        where = `the zones of ${zoned.file} (${zoned.zones.zones.map((z) => `${z.name}: s3://${z.s3.bucket}/${z.s3.prefix}`).join(', ')})`
      } else if (bucket && s3) {
        target = { kind: 's3', bucket, prefix: s3.prefix, client: createS3Client(s3) }
        where = `s3://${bucket}/${s3.prefix}`
      } else {
        target = { kind: 'local', dir: outputDir! }
        where = outputDir!
      }

      // The original's des-pack wrote the flat layout and has no --layout: nested shards beside its flat ones would go unfound.
      const { refuseUnchosenNestedBesideFlat } = await import('../../store/flat-probe')
      await refuseUnchosenNestedBesideFlat(await storeSourcesOf(target), opts.layout!, argv.layout !== undefined ? '--layout' : config.layoutFrom, '--layout (or DES_LAYOUT) to')

      const bar = argv.progress === false ? null : progressBar(process.stderr)
      if (bar) opts.onProgress = bar.onProgress
      let result: PackResult
      const stop = stopCleanly(target)
      try {
        const manifest = argv['input-json']
        result = await runPack(readManifestBatches(manifest), target, opts, { memoryEntries, expectedEntries: await manifestEntriesHint(manifest) })
      } finally {
        bar?.stop()
        // Stopped by a signal: the run's failures (its uploads refused) are not what it says; that exits.
        await stop.off()
      }

      for (const warning of result.warnings ?? []) process.stderr.write(`des pack: warning: ${warning}\n`)
      if (argv.json) {
        await writeOut(JSON.stringify(summaryJson(result, where, opts.worker)) + '\n')
        return
      }
      const of = opts.worker ? ` (worker ${opts.worker.index}/${opts.worker.count})` : ''
      if (result.dryRun) {
        const skipped = result.skipped ? `; ${result.skipped} already stored would be skipped` : ''
        await writeOut(`dry run${of}: manifest and sources check out; would pack ${result.files} files (${formatBytes(result.bytesIn)}) into ${result.shards.length} keys in ${where}${skipped}\n`)
        return
      }
      const rate = result.seconds > 0 ? `${formatBytes(result.bytesIn / result.seconds)}/s` : '-'
      const ratio = result.bytesStored > 0 ? (result.bytesIn / result.bytesStored).toFixed(2) : '-'
      const skipped = result.skipped ? `, ${result.skipped} already stored` : ''
      const tidied = result.tempsRemoved ? `; removed ${result.tempsRemoved} temp file${result.tempsRemoved === 1 ? '' : 's'} left by packers that died` : ''
      await writeOut(
        `packed ${result.files} files (${formatBytes(result.bytesIn)} → ${formatBytes(result.bytesStored)}, ratio ${ratio}) ` +
          `into ${result.shards.length} shards in ${where}${of} in ${result.seconds.toFixed(2)} s (${rate})${skipped}${tidied}\n`,
      )
    },
  )
}

/** Longest wait for S3 to take the aborts of a stopped run before it exits anyway. */
const ABORT_WAIT_MS = 10_000

/**
 * A run stopped by SIGTERM (an evicted pod, a deleted Job) or SIGINT (Ctrl-C)
 * aborts its multipart uploads and removes its temp folders before it exits
 * (128 + the signal's number, as a shell reports it): S3 would keep, and
 * bill, the parts of every upload under way, and TMPDIR the parts being
 * built. Objects already written stay; none is left half-written (an object
 * is whole or not there). A second signal exits at once; kill -9 cannot be
 * caught (docs/OPERATIONS.md, S3 request costs).
 */
function stopCleanly(target: PackTarget): { off: () => Promise<void> } {
  let stopping: Promise<void> | undefined
  const onSignal = (sig: 'SIGTERM' | 'SIGINT') => {
    const code = 128 + constants.signals[sig]
    if (stopping) process.exit(code)
    process.stderr.write(`des pack: ${sig}: stopping\n`)
    stopping = (async () => {
      const done: string[] = []
      if (target.kind !== 'local') {
        const { abortOpenUploads } = await import('../../storage/s3-upload')
        const wait = new Promise<number>((resolve) => setTimeout(resolve, ABORT_WAIT_MS, -1).unref())
        const aborted = await Promise.race([abortOpenUploads(), wait])
        done.push(aborted < 0 ? 'S3 did not answer the aborts of its uploads' : `aborts sent for ${aborted} multipart upload(s) under way`)
      }
      done.push(`${removeTempDirsSync()} temp folder(s) removed`)
      process.stderr.write(`des pack: stopped by ${sig}: ${done.join(', ')}; what was written stays (rerun with --skip-existing)\n`)
      process.exit(code)
    })()
  }
  const onTerm = () => onSignal('SIGTERM')
  const onInt = () => onSignal('SIGINT')
  process.on('SIGTERM', onTerm)
  process.on('SIGINT', onInt)
  return {
    /** Stops listening; when a signal came, waits for its exit instead of returning. */
    off: async () => {
      if (stopping) await stopping
      process.off('SIGTERM', onTerm)
      process.off('SIGINT', onInt)
    },
  }
}
