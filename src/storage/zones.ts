// Multi-S3: shard indexes split into zones, each zone its own bucket (and
// possibly its own endpoint). The zones file is validated in config/zones.ts.

import { describeRanges, type ZonesConfig } from '../config/zones'
import { DesError } from '../errors'
import type { S3ClientOptions } from './s3-client'
import { createS3Client } from './s3-client'
import { S3Source } from './s3'
import type { ByteSource, ShardSources } from './source'

export class ZonedSources implements ShardSources {
  readonly backend = 'multi_s3'
  /** Source of every shard index, looked up by index (2^n_bits entries at most 65536); a hole where no zone serves it. */
  private readonly byIndex: Array<ByteSource | undefined>
  private readonly sources: ByteSource[]

  constructor(
    readonly zones: ZonesConfig,
    makeSource: (zone: ZonesConfig['zones'][number]) => ByteSource,
  ) {
    this.sources = zones.zones.map(makeSource)
    this.byIndex = new Array(2 ** zones.nBits)
    zones.zones.forEach((z, i) => {
      for (let s = z.start; s <= z.end; s++) this.byIndex[s] = this.sources[i]
    })
  }

  /** The zone's source; DES_NOT_FOUND for an index the zones file leaves uncovered (the reference answers 404 too). */
  sourceFor(shardIndex: number): ByteSource {
    const source = this.byIndex[shardIndex]
    if (source === undefined) {
      throw new DesError('DES_NOT_FOUND', `shard index ${shardIndex} is in no zone of the zones file (uncovered: ${describeRanges(this.zones.uncovered)})`)
    }
    return source
  }

  all(): ByteSource[] {
    return this.sources
  }
}

/** One S3 client and source per zone. */
export function zonedS3Sources(zones: ZonesConfig, opts: S3ClientOptions = {}): ZonedSources {
  return new ZonedSources(zones, (z) => new S3Source(createS3Client(z.s3, opts), z.s3, 'multi_s3'))
}

/**
 * A zones file's uncovered indexes, said once at start-up (accepted, as the
 * reference accepts them: a read of such an index is not found).
 */
export function warnUncovered(file: string, zones: ZonesConfig): void {
  if (zones.uncovered.length === 0) return
  process.emitWarning(`zones file ${file}: shard indexes ${describeRanges(zones.uncovered)} are in no zone; files routed there are not found`, {
    code: 'DES_ZONES_UNCOVERED',
  })
}
