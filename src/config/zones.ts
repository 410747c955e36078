// The multi-S3 zones file (SPEC §5), YAML or JSON, validated once at start-up:
// every shard index 0 .. 2^n_bits - 1 belongs to at most one zone. Indexes in
// no zone are allowed, as the reference allows them: they are listed in
// `uncovered` (a warning at start-up) and a read of one is not found.

import * as fs from 'node:fs'
import { DesError } from '../errors'
import { isEndpointUrl, isNBits, isRegionName, normalisePrefix, REGION_EXPECTED } from './checks'
import { MAX_N_BITS, MIN_N_BITS } from './defaults'
import { awsDefaultRegion, backendVar, type ExplicitNBits, type S3Settings } from './env'
import { parseYaml, whereParsingStopped } from './yaml'

export interface Zone {
  name: string
  /** Inclusive shard-index range. */
  start: number
  end: number
  s3: S3Settings
}

export interface ZonesConfig {
  nBits: number
  /** Sorted by `start`. */
  zones: Zone[]
  /** Inclusive ranges of shard indexes that no zone serves (empty when the zones cover every index). */
  uncovered: Array<{ start: number; end: number }>
}

function fail(file: string, why: string): DesError {
  return new DesError('DES_CONFIG', `zones file ${file}: ${why}`)
}

function int(file: string, v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw fail(file, `${what} must be a whole number, got ${JSON.stringify(v)}`)
  return v
}

/**
 * A text setting of a zone's s3 section, undefined when absent or null. Any
 * other type is refused: YAML reads `prefix: 2024` as a number, and taking
 * that for no prefix would read and write the zone's bucket root (the
 * original stops on it too).
 */
function zoneText(file: string, zone: string, s3: Record<string, unknown>, key: string): string | undefined {
  const v = s3[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw fail(file, `zone ${zone}: s3.${key} must be a string, got ${JSON.stringify(v)} (quote it in the file)`)
  return v
}

/** The n_bits of a zones file that gives none: the original reads such a file as 8, whatever DES_N_BITS says. */
const ZONES_DEFAULT_N_BITS = 8

/**
 * Parses and validates zones text (`file` names it in errors). The zones
 * file's n_bits is the one routing uses. `explicit` is an n_bits the rest
 * of the configuration sets on purpose (`DES_N_BITS`, `--n-bits`,
 * `packer.n_bits`), undefined when it is left at its default: one that
 * differs from the file's is refused, naming both, rather than one of them
 * silently winning. A file without n_bits is read as 8, as the original
 * reads it; with another n_bits set on purpose the store could have been
 * written either way, so that too is refused rather than guessed. A zone
 * without region_name takes the environment's region (`env`), as the
 * original's clients do.
 */
export function parseZones(text: string, file: string, explicit?: ExplicitNBits, env: Record<string, string | undefined> = process.env): ZonesConfig {
  let doc: any
  try {
    doc = parseYaml(text) // YAML is a superset of JSON
  } catch (err) {
    throw fail(file, `not valid YAML/JSON ${whereParsingStopped(err, text)}`)
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw fail(file, 'expected an object with n_bits and zones')
  if (doc.n_bits === undefined && explicit && explicit.nBits !== ZONES_DEFAULT_N_BITS) {
    throw fail(
      file,
      `it gives no n_bits, which the original reads as ${ZONES_DEFAULT_N_BITS}, while ${explicit.from} sets n_bits ${explicit.nBits}; write "n_bits: ${explicit.nBits}" into the zones file if the store was written with ${explicit.nBits}`,
    )
  }
  const zonesNBits = doc.n_bits === undefined ? ZONES_DEFAULT_N_BITS : int(file, doc.n_bits, 'n_bits')
  if (!isNBits(zonesNBits)) throw fail(file, `n_bits must be ${MIN_N_BITS}..${MAX_N_BITS}, got ${zonesNBits}`)
  if (explicit && explicit.nBits !== zonesNBits) {
    throw fail(
      file,
      `it routes with n_bits ${zonesNBits}, while ${explicit.from} sets n_bits ${explicit.nBits}; set them alike, or leave ${explicit.from} unset and the zones file decides`,
    )
  }
  if (!Array.isArray(doc.zones) || doc.zones.length === 0) throw fail(file, 'zones must be a non-empty list')
  const max = 2 ** zonesNBits - 1
  const names = new Set<string>()
  const zones: Zone[] = doc.zones.map((z: any, i: number) => {
    const name = typeof z?.name === 'string' && z.name.trim() ? z.name.trim() : ''
    if (!name) throw fail(file, `zone #${i + 1} has no name`)
    if (names.has(name)) throw fail(file, `zone name ${JSON.stringify(name)} appears twice`)
    names.add(name)
    const start = int(file, z.range?.start, `zone ${name}: range.start`)
    const end = int(file, z.range?.end, `zone ${name}: range.end`)
    if (start > end) throw fail(file, `zone ${name}: range.start ${start} is after range.end ${end}`)
    if (start < 0 || end > max) throw fail(file, `zone ${name}: range ${start}..${end} is outside 0..${max} (n_bits ${zonesNBits})`)
    const s3: Record<string, unknown> = z.s3 !== null && typeof z.s3 === 'object' && !Array.isArray(z.s3) ? z.s3 : {}
    const bucket = zoneText(file, name, s3, 'bucket')?.trim()
    if (!bucket) throw fail(file, `zone ${name}: s3.bucket is required`)
    const endpoint = zoneText(file, name, s3, 'endpoint_url')?.trim() || undefined
    if (endpoint && !isEndpointUrl(endpoint)) throw fail(file, `zone ${name}: s3.endpoint_url ${JSON.stringify(endpoint)} is not an http(s) URL`)
    const region = zoneText(file, name, s3, 'region_name')?.trim()
    if (region && !isRegionName(region)) throw fail(file, `zone ${name}: s3.region_name ${JSON.stringify(region)}: ${REGION_EXPECTED}`)
    const forcePathStyle = s3.force_path_style ?? Boolean(endpoint)
    if (typeof forcePathStyle !== 'boolean') throw fail(file, `zone ${name}: s3.force_path_style must be true or false, got ${JSON.stringify(forcePathStyle)}`)
    return {
      name,
      start,
      end,
      s3: {
        bucket,
        region: region || awsDefaultRegion(env),
        endpoint,
        prefix: normalisePrefix(zoneText(file, name, s3, 'prefix') ?? ''),
        forcePathStyle,
      },
    }
  })
  zones.sort((a, b) => a.start - b.start)
  const uncovered: ZonesConfig['uncovered'] = []
  let next = 0
  for (let i = 0; i < zones.length; i++) {
    const z = zones[i]
    if (i > 0 && z.start <= zones[i - 1].end) {
      throw fail(file, `zones ${zones[i - 1].name} (${zones[i - 1].start}..${zones[i - 1].end}) and ${z.name} (${z.start}..${z.end}) overlap`)
    }
    if (z.start > next) uncovered.push({ start: next, end: z.start - 1 })
    next = z.end + 1
  }
  if (next <= max) uncovered.push({ start: next, end: max })
  return { nBits: zonesNBits, zones, uncovered }
}

/** `0..3, 9` : the uncovered ranges in words (for the start-up warning and not-found errors). */
export function describeRanges(ranges: ZonesConfig['uncovered']): string {
  return ranges.map((r) => (r.start === r.end ? String(r.start) : `${r.start}..${r.end}`)).join(', ')
}

/** Reads and validates a zones file (`explicit` and `env` as `parseZones` takes them). */
export function loadZones(file: string, explicit?: ExplicitNBits, env: Record<string, string | undefined> = process.env): ZonesConfig {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new DesError('DES_CONFIG', `DES_ZONES_CONFIG=${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  return parseZones(text, file, explicit, env)
}

/**
 * The zones that `des pack` (without --output-dir / --s3-bucket) and `des
 * migrate` write to: DES_ZONES_CONFIG read and validated when
 * DES_BACKEND=multi_s3 (its n_bits routes; one set on purpose elsewhere,
 * `explicit`, must agree with it: see `parseZones`); undefined for the
 * other backends.
 */
export function writeZonesFromEnv(explicit: ExplicitNBits | undefined, env: Record<string, string | undefined> = process.env): { file: string; zones: ZonesConfig } | undefined {
  if (backendVar(env) !== 'multi_s3') return undefined
  const file = env.DES_ZONES_CONFIG?.trim()
  if (!file) throw new DesError('DES_CONFIG', 'DES_ZONES_CONFIG is required for DES_BACKEND=multi_s3')
  return { file, zones: loadZones(file, explicit, env) }
}
