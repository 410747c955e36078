// Paths to the reference vectors: fixtures/golden, a byte-identical copy of
// the steering repo's shared/golden (see fixtures/README.md).

import * as path from 'node:path'
import * as fs from 'node:fs'
import { createHash } from 'node:crypto'

export const GOLDEN = path.resolve(__dirname, '../../fixtures/golden')
/** The steering repo's originals, when this checkout has them beside it. */
export const SHARED_GOLDEN = path.resolve(__dirname, '../../../shared/golden')
export const ROOT = path.resolve(__dirname, '../..')

export function goldenPath(...parts: string[]): string {
  return path.join(GOLDEN, ...parts)
}

export function readJson<T = any>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

export interface ExpectEntry {
  uid: string
  size: number
  sha256: string
  is_bigfile: boolean
  codec: string | null
  meta: Record<string, unknown>
}

/** Every golden shard with its expectations. */
export function goldenShards(): Array<{ file: string; expect: { version: number; entries: ExpectEntry[] } }> {
  const dir = goldenPath('shards')
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.des'))
    .map((f) => ({ file: path.join(dir, f), expect: readJson(path.join(dir, f.replace(/\.des$/, '.expect.json'))) }))
}
