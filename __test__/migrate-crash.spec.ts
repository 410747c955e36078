// kill -9 at each fault point of steps 3-6, then a rerun: every row archived
// exactly once, every archived uid readable with its bytes, and no source
// deleted whose bytes are not stored. Local output; the S3 case is in
// migrate-s3.spec.ts. Runs the built CLI (npx tsc -p tsconfig.json first).

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { runCli } from './helpers/cli'
import { allStoredUids, baseConfig, freshTable, makeFiles, readBack, writeConfig, type TestRow, type TestTable } from './helpers/migrate'
import { FAULT_POINTS } from '../src/config/migrate'
import { LocalSource } from '../src/storage/local'

const N_BITS = 8

/** What must hold at any moment, crash or not. */
async function checkSafe(t: { true: (v: boolean, m?: string) => void }, tb: TestTable, rows: TestRow[], outDir: string) {
  const store = new LocalSource(outDir)
  const archived = await tb.archived()
  for (const r of rows) {
    const sourceGone = !fs.existsSync(r.location)
    if (!sourceGone && !archived.get(r.uid)) continue
    const got = await readBack(store, r.uid, r.createdAt, N_BITS)
    t.true(got.data !== null && got.data.equals(r.data!), `${r.uid} (${sourceGone ? 'source deleted' : 'archived'}) is stored with its bytes`)
  }
}

for (const fault of FAULT_POINTS) {
  test(`kill -9 at ${fault}, then a rerun: every row archived once, readable, no source lost`, async (t) => {
    const tb = await freshTable(`crash_${fault}`)
    t.teardown(() => tb.close())
    // 1,200 rows over some 600 keys: about ten batches of 64 parts, three in
    // flight at most. Half the files are reported packed after five batches,
    // so the kill then comes with parts never sent to be written (with five
    // batches in all, those in flight could all land before the report that
    // crossed half-way: a run stored every row).
    const rows = makeFiles(tb.dir, 1200, { maxSize: 600 })
    await tb.insert(rows)
    const outDir = path.join(tb.dir, 'out')
    const cfg = writeConfig(tb.dir, baseConfig(tb, { migration: { batch_size: 2000, delete_source_files: true }, packer: { n_bits: N_BITS } }), 'yaml')

    const killed = await runCli(['migrate', '--config', cfg], { env: { DES_TEST_FAULT: fault } })
    t.is(killed.code, -1, `killed by SIGKILL (stderr: ${killed.stderr})`)
    const archivedAfterCrash = [...(await tb.archived()).values()].filter(Boolean).length
    const committed = fault === 'after-mark' || fault === 'mid-delete'
    t.is(archivedAfterCrash, committed ? rows.length : 0, 'the claim rolls back unless the commit happened')
    await checkSafe(t, tb, rows, outDir)
    const storedAfterCrash = allStoredUids(outDir).size
    if (fault === 'in-pack') t.true(storedAfterCrash > 0 && storedAfterCrash < rows.length, `killed half-way: ${storedAfterCrash} of ${rows.length} stored`)
    else t.is(storedAfterCrash, rows.length)

    const rerun = await runCli(['migrate', '--config', cfg, '--json'])
    t.is(rerun.code, 0, rerun.stderr)
    const report = JSON.parse(rerun.stdout.toString())
    t.deepEqual(report.bad, [])
    t.is(report.migrated, committed ? 0 : rows.length)
    // A rerun after packing finds the uids stored (skipExisting) and verifies them like new ones.
    if (!committed) t.is(report.already_stored, storedAfterCrash)
    const archived = await tb.archived()
    t.true(rows.every((r) => archived.get(r.uid) === true), 'every row archived')
    const stored = allStoredUids(outDir)
    t.deepEqual(
      rows.filter((r) => stored.get(r.uid) !== 1).map((r) => r.uid),
      [],
      'every uid stored exactly once',
    )
    t.is(stored.size, rows.length, 'nothing else stored')
    await checkSafe(t, tb, rows, outDir)
    if (!committed) t.true(rows.every((r) => !fs.existsSync(r.location)), 'sources deleted after the rerun')
  })
}
