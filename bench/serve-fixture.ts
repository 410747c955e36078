// Fixture for bench/serve.sh: N files of 1–64 KiB (text-like, so zstd has
// work to do), written unpacked to OUT/raw/<uid> for nginx and packed with
// zstd (the addon's ShardWriter) into a nested store OUT/store for des serve.
// OUT/paths-nginx.txt and OUT/paths-des.txt list one request path per file.
//
//   npx tsx bench/serve-fixture.ts OUT [N]

import * as fs from 'node:fs'
import * as path from 'node:path'
import { locateShard, ShardWriter } from '../src/native'
import { shardKey } from '../src/store/layout'

const out = path.resolve(process.argv[2] ?? '/tmp/des-bench-serve')
const n = Number(process.argv[3] ?? 10_000)
const DAYS = ['2024-03-01', '2024-03-02', '2024-03-03']

// A small deterministic PRNG, so every run serves the same bytes.
let seed = 0x2545f491
const rand = () => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return (seed >>> 0) / 0x100000000
}
const WORDS = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua 0 1 2 3 4 5 6 7 8 9 { } " : , id name value status created_at'.split(' ')

function fileBytes(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size)
  let i = 0
  while (i < size) {
    if (rand() < 0.1) {
      buf[i++] = Math.floor(rand() * 256) // some noise: not everything compresses
      continue
    }
    const w = WORDS[Math.floor(rand() * WORDS.length)] + ' '
    i += buf.write(w, i, 'latin1')
  }
  return buf
}

async function main(): Promise<void> {
  fs.rmSync(out, { recursive: true, force: true })
  fs.mkdirSync(path.join(out, 'raw'), { recursive: true })
  const byKey = new Map<string, Array<{ uid: string; data: Buffer }>>()
  const nginxPaths: string[] = []
  const desPaths: string[] = []
  let bytes = 0
  for (let i = 0; i < n; i++) {
    const uid = String(100_000_000 + Math.floor(rand() * 900_000_000))
    const createdAt = `${DAYS[i % DAYS.length]}T${String(i % 24).padStart(2, '0')}:17:00Z`
    const size = 1024 + Math.floor(rand() * 63 * 1024)
    const data = fileBytes(size)
    bytes += size
    fs.writeFileSync(path.join(out, 'raw', uid), data)
    const key = shardKey(locateShard(uid, createdAt))
    byKey.set(key, [...(byKey.get(key) ?? []), { uid, data }])
    nginxPaths.push(`/${uid}`)
    desPaths.push(`/files/${uid}?created_at=${createdAt}`)
  }
  let stored = 0
  for (const [key, files] of byKey) {
    const file = path.join(out, 'store', key)
    fs.mkdirSync(path.dirname(file), { recursive: true })
    const w = ShardWriter.create(file, { codec: 'zstd' })
    for (const f of files) await w.add(f.uid, f.data)
    stored += (await w.finish()).fileSize
  }
  fs.writeFileSync(path.join(out, 'paths-nginx.txt'), nginxPaths.join('\n') + '\n')
  fs.writeFileSync(path.join(out, 'paths-des.txt'), desPaths.join('\n') + '\n')
  console.log(`${n} files, ${(bytes / 1e6).toFixed(1)} MB raw, ${byKey.size} shards, ${(stored / 1e6).toFixed(1)} MB packed (zstd) in ${out}`)
}

void main()
