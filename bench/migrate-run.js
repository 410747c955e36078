#!/usr/bin/env node
// Runs migration cycles (the same code as `des migrate`, from dist/) until the
// table is drained; prints each cycle's JSON report on stderr and the totals
// (rows/s, time split) on stdout as one JSON object.
//   node bench/migrate-run.js CONFIG
'use strict'
const { loadMigrateConfig } = require('../dist/config/migrate')
const { createDeps } = require('../dist/migrate/run')
const { runCycle } = require('../dist/migrate/cycle')

async function main() {
  const config = loadMigrateConfig(process.argv[2], process.env)
  const deps = createDeps(config)
  const sum = { database: 0, sourceChecks: 0, precheck: 0, pack: 0, verify: 0, deleteSources: 0, total: 0 }
  let rows = 0
  let bytes = 0
  let cycles = 0
  let shards = 0
  const started = process.hrtime.bigint()
  for (;;) {
    const r = await runCycle(deps)
    if (r.status !== 'success') throw new Error(`cycle failed: ${r.error ?? JSON.stringify(r.bad.slice(0, 3))}`)
    if (r.selected === 0) break
    cycles++
    rows += r.migrated
    bytes += r.bytes
    shards += r.shardKeys.length
    for (const k of Object.keys(sum)) sum[k] += r.timings[k]
    console.error(JSON.stringify({ cycle: cycles, migrated: r.migrated, shards: r.shardKeys.length, timings: r.timings }))
  }
  const wall = Number(process.hrtime.bigint() - started) / 1e9
  await deps.close()
  const pct = (x) => `${((100 * x) / sum.total).toFixed(1)}%`
  console.log(
    JSON.stringify(
      {
        rows,
        mib: +(bytes / 1048576).toFixed(1),
        cycles,
        batch_size: config.migration.batchSize,
        shard_writes: shards,
        seconds: +wall.toFixed(2),
        rows_per_second: Math.round(rows / wall),
        split_seconds: Object.fromEntries(Object.entries(sum).map(([k, v]) => [k, +v.toFixed(2)])),
        split_percent: Object.fromEntries(Object.entries(sum).filter(([k]) => k !== 'total').map(([k, v]) => [k, pct(v)])),
      },
      null,
      2,
    ),
  )
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
