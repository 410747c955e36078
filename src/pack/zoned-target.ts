// Packing into zones (DES_BACKEND=multi_s3, SPEC §5): each (date, shard) key
// goes to the zone whose range holds its shard index, written there exactly as
// an `--s3-bucket` run writes it (S3Target: the zone's bucket and prefix,
// BigFiles beside the shard). A key whose index no zone serves is refused
// before anything is read or written (`refuses`, checked by the packer for
// every key of the plan first).

import type { S3Client } from '@aws-sdk/client-s3'
import type { ShardReader } from '../native'
import type { ZonesConfig } from '../config/zones'
import type { S3Settings } from '../config/env'
import { describeRanges } from '../config/zones'
import { DesError } from '../errors'
import type { FillContext } from './fill'
import type { PartWrite, ShardSink } from './local-target'
import type { KeyPlan, PlannedInput } from './plan'
import type { S3Target } from './s3-target'
import { S3_KEYS_AT_ONCE } from '../config/defaults'
import type { PackZone } from './types'

export type { PackZone }


/** A zone's S3 writer. */
export interface ZoneSink {
  zone: Pick<PackZone, 'name' | 'start' | 'end'>
  sink: S3Target
}

export class ZonedTarget implements ShardSink {
  /** Every zone is an S3 bucket: as many keys at once as one. */
  readonly keysAtOnce = S3_KEYS_AT_ONCE
  /** The sink of every shard index; a hole where no zone serves it. */
  private readonly byIndex: Array<ZoneSink | undefined>

  constructor(
    readonly nBits: number,
    private readonly zones: ZoneSink[],
  ) {
    this.byIndex = new Array(2 ** nBits)
    for (const z of zones) for (let s = z.zone.start; s <= z.zone.end; s++) this.byIndex[s] = z
  }

  /** Why a key of `shardIndex` cannot be written (in no zone), or undefined. */
  refuses(shardIndex: number): string | undefined {
    if (this.byIndex[shardIndex] !== undefined) return undefined
    return `which no zone of the zones file serves (zones: ${this.zones.map((z) => `${z.zone.name} ${z.zone.start}..${z.zone.end}`).join(', ')}; uncovered: ${describeRanges(this.uncovered())})`
  }

  private uncovered(): Array<{ start: number; end: number }> {
    const out: Array<{ start: number; end: number }> = []
    for (let s = 0; s < this.byIndex.length; s++) {
      if (this.byIndex[s] !== undefined) continue
      const last = out[out.length - 1]
      if (last && last.end === s - 1) last.end = s
      else out.push({ start: s, end: s })
    }
    return out
  }

  /** The zone of a key (by its shard index, the hex of the key). */
  zoneOf(plan: Pick<KeyPlan, 'shardHex'>): ZoneSink {
    const shardIndex = Number.parseInt(plan.shardHex, 16)
    const z = this.byIndex[shardIndex]
    if (z === undefined) throw new DesError('DES_CONFIG', `shard ${plan.shardHex} (index ${shardIndex}) is in no zone of the zones file`)
    return z
  }

  /** Every zone's bucket answers. */
  async check(): Promise<void> {
    for (const z of this.zones) {
      try {
        await z.sink.check()
      } catch (err) {
        if (err instanceof DesError) err.message = `zone ${z.zone.name}: ${err.message}`
        throw err
      }
    }
  }

  /** Each zone's sink is told of its own keys (a key in no zone is refused before this). */
  expect(keys: Iterable<Pick<KeyPlan, 'dateDir' | 'shardHex'>>): void {
    const byZone = new Map<S3Target, Array<Pick<KeyPlan, 'dateDir' | 'shardHex'>>>()
    for (const k of keys) {
      const sink = this.zoneOf(k).sink
      const own = byZone.get(sink)
      if (own) own.push(k)
      else byZone.set(sink, [k])
    }
    for (const [sink, own] of byZone) sink.expect(own)
  }

  existingParts(plan: KeyPlan): Promise<ShardReader[]> {
    return this.zoneOf(plan).sink.existingParts(plan)
  }

  writePart(plan: KeyPlan, part: number, items: PlannedInput[], maxShardSize: number | undefined, ctx: FillContext): Promise<PartWrite> {
    return this.zoneOf(plan).sink.writePart(plan, part, items, maxShardSize, ctx)
  }
}

/**
 * The pack target of a zones file: one S3 client per zone, made by
 * `client` from the zone's settings (endpoint, region, path style).
 */
export function zonesPackTarget(zones: ZonesConfig, client: (s3: S3Settings) => S3Client): { kind: 'zones'; nBits: number; zones: PackZone[] } {
  return {
    kind: 'zones',
    nBits: zones.nBits,
    zones: zones.zones.map((z) => ({ name: z.name, start: z.start, end: z.end, bucket: z.s3.bucket, prefix: z.s3.prefix, client: client(z.s3) })),
  }
}
