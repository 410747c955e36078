// The packer's batch calls into the addon answer malformed input with a
// clear error and touch nothing: packParts, locateShards, statSources, and
// the manifest scanner.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { errorCode } from '../src/errors'
import { locateShards, ManifestScan, packParts, statSources } from '../src/native'
import { tempDir } from './helpers/pack'

test('packParts refuses arrays of different lengths and a negative size limit, naming the call, and writes nothing', async (t) => {
  const dir = tempDir()
  const src = path.join(dir, 'a')
  fs.writeFileSync(src, 'aa')
  const target = path.join(dir, 'out', '0A.des')
  const short = await t.throwsAsync(packParts([{ path: target, uids: ['a', 'b'], paths: [src], sizes: [2, 2] }]))
  t.is(errorCode(short), 'DES_BAD_ARG')
  t.regex(short!.message, /packParts: 2 uids, 1 paths, 2 sizes/)
  const negative = await t.throwsAsync(packParts([{ path: target, uids: ['a'], paths: [src], sizes: [2], maxDataSize: -1 }]))
  t.is(errorCode(negative), 'DES_BAD_ARG')
  t.regex(negative!.message, /maxDataSize must be >= 0, got -1/)
  t.false(fs.existsSync(path.join(dir, 'out')))
})

test('packParts: a declared size the source does not have fails that part with both sizes; nothing is created', async (t) => {
  const dir = tempDir()
  const src = path.join(dir, 'a')
  fs.writeFileSync(src, 'abc')
  const target = path.join(dir, 'out', '0A.des')
  const [r] = await packParts([{ path: target, uids: ['a'], paths: [src], sizes: [1_000_000_000_000] }])
  // Sizes are checked before a part is packed: one that differs at the read changed since.
  t.regex(r.error ?? '', /DES_SOURCE_CHANGED.*is 3 bytes, the manifest says 1000000000000/)
  t.false(fs.existsSync(target))
})

test('locateShards refuses rows of different lengths and an n_bits out of range', (t) => {
  t.is(errorCode(t.throws(() => locateShards(['a', 'b'], ['2024-03-01T00:00:00Z'], 8))), 'DES_BAD_ARG')
  t.is(errorCode(t.throws(() => locateShards(['a'], ['2024-03-01T00:00:00Z'], 17))), 'DES_BAD_ARG')
})

test('statSources: a file, a missing path, a folder, a path through a file, an empty path', async (t) => {
  const dir = tempDir()
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, '12345')
  t.deepEqual(await statSources([file, path.join(dir, 'nope'), dir, path.join(file, 'x'), '']), [5, -1, -2, -1, -1])
})

test('the manifest scanner takes a start past the bytes given as their end, and refuses a binary file in words', (t) => {
  const scan = new ManifestScan()
  // A start past the end scans nothing (the bytes are taken as already seen).
  const none = scan.feed(Buffer.from('[{"uid": "a"}'), 1_000_000)
  t.deepEqual([...none.spans], [])
  t.is(none.refused ?? null, null)
  // Random bytes: refused with a message, no entry.
  const binary = new ManifestScan().feed(Buffer.from([0x00, 0xff, 0x5b, 0x7b]), 0)
  t.deepEqual([...binary.spans], [])
  t.is(binary.refused, 'manifest must be a JSON array of objects (or JSON lines)')
  // The end of an array never closed names its line.
  const open = new ManifestScan()
  open.feed(Buffer.from('[\n{"uid": "a"},\n'), 0)
  t.regex(open.end(Buffer.alloc(0)).refused ?? '', /^manifest is not valid JSON: line 3: the manifest ends before its array is closed \(after entry 1\)$/)
})
