// Two migrators on one table at once (two CronJob pods): no row archived twice,
// none lost, every uid once in the store with its bytes.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawn } from 'node:child_process'
import { ROOT } from './helpers/golden'
import { allStoredUids, baseConfig, freshTable, makeFiles, readBack, writeConfig } from './helpers/migrate'
import { parseMigrateConfig } from '../src/config/migrate'
import { createDeps } from '../src/migrate/run'
import { runCycle } from '../src/migrate/cycle'
import { LocalSource } from '../src/storage/local'

test('two des migrate processes on one table never archive a row twice nor lose one', async (t) => {
  const tb = await freshTable('concurrent')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 400, { maxSize: 1500 })
  await tb.insert(rows)
  const outDir = path.join(tb.dir, 'out')
  const cfg = writeConfig(tb.dir, baseConfig(tb, { migration: { batch_size: 20, delete_source_files: true } }), 'yaml')
  const start = () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/des.js'), 'migrate', '--config', cfg, '--continuous', '--interval', '0.05', '--json'], { cwd: ROOT })
    const out = { stdout: '', stderr: '', exit: new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code))) }
    child.stdout.on('data', (d) => (out.stdout += d))
    child.stderr.on('data', (d) => (out.stderr += d))
    return { child, out }
  }
  const a = start()
  const b = start()
  for (let i = 0; i < 600; i++) {
    if ([...(await tb.archived()).values()].every(Boolean)) break
    await new Promise((r) => setTimeout(r, 100))
  }
  a.child.kill('SIGTERM')
  b.child.kill('SIGTERM')
  t.is(await a.out.exit, 0, a.out.stderr)
  t.is(await b.out.exit, 0, b.out.stderr)
  const reports = [a, b].map((p) =>
    p.out.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { status: string; migrated: number; bad: unknown[]; error: string | null }),
  )
  const migratedBy = reports.map((list) => list.reduce((n, r) => n + r.migrated, 0))
  t.is(migratedBy[0] + migratedBy[1], 400, `marks by the two: ${migratedBy.join(' + ')}`)
  t.true(migratedBy[0] > 0 && migratedBy[1] > 0, `both did work: ${migratedBy.join(' + ')}`)
  t.deepEqual(
    reports.flat().filter((r) => r.status !== 'success' || r.bad.length > 0),
    [],
  )
  const archived = await tb.archived()
  t.true(rows.every((r) => archived.get(r.uid)))
  const stored = allStoredUids(outDir)
  t.deepEqual(
    rows.filter((r) => stored.get(r.uid) !== 1).map((r) => r.uid),
    [],
    'every uid stored exactly once',
  )
  const store = new LocalSource(outDir)
  for (const r of rows) {
    const got = await readBack(store, r.uid, r.createdAt, 4)
    t.true(got.data?.equals(r.data!) ?? false, r.uid)
    t.false(fs.existsSync(r.location))
  }
})

test('two cycles in flight at once share no row and write each shard key in turn', async (t) => {
  const tb = await freshTable('concurrent_inproc')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 200, { maxSize: 800 })
  await tb.insert(rows)
  const config = parseMigrateConfig(baseConfig(tb, { migration: { batch_size: 100 } }))
  const one = createDeps(config)
  const two = createDeps(config)
  t.teardown(() => Promise.all([one.close(), two.close()]).then(() => undefined))
  const [r1, r2] = await Promise.all([runCycle(one), runCycle(two)])
  t.is(r1.status, 'success', r1.error)
  t.is(r2.status, 'success', r2.error)
  t.is(r1.migrated + r2.migrated, 200)
  t.is(r1.migrated, 100)
  const stored = allStoredUids(path.join(tb.dir, 'out'))
  t.is(stored.size, 200)
  t.true([...stored.values()].every((n) => n === 1))
})
