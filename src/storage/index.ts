// Builds the store's byte sources from the typed config.

import { explicitNBits, type DesConfig } from '../config/env'
import { loadZones } from '../config/zones'
import { DesError } from '../errors'
import { LocalSource } from './local'
import { S3Source } from './s3'
import { createS3Client, type S3ClientOptions } from './s3-client'
import { singleSource, type ShardSources } from './source'
import { warnUncovered, zonedS3Sources } from './zones'

export { LocalSource } from './local'
export { S3Source, s3Error } from './s3'
export { ZonedSources, zonedS3Sources } from './zones'
export * from './source'

/**
 * The sources of `config.backend`, plus the n_bits that routing must use: a
 * zones file's own (one set on purpose that differs is refused).
 */
export function createSources(config: DesConfig, opts: S3ClientOptions = {}): { sources: ShardSources; nBits: number } {
  switch (config.backend) {
    case 'local':
      return { sources: singleSource(new LocalSource(config.baseDir)), nBits: config.nBits }
    case 's3': {
      if (!config.s3) throw new DesError('DES_CONFIG', 'DES_S3_BUCKET is required for DES_BACKEND=s3')
      return { sources: singleSource(new S3Source(createS3Client(config.s3, opts), config.s3, 's3')), nBits: config.nBits }
    }
    case 'multi_s3': {
      if (!config.zonesConfig) throw new DesError('DES_CONFIG', 'DES_ZONES_CONFIG is required for DES_BACKEND=multi_s3')
      const zones = loadZones(config.zonesConfig, explicitNBits(config))
      warnUncovered(config.zonesConfig, zones)
      return { sources: zonedS3Sources(zones, opts), nBits: zones.nBits }
    }
  }
}
