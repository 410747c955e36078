#!/usr/bin/env node
// Generates the migration benchmark's input: N small files on local disk and a
// PostgreSQL table (SPEC §10 shape) with one row per file, created over 10 days.
//   node bench/migrate-gen.js --rows 100000 --dir /tmp/x --db-url URL --table bench.files
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')
const { Client } = require('pg')

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : def
}

async function main() {
  const rows = Number(arg('rows', '100000'))
  const dir = path.resolve(arg('dir', 'bench/out/migrate'))
  const url = arg('db-url', process.env.DES_TEST_PG_URL)
  const table = arg('table', 'des_bench.files')
  const [schema] = table.split('.')
  const src = path.join(dir, 'src')
  fs.rmSync(dir, { recursive: true, force: true })
  const started = Date.now()
  // Text-like payloads (compressible, like JSON/XML documents), 200 B .. 4 KiB.
  const words = crypto.randomBytes(4096).toString('base64').match(/.{1,7}/g)
  const uids = []
  const created = []
  const locs = []
  const sizes = []
  const base = Date.UTC(2024, 0, 1)
  let bytes = 0
  for (let i = 0; i < rows; i++) {
    const sub = path.join(src, String(Math.floor(i / 1000)))
    if (i % 1000 === 0) fs.mkdirSync(sub, { recursive: true })
    const size = 200 + ((i * 2654435761) >>> 0) % 3900
    let text = `{"id":${i},"body":"`
    while (text.length < size) text += words[(i + text.length) % words.length] + ' '
    const data = Buffer.from(text.slice(0, size))
    const loc = path.join(sub, `${i}.json`)
    fs.writeFileSync(loc, data)
    uids.push(String(100000000 + i))
    created.push(new Date(base + (i % 10) * 86400000 + i * 7).toISOString())
    locs.push(loc)
    sizes.push(size)
    bytes += size
  }
  const filesSeconds = (Date.now() - started) / 1000
  const db = new Client({ connectionString: url })
  await db.connect()
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  await db.query(`CREATE SCHEMA ${schema}`)
  await db.query(`CREATE TABLE ${table} (uid text PRIMARY KEY, created_at timestamptz NOT NULL, file_location text NOT NULL, size_bytes bigint NOT NULL, archived boolean NOT NULL DEFAULT false)`)
  for (let i = 0; i < rows; i += 10000) {
    const s = (a) => a.slice(i, i + 10000)
    await db.query(`INSERT INTO ${table} (uid, created_at, file_location, size_bytes) SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[])`, [s(uids), s(created), s(locs), s(sizes)])
  }
  // What a real deployment would have: the pending rows findable in created_at order.
  await db.query(`CREATE INDEX ON ${table} (created_at) WHERE archived = false`)
  await db.query(`ANALYZE ${table}`)
  await db.end()
  console.error(`generated ${rows} files (${(bytes / 1048576).toFixed(1)} MiB) in ${filesSeconds.toFixed(1)} s and table ${table} in ${((Date.now() - started) / 1000 - filesSeconds).toFixed(1)} s`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
