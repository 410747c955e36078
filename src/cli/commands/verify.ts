// `des verify SHARD`: every byte of one local shard file. `des verify --store`:
// the whole configured store (local directory, S3 bucket/prefix or zones),
// every object read once, a bounded number at a time (src/verify/).

import type { Argv } from 'yargs'
import { verifyShardFile } from '../../native'
import { DesError } from '../../errors'
import { writeOut } from '../output'
import { nBitsFlag, wholeNumberFlag } from '../flags'

/** Object lines with nothing to say are left out of the text report. */
function textLines(r: import('../../verify').ObjectReport): string {
  let out = ''
  for (const f of r.findings) {
    if (f.severity === 'note') continue
    const where = f.uid !== undefined && f.uid !== null ? ` uid ${JSON.stringify(f.uid)}` : ''
    const region = f.region ? ` (${f.region})` : ''
    out += `${r.zone !== undefined ? `[${r.zone}] ` : ''}${r.key}: ${f.severity === 'warning' ? 'warning: ' : ''}${f.kind}${region}${where}: ${f.message}\n`
  }
  return out
}

export function register(y: Argv): Argv {
  return y.command(
    'verify [shard]',
    'Check every byte of a shard file, or with --store every object of the configured store (exit 4 on any problem)',
    (a) =>
      a
        .positional('shard', { type: 'string', describe: 'a local shard file (or give --store)' })
        .option('store', { type: 'boolean', default: false, describe: 'check the whole store that DES_BACKEND etc. (or the flags below) name' })
        .option('json', { type: 'boolean', default: false, describe: 'JSON: the report (one shard), or one line per object and a {"summary"} line (--store)' })
        .option('bigfiles-prefix', { type: 'string', describe: 'BigFile folder name (default DES_BIGFILES_PREFIX, else _bigFiles)' })
        .option('parallel', { coerce: wholeNumberFlag('parallel', 1, 1024), describe: '--store: objects checked at a time (default: the CPUs this process may use, a cgroup quota included)' })
        .option('backend', { choices: ['local', 's3', 'multi_s3'] as const, describe: '--store: overrides DES_BACKEND' })
        .option('base-dir', { type: 'string', describe: '--store: the local store (overrides DES_BASE_DIR; implies --backend local)' })
        .option('layout', { type: 'string', describe: '--store: nested or flat (overrides DES_LAYOUT)' })
        .option('n-bits', { coerce: nBitsFlag, describe: '--store: routing bits, overrides DES_N_BITS (with multi_s3 the zones file\'s n_bits, and another is refused)' })
        .option('progress', { type: 'boolean', describe: '--store: progress bar on stderr (default: when stderr is a terminal and not --json)' })
        .example('$0 verify /data/des/20240302/5C.des', 'every entry of one shard')
        .example('$0 verify --store --base-dir /data/des --json > scrub.jsonl', 'the whole store, a JSON line per object'),
    async (argv) => {
      if (argv.store) {
        if (argv.shard !== undefined) throw new DesError('DES_BAD_ARG', 'give a SHARD file or --store, not both')
        return verifyStore(argv)
      }
      const storeFlags = ['parallel', 'backend', 'base-dir', 'layout', 'n-bits'].filter((f) => argv[f] !== undefined)
      if (argv.shard === undefined) throw new DesError('DES_BAD_ARG', 'name a SHARD file to verify, or give --store to verify the whole store')
      if (storeFlags.length > 0) throw new DesError('DES_BAD_ARG', `--${storeFlags[0]} applies to --store only`)
      // Not ShardReader.open: a damaged index or footer is a finding to
      // report, not a reason to stop before looking.
      const { loadBigfilesPrefix } = await import('../../config/env')
      const report = await verifyShardFile(argv.shard, argv['bigfiles-prefix'] ?? loadBigfilesPrefix())
      if (argv.json) await writeOut(JSON.stringify(report) + '\n')
      else {
        await writeOut(`${argv.shard}: ${verifiedLine(report)}\n`)
      }
      if (report.problems.length > 0) {
        for (const p of report.problems) {
          const where = p.uid === null || p.uid === undefined ? p.region : `${p.region} ${JSON.stringify(p.uid)}`
          process.stderr.write(`des: ${where}: ${p.error}\n`)
        }
        throw new DesError('DES_CORRUPT', `${report.problems.length} problem(s) found in ${argv.shard}`)
      }
    },
  )
}

/**
 * What one shard's check found, for people. A shard whose footer or index
 * cannot be read has no entries to count: said so, not "0/0 entries ok".
 */
function verifiedLine(report: { ok: number; entries: number; bytes: number; checksummed: boolean; problems: Array<{ region: string }> }): string {
  if (report.problems.some((p) => p.region === 'footer' || p.region === 'index')) return 'its index cannot be read: no entry was checked'
  const unchecked = report.checksummed ? '' : ' (no checksums in this shard: codec-none payloads cannot be checked)'
  return `${report.ok}/${report.entries} entries ok, ${report.bytes} bytes decoded${unchecked}`
}

interface StoreArgs {
  json: boolean
  parallel?: number
  backend?: string
  'base-dir'?: string
  layout?: string
  'n-bits'?: number
  'bigfiles-prefix'?: string
  progress?: boolean
}

async function verifyStore(argv: StoreArgs): Promise<void> {
  // Loaded here: `des verify SHARD` should not pay for the AWS SDK.
  const { loadStoreConfig } = await import('../../config/store-flags')
  const { storeRoots, scrub, statusOf, outcomeError } = await import('../../verify')
  const { formatBytes } = await import('../../progress')
  const { verifyProgressBar } = await import('../../verify/progress')
  const { availableCpus } = await import('../../config/cpus')
  const parallel = argv.parallel ?? availableCpus()
  const config = loadStoreConfig({ backend: argv.backend, baseDir: argv['base-dir'], layout: argv.layout, nBits: argv['n-bits'], bigfilesPrefix: argv['bigfiles-prefix'] })
  const { roots, nBits } = await storeRoots(config, { maxAttempts: 3, connectionTimeoutMs: 5_000 })
  const bar = argv.json || argv.progress === false ? null : verifyProgressBar(process.stderr, argv.progress === true)
  const summary = await scrub({
    roots,
    layout: config.layout,
    // Several layouts (DES_LAYOUT=nested,flat while a store is converted): readers try each.
    readLayouts: config.readLayouts,
    nBits,
    bigfilesPrefix: config.bigfilesPrefix,
    tailBytes: config.tailBytes,
    parallel,
    onProgress: bar?.onProgress,
    onObject: async (r) => {
      if (argv.json) {
        const { key, zone, type, findings, ...rest } = r
        return writeOut(JSON.stringify({ key, ...(zone !== undefined ? { zone } : {}), type, status: statusOf(r), ...rest, findings }) + '\n')
      }
      const text = textLines(r)
      if (text) {
        bar?.clearLine()
        await writeOut(text)
      }
    },
  }).finally(() => bar?.stop())
  if (argv.json) await writeOut(JSON.stringify({ summary: { ...summary, layout: config.layout, n_bits: nBits, parallel } }) + '\n')
  else {
    const s = summary
    const unchecked = s.unchecksummed_shards > 0 ? `; ${s.unchecksummed_shards} shards carry no checksums (a flipped byte in a stored-raw entry cannot be seen in them)` : ''
    await writeOut(
      `verified ${s.objects} objects (${s.shards} shards, ${s.entries} entries; ${s.bigfiles} BigFiles; ${s.other} other), ` +
        `${formatBytes(s.bytes)} in ${s.seconds.toFixed(2)} s (${s.mib_per_s} MiB/s, ${s.objects_per_s} objects/s): ` +
        `${s.problems} problems, ${s.warnings} warnings, ${s.notes} notes${s.notes > 0 ? ' (listed by --json)' : ''}${unchecked}\n`,
    )
  }
  const failed = outcomeError(summary)
  if (failed) throw failed
}
