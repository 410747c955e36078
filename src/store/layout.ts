// Where shards and BigFiles live inside a store, in each layout:
// - nested (ours): `<date>/<HEX>.des`, continuations `<date>/<HEX>.<n>.des`,
//   BigFiles `<date>/_bigFiles/<sha256>`; the date is the UTC date.
// - flat (the reference packer's): `<date>_<HEX>_<NNNN>.des`, BigFiles in
//   `_bigFiles/<sha256>` at the root; the date is the timestamp's date as
//   written, in its own offset (SPEC §1, §5).

import type { Layout } from '../config/env'
import { DEFAULT_BIGFILES_PREFIX } from '../config/defaults'
import { locateShard, locateShards, type ShardLocation, type ShardRoute } from '../native'
import { canonicalTimestamp, readTimestamp } from './timestamp'

/**
 * Key of shard `part` of a location: part 0 is `<date>/<HEX>.des`, later parts
 * (written when `--max-shard-size` is reached) are `<date>/<HEX>.<part>.des`.
 */
export function shardKey(loc: Pick<ShardLocation, 'dateDir' | 'shardHex'>, part = 0): string {
  return part === 0 ? `${loc.dateDir}/${loc.shardHex}.des` : `${loc.dateDir}/${loc.shardHex}.${part}.des`
}

/** Key of a BigFile in the nested layout: `<date>/<prefix>/<sha256>`. */
export function bigfileKey(dateDir: string, sha256: string, prefix = DEFAULT_BIGFILES_PREFIX): string {
  return `${dateDir}/${prefix}/${sha256}`
}

/** Key of shard `n` in the reference packer's flat layout: `<date>_<HEX>_<NNNN>.des`. */
export function flatShardKey(loc: Pick<ShardLocation, 'dateDir' | 'shardHex'>, n: number): string {
  return `${loc.dateDir}_${loc.shardHex}_${String(n).padStart(4, '0')}.des`
}

/** Key of a BigFile in the flat layout: `<prefix>/<sha256>` at the store root. */
export function flatBigfileKey(sha256: string, prefix = DEFAULT_BIGFILES_PREFIX): string {
  return `${prefix}/${sha256}`
}

/**
 * The key prefix every shard of `dateDir` starts with in `layout` and no
 * shard of another date does (`<date>/` nested, `<date>_` flat): what a
 * listing of one date's shards asks for.
 */
export function shardDatePrefixIn(layout: Layout, dateDir: string): string {
  return layout === 'flat' ? `${dateDir}_` : `${dateDir}/`
}

/** Key of shard `part` of a location's chain in `layout`. */
export function shardKeyIn(layout: Layout, loc: Pick<ShardLocation, 'dateDir' | 'shardHex'>, part = 0): string {
  return layout === 'flat' ? flatShardKey(loc, part) : shardKey(loc, part)
}

/** Key of a BigFile written beside a shard of `dateDir` in `layout`. */
export function bigfileKeyIn(layout: Layout, dateDir: string, sha256: string, prefix = DEFAULT_BIGFILES_PREFIX): string {
  return layout === 'flat' ? flatBigfileKey(sha256, prefix) : bigfileKey(dateDir, sha256, prefix)
}

/** Folder (relative to the store root) that BigFiles of a shard of `dateDir` go to in `layout`. */
export function bigfileDirIn(layout: Layout, dateDir: string, prefix = DEFAULT_BIGFILES_PREFIX): string {
  return layout === 'flat' ? prefix : `${dateDir}/${prefix}`
}

/** A flat shard key split into its parts, or null for any other key. */
export function parseFlatShardKey(key: string): { dateDir: string; shardHex: string; part: number } | null {
  const m = /^(\d{8})_([0-9A-F]{1,4})_(\d{4,})\.des$/.exec(key)
  return m ? { dateDir: m[1], shardHex: m[2], part: Number(m[3]) } : null
}

/**
 * Routes a uid in `layout`: the shard index and hex are the same in every
 * layout; the date is the UTC date (nested) or the date as written (flat).
 * DES_BAD_ARG for a created_at that is not a timestamp.
 */
export function locateIn(layout: Layout, uid: string, createdAt: string, nBits: number): ShardLocation {
  const ts = readTimestamp(createdAt)
  const loc = locateShard(uid, ts.canonical, nBits)
  if (layout === 'nested') return loc
  return withDate(layout, loc, ts.writtenDate)
}

/**
 * `locateIn` of many rows in one call (a plan's batch of a manifest): each
 * row's route, or null where its createdAt is not a timestamp (`locateIn`
 * of that row throws the error).
 */
export function locateManyIn(layout: Layout, uids: string[], createdAts: string[], nBits: number): Array<ShardRoute | null> {
  if (layout === 'nested') return locateShards(uids, createdAts.map(canonicalTimestamp), nBits)
  const stamps = createdAts.map(readTimestamp)
  const routes = locateShards(
    uids,
    stamps.map((ts) => ts.canonical),
    nBits,
  )
  return routes.map((r, i) => r && { dateDir: stamps[i].writtenDate, shardIndex: r.shardIndex, shardHex: r.shardHex })
}

function withDate(layout: Layout, loc: ShardLocation, dateDir: string): ShardLocation {
  const at = { dateDir, shardHex: loc.shardHex }
  return { uid: loc.uid, dateDir, shardIndex: loc.shardIndex, shardHex: loc.shardHex, objectKey: shardKeyIn(layout, at, 0) }
}

const DECIMAL_DIGITS = /^\p{Nd}+$/u
const ASCII_DIGITS = /^[0-9]+$/
const DECIMAL_DIGIT = /\p{Nd}/u

/**
 * The uid's digits in ASCII when it is all decimal digits and not all ASCII
 * ones ("٤٥٦" is "456"), else undefined. The original routes a uid that
 * Python's `isdigit()` accepts by `int(uid)` (SPEC §1 (b)); ours routes only
 * ASCII digits so, and every other uid by its CRC. The flat shards the
 * original wrote hold such a uid where its ASCII digits route, and `des
 * convert` keeps it in that shard's nested key: readers look there too. A decimal digit's value is its distance from the zero of its
 * run (Unicode encodes decimal digits in runs of ten, from zero up).
 */
export function referenceDigits(uid: string): string | undefined {
  if (ASCII_DIGITS.test(uid) || !DECIMAL_DIGITS.test(uid)) return undefined
  let digits = ''
  for (const ch of uid) {
    const c = ch.codePointAt(0)!
    let back = 0
    while (c - back - 1 >= 0 && DECIMAL_DIGIT.test(String.fromCodePoint(c - back - 1))) back++
    digits += String(back % 10)
  }
  return digits
}

/** One place a file may be: a layout and its location under that layout's date rule. */
export interface Lookup {
  layout: Layout
  loc: ShardLocation
  /** The created_at asked for, when a find is given a place rather than the timestamp (its tombstones are keyed by it). */
  createdAt?: string
}

/**
 * Every place a (uid, created_at) may be stored, in the order a reader looks:
 * for each layout of `layouts` in turn, nested under the UTC date and then,
 * when the timestamp's own date differs, under the date as written (where
 * `des convert` puts the files of a flat store: a flat shard does not record
 * the offset its files were written with); flat under the date as written.
 */
export function lookupsFor(layouts: readonly Layout[], uid: string, createdAt: string, nBits: number): Lookup[] {
  const ts = readTimestamp(createdAt)
  const utc = locateShard(uid, ts.canonical, nBits)
  // Where the original's packer put a uid of other decimal digits (see referenceDigits), and
  // where `des convert` moves it in the nested layout (its flat key's shard, under the date as written).
  const digits = referenceDigits(uid)
  const theirs = digits === undefined ? undefined : { ...locateShard(digits, ts.canonical, nBits), uid }
  const other = theirs !== undefined && theirs.shardIndex !== utc.shardIndex ? theirs : undefined
  const out: Lookup[] = []
  for (const layout of layouts) {
    if (layout === 'nested') {
      out.push({ layout, loc: utc })
      if (ts.writtenDate !== utc.dateDir) out.push({ layout, loc: withDate(layout, utc, ts.writtenDate) })
      if (other) out.push({ layout, loc: withDate(layout, other, ts.writtenDate) })
    } else {
      out.push({ layout, loc: withDate(layout, utc, ts.writtenDate) })
      if (other) out.push({ layout, loc: withDate(layout, other, ts.writtenDate) })
    }
  }
  return out
}
