// Where shards and BigFiles live inside a store. One deterministic key per
// (date, shard); continuations when a shard is full; the reference packer's
// flat layout for reading old stores.

import type { ShardLocation } from '../native'

/**
 * Key of shard `part` of a location: part 0 is `<date>/<HEX>.des`, later parts
 * (written when `--max-shard-size` is reached) are `<date>/<HEX>.<part>.des`.
 */
export function shardKey(loc: Pick<ShardLocation, 'dateDir' | 'shardHex'>, part = 0): string {
  return part === 0 ? `${loc.dateDir}/${loc.shardHex}.des` : `${loc.dateDir}/${loc.shardHex}.${part}.des`
}

/** Key of a BigFile in the nested layout: `<date>/<prefix>/<sha256>`. */
export function bigfileKey(dateDir: string, sha256: string, prefix = '_bigFiles'): string {
  return `${dateDir}/${prefix}/${sha256}`
}

/** Key of shard `n` in the reference packer's flat layout: `<date>_<HEX>_<NNNN>.des`. */
export function flatShardKey(loc: Pick<ShardLocation, 'dateDir' | 'shardHex'>, n: number): string {
  return `${loc.dateDir}_${loc.shardHex}_${String(n).padStart(4, '0')}.des`
}

/** Key of a BigFile in the flat layout: `<prefix>/<sha256>` at the store root. */
export function flatBigfileKey(sha256: string, prefix = '_bigFiles'): string {
  return `${prefix}/${sha256}`
}
