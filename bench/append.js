#!/usr/bin/env node
// One step of bench/append.sh, with whatever addon NAPI_RS_NATIVE_LIBRARY_PATH names:
//   node bench/append.js make SHARD MIB        a shard of MIB MiB (1 MiB payloads, codec none)
//   node bench/append.js add SHARD FILES KIB   appends FILES payloads of KIB KiB (zstd); prints ms
//   node bench/append.js copy SHARD            copies the shard and fsyncs the copy; prints ms
// Payloads come from a seeded stream, so every run writes the same bytes.
'use strict'
const fs = require('node:fs')
const { ShardWriter } = require('../index.js')

let seed = 0x0a99e4d
function bytes(n) {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i += 4) {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    // Half the bytes random, half a repeated word: compressible as documents are.
    b.writeUInt32LE(i % 8 === 0 ? (t ^ (t >>> 14)) >>> 0 : 0x61746164, i)
  }
  return b.subarray(0, n)
}

async function main() {
  const [mode, shard, a, b] = process.argv.slice(2)
  if (mode === 'make') {
    fs.rmSync(shard, { force: true })
    const w = ShardWriter.create(shard, { codec: 'none' })
    for (let i = 0; i < Number(a); i++) await w.add(`base-${i}`, bytes(1 << 20))
    await w.finish()
  } else if (mode === 'add') {
    const files = Array.from({ length: Number(a) }, () => bytes(Number(b) * 1024))
    const tag = process.hrtime.bigint().toString(36)
    const t0 = process.hrtime.bigint()
    const w = await ShardWriter.append(shard, { codec: 'zstd' })
    for (const [i, data] of files.entries()) await w.add(`add-${tag}-${i}`, data)
    await w.finish()
    console.log(Number(process.hrtime.bigint() - t0) / 1e6)
  } else if (mode === 'copy') {
    const copy = `${shard}.copy`
    const t0 = process.hrtime.bigint()
    fs.copyFileSync(shard, copy)
    const fd = fs.openSync(copy, 'r+')
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    console.log(Number(process.hrtime.bigint() - t0) / 1e6)
    fs.rmSync(copy)
  } else {
    throw new Error('usage: node bench/append.js make|add|copy SHARD ...')
  }
}
main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
