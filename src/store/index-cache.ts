// Parsed shard indexes kept in memory, bounded in bytes (DES_INDEX_CACHE_BYTES),
// with single-flight loads: concurrent cold reads of one shard share one fetch,
// and concurrent re-checks of one shard share one re-check.

import { LRUCache } from 'lru-cache'
import { indexCacheTotal } from '../metrics'

/** What the cache weighs an entry at: its index bytes plus a fixed overhead. */
export interface Weighed {
  readonly weight: number
}

const HIT = indexCacheTotal.labels('hit')
const MISS = indexCacheTotal.labels('miss')

export class IndexCache<V extends Weighed> {
  private readonly lru: LRUCache<string, V> | undefined
  private readonly loading = new Map<string, Promise<V>>()
  private readonly rechecking = new Map<string, Promise<V>>()

  /**
   * `maxBytes` 0 turns caching off (loads are still shared). `onDrop` hears
   * of every value the cache lets go (evicted, replaced or deleted).
   */
  constructor(maxBytes: number, onDrop?: (v: V) => void) {
    this.lru =
      maxBytes > 0
        ? new LRUCache<string, V>({ maxSize: maxBytes, sizeCalculation: (v) => Math.max(1, v.weight), dispose: onDrop && ((v) => onDrop(v)) })
        : undefined
  }

  /** The cached value (counted as a hit), or undefined (counted as a miss). */
  cached(key: string): V | undefined {
    const v = this.lru?.get(key)
    if (v === undefined) MISS.inc()
    else HIT.inc()
    return v
  }

  /** Loads a value not in the cache; callers asking for the same key meanwhile share the load. Failures are not cached. */
  load(key: string, loader: () => Promise<V>): Promise<V> {
    let p = this.loading.get(key)
    if (!p) {
      p = loader().then(
        (v) => {
          this.loading.delete(key)
          this.lru?.set(key, v)
          return v
        },
        (err) => {
          this.loading.delete(key)
          throw err
        },
      )
      this.loading.set(key, p)
    }
    return p
  }

  /**
   * Re-checks a cached value (`check(old)` resolves to `old` when unchanged
   * or to a fresh value); concurrent re-checks of one key share one call.
   */
  recheck(key: string, old: V, check: (old: V) => Promise<V>): Promise<V> {
    let p = this.rechecking.get(key)
    if (!p) {
      p = check(old).then(
        (v) => {
          this.rechecking.delete(key)
          if (v !== old) this.lru?.set(key, v)
          return v
        },
        (err) => {
          this.rechecking.delete(key)
          // An object gone since it was cached: forget it.
          if ((err as { code?: string })?.code === 'DES_NOT_FOUND') this.delete(key)
          throw err
        },
      )
      this.rechecking.set(key, p)
    }
    return p
  }

  delete(key: string): void {
    this.lru?.delete(key)
  }

  clear(): void {
    this.lru?.clear()
  }

  /** Entries and bytes held. */
  get stats(): { entries: number; bytes: number } {
    return { entries: this.lru?.size ?? 0, bytes: this.lru?.calculatedSize ?? 0 }
  }
}
