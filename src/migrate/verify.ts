// Reading back what a store holds for a (date, shard) key: every part's index
// (`<HEX>.des`, `<HEX>.1.des`, ..., or the flat layout's `_0000`, `_0001`...),
// fetched fresh (never from a cache), so a uid counts as stored only when the
// durable object's index lists it.

import type { ByteSource, ShardSources } from '../storage/source'
import { checkBigfile } from '../verify/check'
import { openShard, type ShardHandle } from '../store/shard'
import type { Layout } from '../config/env'
import { DEFAULT_BIGFILES_PREFIX, DEFAULT_TAIL_BYTES } from '../config/defaults'
import { bigfileKeyIn, parseFlatShardKey, shardKeyIn } from '../store/layout'
import { classifyError, describe } from '../errors'
import type { EntryInfo } from '../native'
import { mapLimit } from './sources'

/**
 * Every part of one key, in part order (stops at the first part that does not
 * exist); each read as a suffix of `tailBytes` (DES_TAIL_BYTES), a second read
 * only for an index longer than that. With zones (`ShardSources`), from the
 * zone of the key's shard index; a key in no zone has no parts.
 */
export async function openParts(store: ByteSource | ShardSources, dateDir: string, shardHex: string, layout: Layout = 'nested', tailBytes = DEFAULT_TAIL_BYTES): Promise<ShardHandle[]> {
  const parts: ShardHandle[] = []
  for (let part = 0; ; part++) {
    try {
      const source = 'sourceFor' in store ? store.sourceFor(Number.parseInt(shardHex, 16)) : store
      parts.push(await openShard(source, shardKeyIn(layout, { dateDir, shardHex }, part), tailBytes))
    } catch (err) {
      if ((err as { code?: string })?.code === 'DES_NOT_FOUND') return parts
      throw err
    }
  }
}

/** Where a uid is stored: the part's key and its index entry. */
export interface StoredEntry {
  key: string
  entry: EntryInfo
}

/** The parts of many keys (`date/HEX`), opened a few at a time. */
export async function openKeys(store: ByteSource | ShardSources, keys: Array<{ dateDir: string; shardHex: string }>, concurrency = 16, layout: Layout = 'nested', tailBytes = DEFAULT_TAIL_BYTES): Promise<Map<string, ShardHandle[]>> {
  const opened = await mapLimit(keys, concurrency, (k) => openParts(store, k.dateDir, k.shardHex, layout, tailBytes))
  return new Map(keys.map((k, i) => [`${k.dateDir}/${k.shardHex}`, opened[i]]))
}

/** Every entry of `uid` across a key's parts (more than one would be a duplicate). */
export function findStored(parts: ShardHandle[], uid: string): StoredEntry[] {
  const found: StoredEntry[] = []
  for (const p of parts) {
    const entry = p.reader.entry(uid)
    if (entry) found.push({ key: p.key, entry })
  }
  return found
}

/**
 * A BigFile's object read whole and hashed (store-wide verify's check, read
 * no further than one byte past the entry's size): undefined when it holds
 * the entry's size and sha256, else what is wrong with it. A size alone would
 * take a damaged BigFile for a stored one (and its source would be deleted).
 */
async function bigfileProblem(source: ByteSource, key: string, entry: EntryInfo): Promise<string | undefined> {
  const got = await checkBigfile(source, key, undefined, entry.size)
  if (got.sha256 === null) return `BigFile ${key} is missing`
  if (got.bytes !== entry.size) return `BigFile ${key} is ${got.bytes > entry.size ? `more than ${entry.size}` : got.bytes} bytes, the index says ${entry.size}`
  return got.sha256 === entry.sha256 ? undefined : `BigFile ${key} has sha256 ${got.sha256}, the index says ${entry.sha256}`
}

/**
 * `err` when it says something of the stored object (gone, changed,
 * damaged, unreadable: its rows are bad, the others go on); thrown when the
 * store could not be reached at all: then nothing is known of any file, and
 * the cycle fails as unavailable instead of calling its rows bad.
 */
function unlessUnreachable(err: unknown): unknown {
  if (classifyError(err) === 'DES_UNAVAILABLE') throw err
  return err
}

/** Stored bytes farther apart than this are fetched by separate range reads. */
const READ_BACK_GAP = 1 << 20

/**
 * Reads back the stored bytes of `uids` from one opened part and checks each
 * (its checksum, then a decode to its stated size); BigFiles read whole
 * (their size and sha256). Neighbouring entries share one range read. Returns each failed uid
 * with the reason; a uid absent from the result was read back intact. The
 * bytes come from the source the part was opened on (`part.source`: with
 * zones, its zone's), BigFiles from beside it.
 */
export async function readBack(part: ShardHandle, uids: string[], bigfilesPrefix = DEFAULT_BIGFILES_PREFIX, layout: Layout = 'nested'): Promise<Map<string, string>> {
  const dateDir = layout === 'flat' ? (parseFlatShardKey(part.key)?.dateDir ?? '') : part.key.slice(0, part.key.indexOf('/'))
  const failed = new Map<string, string>()
  const inline: Array<{ uid: string; entry: EntryInfo }> = []
  for (const uid of uids) {
    const entry = part.reader.entry(uid)
    if (!entry) failed.set(uid, `not in the index of ${part.key}`)
    else if (!entry.isBigfile) inline.push({ uid, entry })
    else {
      const key = bigfileKeyIn(layout, dateDir, entry.sha256 ?? '', bigfilesPrefix)
      try {
        const why = await bigfileProblem(part.source, key, entry)
        if (why !== undefined) failed.set(uid, why)
      } catch (err) {
        failed.set(uid, `BigFile ${key}: ${describe(unlessUnreachable(err))}`)
      }
    }
  }
  inline.sort((a, b) => (a.entry.offset ?? 0) - (b.entry.offset ?? 0))
  let i = 0
  while (i < inline.length) {
    const start = inline[i].entry.offset ?? 0
    let end = start + inline[i].entry.storedSize
    let j = i + 1
    while (j < inline.length && (inline[j].entry.offset ?? 0) - end <= READ_BACK_GAP) {
      end = Math.max(end, (inline[j].entry.offset ?? 0) + inline[j].entry.storedSize)
      j++
    }
    let bytes: Buffer | undefined
    try {
      bytes = await part.source.getRange(part.key, start, end - start, 'payload', part.etag)
    } catch (err) {
      for (let k = i; k < j; k++) failed.set(inline[k].uid, `reading back ${part.key}: ${describe(unlessUnreachable(err))}`)
    }
    for (let k = i; bytes && k < j; k++) {
      const { uid, entry } = inline[k]
      const at = (entry.offset ?? 0) - start
      try {
        await part.reader.decode(uid, bytes.subarray(at, at + entry.storedSize))
      } catch (err) {
        failed.set(uid, `read back from ${part.key}: ${describe(err)}`)
      }
    }
    i = j
  }
  return failed
}
