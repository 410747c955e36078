// Reading back what a store holds for a (date, shard) key: every part's index
// (`<HEX>.des`, `<HEX>.1.des`, ...), fetched fresh (never from a cache), so a
// uid counts as stored only when the durable object's index lists it.

import type { ByteSource } from '../storage/source'
import { openShard, type ShardHandle } from '../store/shard'
import { shardKey } from '../store/layout'
import type { EntryInfo } from '../native'
import { mapLimit } from './sources'

/** Suffix read that usually holds footer and whole index in one request. */
const TAIL_BYTES = 256 * 1024

/** Every part of one key, in part order (stops at the first part that does not exist). */
export async function openParts(store: ByteSource, dateDir: string, shardHex: string): Promise<ShardHandle[]> {
  const parts: ShardHandle[] = []
  for (let part = 0; ; part++) {
    try {
      parts.push(await openShard(store, shardKey({ dateDir, shardHex }, part), TAIL_BYTES))
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
export async function openKeys(store: ByteSource, keys: Array<{ dateDir: string; shardHex: string }>, concurrency = 16): Promise<Map<string, ShardHandle[]>> {
  const opened = await mapLimit(keys, concurrency, (k) => openParts(store, k.dateDir, k.shardHex))
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
