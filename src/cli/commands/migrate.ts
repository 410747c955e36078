// `des migrate` (alias des-migrate): move files listed in a PostgreSQL table into shards.

import type { Argv } from 'yargs'
import { explicitNBits } from '../../config/env'
import { loadMigrateEnv } from '../../config/migrate'
import { DesError } from '../../errors'
import type { CycleReport } from '../../migrate/cycle'
import { oneLine, writeOut } from '../output'
import { numberFlag, wholeNumberFlag } from '../flags'

/** The longest pause between cycles: setTimeout fires at once past 2^31-1 ms. */
const MAX_INTERVAL_SECONDS = 2_147_483

function ms(s: number): string {
  return `${(s * 1000).toFixed(0)}ms`
}

/** The one-line text summary of a cycle. */
export function summaryLine(r: CycleReport): string {
  const t = r.timings
  const verb = r.dryRun ? 'would migrate' : 'migrated'
  const parts = [
    `${r.dryRun ? 'dry run' : 'cycle'} ${r.status}:`,
    `selected ${r.selected},`,
    `${verb} ${r.migrated} (${r.bytes} bytes; ${r.alreadyStored} already stored),`,
    `bad ${r.bad.length},`,
    `shards ${r.shardKeys.length},`,
    `deleted ${r.deleted}`,
  ]
  if (r.pending !== undefined) parts[parts.length - 1] += `, pending ${r.pending}`
  const rate = r.timings.total > 0 ? Math.round(r.migrated / r.timings.total) : 0
  parts.push(
    `| ${t.total.toFixed(3)}s, ${rate} rows/s: db ${ms(t.database)}, source checks ${ms(t.sourceChecks)}, precheck ${ms(t.precheck)}, ` +
      `pack ${ms(t.pack)}, verify ${ms(t.verify)}, delete ${ms(t.deleteSources)}`,
  )
  if (r.error) parts.push(`| error: ${r.error}`)
  return parts.join(' ')
}

/** The `--json` form of a cycle (snake_case, as the config file). */
export function reportJson(r: CycleReport): Record<string, unknown> {
  return {
    dry_run: r.dryRun,
    status: r.status,
    selected: r.selected,
    migrated: r.migrated,
    bytes: r.bytes,
    already_stored: r.alreadyStored,
    packed_files: r.packedFiles,
    shard_keys: r.shardKeys,
    deleted: r.deleted,
    pending: r.pending ?? null,
    bad: r.bad,
    delete_errors: r.deleteErrors,
    sources_kept: r.sourcesKept,
    error: r.error ?? null,
    error_code: r.status === 'error' ? (r.errorCode ?? 'DES_INTERNAL') : null,
    timings: {
      database: r.timings.database,
      source_checks: r.timings.sourceChecks,
      precheck: r.timings.precheck,
      pack: r.timings.pack,
      verify: r.timings.verify,
      delete_sources: r.timings.deleteSources,
      total: r.timings.total,
    },
  }
}

export function register(y: Argv): Argv {
  return y.command(
    'migrate',
    'Move files listed in a PostgreSQL table into shards (SPEC §10)',
    (a) =>
      a
        .option('config', { type: 'string', demandOption: true, describe: 'config file (.json, .yaml, .yml)' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'report what one cycle would do; change nothing' })
        .option('continuous', { type: 'boolean', default: false, describe: 'run a cycle every --interval seconds until SIGTERM' })
        .option('interval', { coerce: numberFlag('interval', `a number of seconds above 0, at most ${MAX_INTERVAL_SECONDS}`, (s) => s > 0 && s <= MAX_INTERVAL_SECONDS), default: 3600, describe: 'seconds between cycles with --continuous' })
        .option('metrics-port', { coerce: wholeNumberFlag('metrics-port', 0, 65535), describe: 'serve Prometheus metrics on this port (0 = any free port)' })
        .option('json', { type: 'boolean', default: false, describe: 'one JSON report per cycle on stdout' })
        .example('$0 migrate --config migration.yaml --dry-run', 'what one cycle would do, changing nothing')
        .example('$0 migrate --config migration.yaml --continuous --interval 600 --metrics-port 9464', 'a cycle every 10 minutes, metrics for Prometheus'),
    async (argv) => {
      const { loadMigrateConfig } = await import('../../config/migrate')
      const { boundPort, createDeps, runCycles, serveMetrics } = await import('../../migrate/run')
      if (argv['dry-run'] && argv.continuous) throw new DesError('DES_BAD_ARG', '--dry-run runs one cycle; drop --continuous')
      const env = loadMigrateEnv()
      const config = loadMigrateConfig(argv.config, env.vars)
      // DES_BACKEND=multi_s3: the zones of DES_ZONES_CONFIG take the place of packer.output_dir / packer.s3.
      const { writeZonesFromEnv } = await import('../../config/zones')
      // Routed with the zones file's n_bits; packer.n_bits or DES_N_BITS set to another is refused.
      const zoned = writeZonesFromEnv(explicitNBits(config.packer), env.vars)
      if (zoned) config.packer.nBits = zoned.zones.nBits
      if (zoned) process.stderr.write(`des-migrate: DES_BACKEND=multi_s3: writing to the ${zoned.zones.zones.length} zones of ${zoned.file} (packer.output_dir / packer.s3 are not used)\n`)
      const deps = createDeps(config, { fault: env.fault, log: (line) => process.stderr.write(`des-migrate: ${oneLine(line)}\n`), zones: zoned?.zones })
      const stop = new AbortController()
      const onSignal = (sig: string) => {
        if (!stop.signal.aborted) process.stderr.write(`des-migrate: ${sig}: finishing the cycle in flight\n`)
        stop.abort()
      }
      const onTerm = () => onSignal('SIGTERM')
      const onInt = () => onSignal('SIGINT')
      process.on('SIGTERM', onTerm)
      process.on('SIGINT', onInt)
      let server
      try {
        // The original's config names no layout, and its store is flat: nested shards beside them would go unfound.
        const { refuseUnchosenNestedBesideFlat } = await import('../../store/flat-probe')
        await refuseUnchosenNestedBesideFlat('all' in deps.store ? deps.store.all() : [deps.store], config.packer.layout, config.packer.layoutFrom, 'packer.layout (or DES_LAYOUT) to')
        if (argv['metrics-port'] !== undefined) {
          server = await serveMetrics(argv['metrics-port'])
          process.stderr.write(`des-migrate: metrics on port ${boundPort(server)}\n`)
        }
        const last = await runCycles(deps, {
          dryRun: argv['dry-run'],
          continuous: argv.continuous,
          intervalSeconds: argv.interval,
          signal: stop.signal,
          onReport: (r) => writeOut((argv.json ? JSON.stringify(reportJson(r)) : summaryLine(r)) + '\n'),
        })
        // One-shot: a failed cycle is a failed command, exiting by what failed
        // (6: database or store unreachable). Continuous: stopping is a clean exit.
        if (!argv.continuous && last?.status === 'error') {
          const why = last.error ?? `${last.bad.length} row(s) did not read back from the store`
          throw new DesError(last.errorCode ?? 'DES_INTERNAL', `migration cycle failed: ${why}`)
        }
      } finally {
        process.off('SIGTERM', onTerm)
        process.off('SIGINT', onInt)
        server?.close()
        await deps.close()
      }
    },
  )
}
