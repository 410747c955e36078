#!/usr/bin/env node
// A large `des pack` manifest for the streaming-manifest benchmark:
//   node bench/manifest-gen.js DIR ENTRIES [json|jsonl] [SOURCES=2000]
// Writes SOURCES small text files (200..1,400 bytes) under DIR/src/ once, and
// DIR/manifest-<ENTRIES>.<json|jsonl>: ENTRIES rows with distinct uids, each
// pointing at one of the files (row i at file i mod SOURCES, its real size),
// created_at spread over 4 days. A JSON array is written one row per line,
// as a database export would. The manifest is written as it is made, so the
// generator's own memory stays small. Seeded: the same arguments make the same bytes.

'use strict'
const fs = require('node:fs')
const path = require('node:path')

const dir = path.resolve(process.argv[2] ?? path.join(__dirname, 'out', 'manifest'))
const entries = Number(process.argv[3] ?? 200_000)
const format = process.argv[4] ?? 'json'
const sources = Number(process.argv[5] ?? 2000)
if (!Number.isSafeInteger(entries) || entries < 1 || !['json', 'jsonl'].includes(format)) {
  console.error('usage: node bench/manifest-gen.js DIR ENTRIES [json|jsonl] [SOURCES]')
  process.exit(2)
}

let seed = 0x5eed4321
function rand() {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const srcDir = path.join(dir, 'src')
const files = []
const marker = path.join(srcDir, `.made-${sources}`)
if (!fs.existsSync(marker)) {
  fs.rmSync(srcDir, { recursive: true, force: true })
  for (let i = 0; i < sources; i++) {
    const sub = path.join(srcDir, String(Math.floor(i / 500)).padStart(3, '0'))
    if (i % 500 === 0) fs.mkdirSync(sub, { recursive: true })
    const size = 200 + Math.floor(rand() * 1200)
    const line = `${new Date(1709251200000 + i * 1000).toISOString()} INFO request ${i} served in ${Math.floor(rand() * 900)} ms\n`
    fs.writeFileSync(path.join(sub, `f${i}.log`), line.repeat(Math.ceil(size / line.length)).slice(0, size))
  }
  fs.writeFileSync(marker, '')
}
for (let i = 0; i < sources; i++) {
  const file = path.join(srcDir, String(Math.floor(i / 500)).padStart(3, '0'), `f${i}.log`)
  files.push({ file, size: fs.statSync(file).size })
}

const out = path.join(dir, `manifest-${entries}.${format}`)
const fd = fs.openSync(`${out}.tmp`, 'w')
const started = Date.now()
let buf = format === 'json' ? ['['] : []
let bytes = 0
for (let i = 0; i < entries; i++) {
  const f = files[i % sources]
  const day = 1 + Math.floor(rand() * 4)
  const hour = String(Math.floor(rand() * 24)).padStart(2, '0')
  const row = JSON.stringify({ uid: `doc-${i}`, created_at: `2024-03-0${day}T${hour}:00:00Z`, size_bytes: f.size, source_path: f.file })
  buf.push(format === 'json' ? (i + 1 < entries ? `${row},` : row) : row)
  bytes += row.length
  if (bytes > 4 << 20) {
    fs.writeSync(fd, buf.join('\n') + '\n')
    buf = []
    bytes = 0
  }
}
if (format === 'json') buf.push(']')
fs.writeSync(fd, buf.join('\n') + '\n')
fs.closeSync(fd)
fs.renameSync(`${out}.tmp`, out)
process.stderr.write(`manifest: ${entries} entries over ${sources} source files, ${(fs.statSync(out).size / 1048576).toFixed(1)} MiB, ${out} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`)
