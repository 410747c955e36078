// The store-wide verify: the roots of the configured store, and the scan.

import { explicitNBits, type DesConfig } from '../config/env'
import { loadZones } from '../config/zones'
import { DesError } from '../errors'
import { LocalSource } from '../storage/local'
import type { S3ClientOptions } from '../storage/s3-client'
import { keyReached } from '../storage/s3-key'
import type { ScrubRoot } from './scrub'

export { scrub, Scrub, statusOf, outcomeError, type ScrubOptions, type ScrubSummary, type ScrubProgress, type ScrubRoot, type ObjectReport, type Finding, type Severity } from './scrub'
export { checkShard, checkBigfile, type ShardCheck, type ShardProblem, type BigfileCheck } from './check'
export { classifyKey, groupOf, parseShardHex, hexWidth, type KeyKind, type ShardName } from './keys'

/**
 * What to list for the configured store, and the n_bits routing uses (a zones
 * file may fix it). Zones on one bucket and prefix are listed once, as one root
 * that owns all their ranges.
 */
export async function storeRoots(config: DesConfig, opts: S3ClientOptions = {}): Promise<{ roots: ScrubRoot[]; nBits: number }> {
  const all = { owns: () => true }
  if (config.backend === 'local') return { roots: [{ source: new LocalSource(config.baseDir), ...all }], nBits: config.nBits }
  // Loaded only for S3: a local verify should not pay for the AWS SDK.
  const { S3Source } = await import('../storage/s3')
  const { createS3Client } = await import('../storage/s3-client')
  switch (config.backend) {
    case 's3':
      if (!config.s3) throw new DesError('DES_CONFIG', 'DES_S3_BUCKET is required for DES_BACKEND=s3')
      return { roots: [{ source: new S3Source(createS3Client(config.s3, opts), config.s3, 's3'), ...all }], nBits: config.nBits }
    case 'multi_s3': {
      if (!config.zonesConfig) throw new DesError('DES_CONFIG', 'DES_ZONES_CONFIG is required for DES_BACKEND=multi_s3')
      const zones = loadZones(config.zonesConfig, explicitNBits(config))
      const { warnUncovered } = await import('../storage/zones')
      warnUncovered(config.zonesConfig, zones)
      const ownerOf = (i: number) => zones.zones.find((z) => z.start <= i && i <= z.end)?.name
      const byPlace = new Map<string, typeof zones.zones>()
      for (const z of zones.zones) {
        const place = `${z.s3.endpoint ?? ''}|${z.s3.bucket}|${z.s3.prefix}`
        byPlace.set(place, [...(byPlace.get(place) ?? []), z])
      }
      const places = [...byPlace.values()].map((group) => group[0].s3)
      const roots = [...byPlace.values()].map((group) => {
        const here = group[0].s3
        // Another zone's prefix inside this one (same endpoint and bucket): its keys are not this zone's.
        const others = places
          .filter((p) => p !== here && (p.endpoint ?? '') === (here.endpoint ?? '') && p.bucket === here.bucket)
          .flatMap((p) => prefixesWithin(here.prefix, p.prefix))
        return {
          zone: group.map((z) => z.name).join('+'),
          source: new S3Source(createS3Client(here, opts), here, 'multi_s3'),
          owns: (i: number) => group.some((z) => z.start <= i && i <= z.end),
          ownerOf,
          ...(others.length > 0 ? { others } : {}),
        }
      })
      return { roots, nBits: zones.nBits }
    }
  }
}

/**
 * Where the prefix `inner` lies within `outer`, relative to it: as sent (AWS
 * lists `/b/x` under '' as `/b/x`) and as a server that cleans paths stores
 * it (MinIO lists it as `b/x`); none when it is not within, or is `outer`.
 */
function prefixesWithin(outer: string, inner: string): string[] {
  const within = new Set<string>()
  if (inner !== outer && inner.startsWith(outer)) within.add(inner.slice(outer.length))
  const [o, i] = [keyReached(outer), keyReached(inner)]
  if (i !== o && i.startsWith(o)) within.add(i.slice(o.length))
  return [...within]
}
