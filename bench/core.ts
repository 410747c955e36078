// Core benchmark: a shard of 1,000,000 small entries — open time, lookups per
// second, and decode throughput per codec next to the zstd/lz4 command-line
// tools decoding the same payload bytes. Run with `bash bench/core.sh`.

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { execFileSync } from 'node:child_process'
import { ShardReader, ShardWriter, type Codec } from '../src/native'

const N = Number(process.env.BENCH_ENTRIES ?? 1_000_000)
const LOOKUPS = 1_000_000
const DECODE_SAMPLE = 200_000
const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'des-bench-core-'))

// Deterministic invoice-like JSON records, 150..1500 bytes.
function record(i: number): Buffer {
  let x = (i * 2654435761) >>> 0
  const lines = 2 + (x % 12)
  const items = []
  for (let l = 0; l < lines; l++) {
    x = (x * 1103515245 + 12345) >>> 0
    items.push({ sku: `SKU-${x % 100000}`, qty: x % 17, price: (x % 100000) / 100, note: x % 3 ? 'standard delivery' : 'express' })
  }
  return Buffer.from(JSON.stringify({ invoice: `INV-${i}`, customer: `C${x % 5000}`, currency: 'PLN', items }))
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9
}

function time<T>(f: () => T): [T, number] {
  const t0 = process.hrtime.bigint()
  const v = f()
  return [v, seconds(t0)]
}

// Build time counts the writer only (addFiles + finish), not making the records in JS.
async function build(codec: Codec): Promise<{ file: string; raw: number; seconds: number }> {
  const file = path.join(dir, `${codec}.des`)
  const w = ShardWriter.create(file, { codec })
  let raw = 0
  let writing = 0n
  for (let start = 0; start < N; start += 50_000) {
    const batch = []
    for (let i = start; i < Math.min(N, start + 50_000); i++) {
      const data = record(i)
      raw += data.length
      batch.push({ uid: `doc-${i}`, data })
    }
    const t0 = process.hrtime.bigint()
    await w.addFiles(batch)
    writing += process.hrtime.bigint() - t0
  }
  const t0 = process.hrtime.bigint()
  await w.finish()
  writing += process.hrtime.bigint() - t0
  return { file, raw, seconds: Number(writing) / 1e9 }
}

function cliDecode(tool: 'zstd' | 'lz4', plainFile: string): number {
  const packed = `${plainFile}.${tool}`
  execFileSync(tool, tool === 'zstd' ? ['-q', '-f', '-3', plainFile, '-o', packed] : ['-q', '-f', plainFile, packed])
  const runs = []
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint()
    execFileSync('sh', ['-c', `${tool} -d -q -c ${packed} > /dev/null`])
    runs.push(seconds(t0))
  }
  return Math.min(...runs)
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = { entries: N, dir }
  const rows: string[] = []
  let plainFile = ''
  for (const codec of ['none', 'zstd', 'lz4'] as const) {
    const built = await build(codec)
    const size = fs.statSync(built.file).size
    // Open: header, footer, index parse and hash table, off the event loop.
    const t0 = process.hrtime.bigint()
    const reader = await ShardReader.open(built.file)
    const openSeconds = seconds(t0)
    // Lookups: random uids, half of them absent.
    const [, lookupSeconds] = time(() => {
      let x = 7
      let hits = 0
      for (let i = 0; i < LOOKUPS; i++) {
        x = (x * 1103515245 + 12345) >>> 0
        if (reader.has(`doc-${x % (N * 2)}`)) hits++
      }
      return hits
    })
    // Decode from JS, one entry per call (what a server does per request).
    const [decodedBytes, jsDecodeSeconds] = time(() => {
      let bytes = 0
      for (let i = 0; i < DECODE_SAMPLE; i++) bytes += reader.readSync(`doc-${(i * 4 + 1) % N}`).length
      return bytes
    })
    // Decode everything inside Rust (verify): the core's own throughput.
    const t1 = process.hrtime.bigint()
    const report = await reader.verify()
    const verifySeconds = seconds(t1)
    if (report.ok !== N) throw new Error(`verify failed: ${JSON.stringify(report.problems.slice(0, 3))}`)
    const mib = (b: number): number => b / 1048576
    const r = {
      build_seconds: built.seconds,
      build_mib_s: mib(built.raw) / built.seconds,
      raw_mib: mib(built.raw),
      shard_mib: mib(size),
      index_mib: mib(reader.indexSize),
      open_ms: openSeconds * 1000,
      lookups_per_s: LOOKUPS / lookupSeconds,
      js_read_per_s: DECODE_SAMPLE / jsDecodeSeconds,
      js_read_mib_s: mib(decodedBytes) / jsDecodeSeconds,
      core_decode_mib_s: mib(report.bytes) / verifySeconds,
    }
    results[codec] = r
    rows.push(
      `${codec.padEnd(5)} build ${r.build_mib_s.toFixed(0)} MiB/s | shard ${r.shard_mib.toFixed(0)} MiB (index ${r.index_mib.toFixed(1)}) | open ${r.open_ms.toFixed(0)} ms | ` +
        `${(r.lookups_per_s / 1e6).toFixed(2)} M lookups/s | JS read ${(r.js_read_per_s / 1e3).toFixed(0)} k/s ${r.js_read_mib_s.toFixed(0)} MiB/s | core decode ${r.core_decode_mib_s.toFixed(0)} MiB/s`,
    )
    if (codec === 'none') {
      // The same payload bytes, concatenated, for the command-line tools.
      plainFile = path.join(dir, 'payloads.bin')
      const out = fs.openSync(plainFile, 'w')
      for (let i = 0; i < N; i++) fs.writeSync(out, record(i))
      fs.closeSync(out)
    } else {
      const cliSeconds = cliDecode(codec, plainFile)
      const cliMib = mib(fs.statSync(plainFile).size) / cliSeconds
      results[`${codec}_cli_decode_mib_s`] = cliMib
      results[`${codec}_core_vs_cli`] = r.core_decode_mib_s / cliMib
      rows.push(`      ${codec} CLI decode of the same bytes (one stream): ${cliMib.toFixed(0)} MiB/s -> DES core/CLI ratio ${(r.core_decode_mib_s / cliMib).toFixed(2)}`)
    }
  }
  console.log(rows.join('\n'))
  console.log(JSON.stringify(results))
  fs.rmSync(dir, { recursive: true, force: true })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
