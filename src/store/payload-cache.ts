// Decoded payloads of small inline entries, bounded in bytes
// (DES_PAYLOAD_CACHE_BYTES): a hot file is answered without a read and a
// decode. The bytes are kept in Rust (the native PayloadCache), outside the JS
// heap, are filled by the read itself off the event loop, and are copied out
// into buffers the caller owns (des serve reuses its own: see BufferPool).
// Keys are two numbers: the opened shard version (ShardHandle.id, new each
// time a shard is opened again) and the entry's offset in it, so bytes from
// an older version of a shard are never served for a newer one.

import { PayloadCache as NativePayloadCache, type KeepIn, type PayloadCacheStats } from '../native'
import { payloadCacheTotal } from '../metrics'

/** Payloads larger than this are not kept (they would push out many small ones). */
export const MAX_CACHED_PAYLOAD = 1024 * 1024

const HIT = payloadCacheTotal.labels('hit')
const MISS = payloadCacheTotal.labels('miss')

export class PayloadCache {
  private readonly native: NativePayloadCache | undefined

  /** `maxBytes` 0 turns the cache off. */
  constructor(maxBytes: number) {
    this.native = maxBytes > 0 ? new NativePayloadCache(maxBytes, MAX_CACHED_PAYLOAD) : undefined
  }

  get enabled(): boolean {
    return this.native !== undefined
  }

  /** Copies the payload of (`shard`, `offset`) into the start of `target`; its length, or -1 when absent or too big. */
  copyInto(shard: number, offset: number, target: Buffer): number {
    if (!this.native) return -1
    const n = this.native.copyInto(shard, offset, target)
    if (n < 0) MISS.inc()
    else HIT.inc()
    return n
  }

  /** What a read of shard version `shard` passes down so the payload it decodes is kept. */
  keepIn(shard: number): KeepIn | undefined {
    return this.native ? { cache: this.native, shard } : undefined
  }

  stats(): PayloadCacheStats | undefined {
    return this.native?.stats()
  }
}
