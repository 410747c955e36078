// `des convert`: a store written in the reference's flat layout moved into the
// nested layout (src/convert/), on local disk or S3. A summary at the end, or
// --json; a progress bar on a terminal.

import type { Argv } from 'yargs'
import { loadStoreConfig } from '../../config/store-flags'
import { loadConvertEnv } from '../../config/convert-env'
import { DesError, exitCode } from '../../errors'
import type { ConvertReport } from '../../convert'
import { oneLine, writeOut } from '../output'
import { nBitsFlag, zstdLevelFlag } from '../flags'
import { parseSize } from './pack'

/** The --json summary (snake_case, as the other commands). */
export function convertJson(r: ConvertReport, store: string): Record<string, unknown> {
  return {
    store,
    keys: r.keys,
    flat_shards: r.flatShards,
    files: r.files,
    already_nested: r.alreadyNested,
    added: r.added,
    verified: r.verified,
    deleted_shards: r.deletedShards,
    deleted_bigfiles: r.deletedBigfiles,
    temps_removed: r.tempsRemoved,
    problems: r.problems,
    kept: r.kept,
    failed: r.failed,
    seconds: Number(r.seconds.toFixed(3)),
  }
}

export function register(y: Argv): Argv {
  return y.command(
    'convert',
    'Move a store from the flat layout of the original DES (<date>_<HEX>_<NNNN>.des) to the nested one (<date>/<HEX>.des)',
    (a) =>
      a
        .option('base-dir', { type: 'string', describe: 'local store (default DES_BASE_DIR with DES_BACKEND=local)' })
        .option('s3-bucket', { type: 'string', describe: 'S3 store (default DES_S3_BUCKET with DES_BACKEND=s3; endpoint/region from DES_S3_ENDPOINT_URL/DES_S3_REGION)' })
        .option('s3-prefix', { type: 'string', describe: 'key prefix in the bucket (default DES_S3_PREFIX)' })
        .option('n-bits', { coerce: nBitsFlag, describe: 'routing bits the store was written with, 4..16 (default DES_N_BITS or 8)' })
        .option('delete-source', { type: 'boolean', default: false, describe: 'remove each flat shard (and BigFile) once every file in it is read back from its new key' })
        .option('max-shard-size', { type: 'string', describe: 'continue a nested shard in <HEX>.1.des, .2.des… past this many bytes (e.g. 1G)' })
        .option('codec', { choices: ['zstd', 'lz4', 'none'] as const, describe: 'codec of the nested shards (default zstd)' })
        .option('level', { coerce: zstdLevelFlag, describe: 'zstd level, -7..22 (default 3)' })
        .option('progress', { type: 'boolean', describe: 'progress bar (default: when stderr is a terminal)' })
        .option('json', { type: 'boolean', default: false, describe: 'print a JSON summary' })
        .example('$0 convert --base-dir /data/des --n-bits 8', 'copy every file into the nested layout, verify it, keep the flat shards')
        .example('DES_BACKEND=s3 DES_S3_BUCKET=archive $0 convert --delete-source --json', 'convert an S3 store and remove what was moved'),
    async (argv) => {
      const { convertStore } = await import('../../convert')
      const { localConvertStore, s3ConvertStore } = await import('../../convert/store')
      const { createS3Client } = await import('../../storage/s3-client')
      const { s3TargetSettings } = await import('../../config/pack')
      if (argv['base-dir'] !== undefined && argv['s3-bucket'] !== undefined) throw new DesError('DES_BAD_ARG', 'give --base-dir or --s3-bucket, not both')
      // --base-dir means the local backend, whatever DES_BACKEND says (as for serve and verify --store).
      const config = loadStoreConfig({ baseDir: argv['base-dir'] })
      const env = loadConvertEnv()
      if (argv['s3-prefix'] !== undefined && argv['s3-bucket'] === undefined && config.backend !== 's3') throw new DesError('DES_BAD_ARG', '--s3-prefix needs --s3-bucket')
      const nBits = argv['n-bits'] ?? config.nBits
      const settings = {
        writer: {
          ...(argv.codec ? { codec: argv.codec } : {}),
          ...(argv.level !== undefined ? { level: argv.level } : {}),
          bigFileThreshold: config.bigFileThreshold,
        },
        bigfilesPrefix: config.bigfilesPrefix,
        tailBytes: config.tailBytes,
        writePastCache: config.writePastCache,
      }
      let store
      let where: string
      const bucket = argv['s3-bucket'] ?? (argv['base-dir'] === undefined && config.backend === 's3' ? config.s3?.bucket : undefined)
      if (bucket !== undefined) {
        const s3 = s3TargetSettings(bucket, argv['s3-prefix'])
        store = s3ConvertStore(createS3Client(s3), bucket, s3.prefix, settings)
        where = `s3://${bucket}/${s3.prefix}`
      } else {
        if (argv['base-dir'] === undefined && config.backend === 'multi_s3') {
          throw new DesError('DES_BAD_ARG', 'a multi_s3 store is converted zone by zone: run des convert with --s3-bucket (and --s3-prefix) of each zone')
        }
        const dir = argv['base-dir'] ?? config.baseDir
        store = localConvertStore(dir, settings)
        where = dir
      }
      const bar = argv.progress === false || argv.json ? null : convertBar(process.stderr)
      let report: ConvertReport
      try {
        report = await convertStore(store, {
          nBits,
          bigfilesPrefix: config.bigfilesPrefix,
          tailBytes: config.tailBytes,
          deleteSource: argv['delete-source'],
          maxShardSize: argv['max-shard-size'] !== undefined ? parseSize(argv['max-shard-size'], '--max-shard-size') : undefined,
          onProgress: bar?.onProgress,
          fault: env.fault,
        })
      } finally {
        bar?.stop()
      }
      if (argv.json) await writeOut(JSON.stringify(convertJson(report, where)) + '\n')
      else {
        await writeOut(
          `converted ${where}: ${report.keys} keys, ${report.flatShards} flat shards, ${report.files} files ` +
            `(${report.added} added, ${report.alreadyNested} already nested, ${report.verified} verified); ` +
            `removed ${report.deletedShards} flat shards and ${report.deletedBigfiles} BigFiles in ${report.seconds.toFixed(2)} s\n`,
        )
        for (const f of report.failed) process.stderr.write(`des convert: ${oneLine(`key ${f.key} not converted: ${f.reason}`)}\n`)
        for (const p of report.problems) process.stderr.write(`des convert: ${oneLine(`${p.key}: ${p.reason}`)}\n`)
        for (const k of report.kept) process.stderr.write(`des convert: ${oneLine(`kept ${k.key}: ${k.reason}`)}\n`)
      }
      // A key not converted, or a file that did not read back the same, fails the run (what did is kept as it is).
      if (report.failed.length > 0 || report.problems.length > 0) process.exitCode = exitCode(new DesError('DES_CORRUPT', 'not converted'))
    },
  )
}

/** A progress bar on a terminal (keys, bytes of flat shards, files, ETA), else null. */
function convertBar(stream: NodeJS.WriteStream): { onProgress(p: import('../../convert').ConvertProgress): void; stop(): void } | null {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { byteBar } = require('../../progress') as typeof import('../../progress')
  const bar = byteBar(stream, 'converting [{bar}] {percentage}% | {keys}/{totalKeys} keys | {files} files | ETA {eta_formatted}')
  if (!bar) return null
  return {
    onProgress: (p) => bar.update(p.bytes, p.totalBytes, { keys: p.keys, totalKeys: p.totalKeys, files: p.files }),
    stop: () => bar.stop(),
  }
}
