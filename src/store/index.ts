// The store: (uid, created_at) → bytes, over any backend.

import type { DesConfig } from '../config/env'
import { DEFAULT_SHARD_RECHECK_MS } from '../config/defaults'
import { setPayloadCeiling } from '../native'
import { createSources } from '../storage'
import type { S3ClientOptions } from '../storage/s3-client'
import { Store } from './store'

export { Store, type Found, type BigfileStream, type StoreOptions } from './store'
export { IndexCache } from './index-cache'
export { PayloadCache } from './payload-cache'
export { openShard, type ShardHandle } from './shard'
export * from './layout'

/** A store over the backend the config names (zones file read and validated here). */
export function createStore(config: DesConfig, s3: S3ClientOptions = {}): Store {
  // Process-wide in the addon: every read of this process is bounded by it.
  setPayloadCeiling(config.maxPayloadBytes)
  // Its reads may be streamed to slow clients (des serve).
  const { sources, nBits } = createSources(config, { ...s3, pacedByReaders: true })
  return new Store({
    sources,
    nBits,
    layouts: config.readLayouts ?? [config.layout],
    bigfilesPrefix: config.bigfilesPrefix,
    indexCacheBytes: config.indexCacheBytes,
    payloadCacheBytes: config.payloadCacheBytes ?? 0,
    tailBytes: config.tailBytes,
    shardRecheckMs: config.shardRecheckMs ?? (config.backend === 'local' ? DEFAULT_SHARD_RECHECK_MS.local : DEFAULT_SHARD_RECHECK_MS.s3),
    checkBigfileRanges: config.checkBigfileRanges,
  })
}
