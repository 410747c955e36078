// Decoded payloads of small inline entries, bounded in bytes
// (DES_PAYLOAD_CACHE_BYTES): a hot file is answered without a read and a
// decode. Keys name the shard and the entry's position and sizes, so bytes
// from an older version of a shard are never served for a newer one.

import { LRUCache } from 'lru-cache'
import { payloadCacheTotal } from '../metrics'

/** Payloads larger than this are not kept (they would push out many small ones). */
export const MAX_CACHED_PAYLOAD = 1024 * 1024

const HIT = payloadCacheTotal.labels('hit')
const MISS = payloadCacheTotal.labels('miss')

export class PayloadCache {
  private readonly lru: LRUCache<string, Buffer> | undefined

  /** `maxBytes` 0 turns the cache off. */
  constructor(maxBytes: number) {
    this.lru = maxBytes > 0 ? new LRUCache<string, Buffer>({ maxSize: maxBytes, sizeCalculation: (b) => Math.max(1, b.length) }) : undefined
  }

  get enabled(): boolean {
    return this.lru !== undefined
  }

  get(key: string): Buffer | undefined {
    if (!this.lru) return undefined
    const b = this.lru.get(key)
    if (b === undefined) MISS.inc()
    else HIT.inc()
    return b
  }

  set(key: string, payload: Buffer): void {
    if (this.lru && payload.length <= MAX_CACHED_PAYLOAD) this.lru.set(key, payload)
  }
}
