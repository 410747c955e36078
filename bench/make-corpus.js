#!/usr/bin/env node
// A reproducible corpus of mixed small files for the packer benchmark:
//   node bench/make-corpus.js [DIR=bench/corpus] [TOTAL_MIB=1024]
//   node bench/make-corpus.js DIR --files 12000 --min-kib 1 --max-kib 100
// Sizes are log-normal around 24 KiB (most between 10 and 60 KiB), or, with
// --min-kib/--max-kib, log-uniform between the two; --files N stops after N
// files instead of TOTAL_MIB. About 45 % text logs, 35 % JSON records, 20 %
// binary (half random bytes like media, half float arrays). Writes
// DIR/files/NNN/<name> and DIR/manifest.json (the `des pack` manifest) and
// DIR/files.txt (paths for tar, relative to DIR).

'use strict'
const fs = require('node:fs')
const path = require('node:path')

const { values: flags, positionals } = require('node:util').parseArgs({
  allowPositionals: true,
  options: { files: { type: 'string' }, 'min-kib': { type: 'string' }, 'max-kib': { type: 'string' } },
})
const dir = path.resolve(positionals[0] ?? path.join(__dirname, 'corpus'))
const maxFiles = flags.files !== undefined ? Number(flags.files) : Infinity
const totalBytes = maxFiles < Infinity && positionals[1] === undefined ? Infinity : Number(positionals[1] ?? 1024) * 1024 * 1024
const logUniform = flags['min-kib'] !== undefined || flags['max-kib'] !== undefined
const minBytes = Number(flags['min-kib'] ?? 1) * 1024
const maxBytes = Number(flags['max-kib'] ?? 100) * 1024
if (!(maxFiles > 0) || !(totalBytes > 0) || !(minBytes >= 1 && maxBytes >= minBytes)) {
  throw new Error('usage: make-corpus.js [DIR] [TOTAL_MIB] [--files N] [--min-kib A --max-kib B]')
}

// mulberry32: a small seeded PRNG, so every run makes the same corpus.
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}
const next32 = mulberry32(0x5eed1234)
const rand = () => next32() / 4294967296
// Random payload bytes come from their own stream: the sizes and kinds drawn
// from `rand` stay what they were when these bytes came from crypto.randomBytes.
const nextByteWord = mulberry32(0xb17e5eed)
function randomBytes(size) {
  const words = new Uint32Array(Math.ceil(size / 4))
  for (let i = 0; i < words.length; i++) words[i] = nextByteWord()
  return Buffer.from(words.buffer, 0, size)
}
const pick = (a) => a[Math.floor(rand() * a.length)]
function gaussian() {
  const u = 1 - rand()
  const v = rand()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}
function logNormalSize() {
  const s = Math.round(Math.exp(Math.log(24 * 1024) + 0.55 * gaussian()))
  return Math.min(512 * 1024, Math.max(256, s))
}
function logUniformSize() {
  return Math.round(Math.exp(Math.log(minBytes) + rand() * (Math.log(maxBytes) - Math.log(minBytes))))
}

const syll = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'to', 'vi', 'ze', 'po', 'da', 'fe', 'gu', 'hi', 'jo', 'ba', 'co', 'xe']
const words = Array.from({ length: 3000 }, () => Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pick(syll)).join(''))
const levels = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR']
const paths = ['/api/v1/items', '/api/v1/users', '/api/v2/orders', '/health', '/static/app.js', '/api/v1/search']

function textFile(size) {
  const parts = []
  let n = 0
  let t = 1709251200000 + Math.floor(rand() * 86400000)
  while (n < size) {
    t += Math.floor(rand() * 500)
    const msg = Array.from({ length: 3 + Math.floor(rand() * 8) }, () => pick(words)).join(' ')
    const line = `${new Date(t).toISOString()} ${pick(levels)} [worker-${Math.floor(rand() * 16)}] ${pick(paths)}/${Math.floor(rand() * 100000)} status=${pick([200, 200, 200, 201, 404, 500])} ms=${Math.floor(rand() * 900)} req=${Math.floor(rand() * 0xffffffff).toString(16)} ${msg}\n`
    parts.push(line)
    n += line.length
  }
  return Buffer.from(parts.join('').slice(0, size))
}

function jsonFile(size) {
  const recs = []
  let n = 2
  while (n < size) {
    const r = JSON.stringify({
      id: Math.floor(rand() * 1e9),
      name: `${pick(words)} ${pick(words)}`,
      email: `${pick(words)}@${pick(words)}.com`,
      score: Math.round(rand() * 10000) / 100,
      active: rand() < 0.7,
      tags: Array.from({ length: Math.floor(rand() * 4) }, () => pick(words)),
      created: new Date(1700000000000 + Math.floor(rand() * 3e10)).toISOString(),
    })
    recs.push(r)
    n += r.length + 2
  }
  const text = `[${recs.join(',\n')}]`
  return Buffer.from(text.length > size ? text.slice(0, size) : text)
}

function binaryFile(size) {
  if (rand() < 0.5) return randomBytes(size)
  const f = new Float32Array(Math.ceil(size / 4))
  let x = rand()
  for (let i = 0; i < f.length; i++) {
    x += (rand() - 0.5) * 0.01
    f[i] = x
  }
  return Buffer.from(f.buffer, 0, size)
}

fs.rmSync(dir, { recursive: true, force: true })
fs.mkdirSync(path.join(dir, 'files'), { recursive: true })
const manifest = []
const rel = []
let total = 0
let i = 0
const started = Date.now()
while (total < totalBytes && i < maxFiles) {
  const size = logUniform ? logUniformSize() : logNormalSize()
  const r = rand()
  const [kind, ext, data] = r < 0.45 ? ['text', 'log', textFile(size)] : r < 0.8 ? ['json', 'json', jsonFile(size)] : ['bin', 'bin', binaryFile(size)]
  const sub = String(Math.floor(i / 1000)).padStart(3, '0')
  if (i % 1000 === 0) fs.mkdirSync(path.join(dir, 'files', sub), { recursive: true })
  const name = `${kind}-${i}.${ext}`
  const file = path.join(dir, 'files', sub, name)
  fs.writeFileSync(file, data)
  rel.push(`files/${sub}/${name}`)
  const day = 1 + Math.floor(rand() * 3)
  manifest.push({ uid: `${i}`, created_at: `2024-03-0${day}T${String(Math.floor(rand() * 24)).padStart(2, '0')}:00:00Z`, size_bytes: data.length, source_path: file })
  total += data.length
  i++
}
fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest))
fs.writeFileSync(path.join(dir, 'files.txt'), rel.join('\n') + '\n')
process.stderr.write(`corpus: ${i} files, ${(total / 1048576).toFixed(1)} MiB in ${dir} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`)
