// What each key of a store is, by its name alone: a shard part, a BigFile, a
// lock or temp file a writer leaves, or something else. The names a reader
// looks up come from src/store/layout.ts; these are their inverse.

import type { Layout } from '../config/env'
import { flatShardKey, shardKey } from '../store/layout'

/** A `.des` object at a name a reader looks up. */
export interface ShardName {
  type: 'shard'
  layout: Layout
  dateDir: string
  shardHex: string
  shardIndex: number
  /** 0 = the base shard; continuation (nested) or `_NNNN` (flat) number. */
  part: number
}

export type KeyKind =
  | ShardName
  | { type: 'bigfile'; layout: Layout; sha256: string }
  /** A `.des` object no reader ever looks up (bad date, hex, width or part). */
  | { type: 'misnamed'; why: string }
  /** A writer's lock (`<part>.lock`), kept between runs. */
  | { type: 'lock' }
  /** A writer's temp file (`.des-tmp-*.part`), left when one died. */
  | { type: 'temp' }
  | { type: 'other' }

/** Width of a shard hex: `max(1, floor(n_bits / 4))` digits (SPEC §1). */
export function hexWidth(nBits: number): number {
  return Math.max(1, Math.floor(nBits / 4))
}

/** The shard index a hex names, or null when routing would never write that hex. */
export function parseShardHex(hex: string, nBits: number): number | null {
  if (!/^[0-9A-F]+$/.test(hex)) return null
  const index = parseInt(hex, 16)
  if (index >= 2 ** nBits) return null
  return index.toString(16).toUpperCase().padStart(hexWidth(nBits), '0') === hex ? index : null
}

function isDate(d: string): boolean {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(d)
  if (!m) return false
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])]
  // setUTCFullYear, not Date.UTC: that one reads years 0–99 as 1900–1999.
  const t = new Date(0)
  t.setUTCFullYear(year, month - 1, day)
  return t.getUTCFullYear() === year && t.getUTCMonth() === month - 1 && t.getUTCDate() === day
}

const SHA256 = /^[0-9a-f]{64}$/

/** Classifies one key of a store written in `layout` with `nBits`. */
export function classifyKey(key: string, layout: Layout, nBits: number, bigfilesPrefix: string): KeyKind {
  const slash = key.lastIndexOf('/')
  const name = key.slice(slash + 1)
  const dir = slash < 0 ? '' : key.slice(0, slash)
  if (name.startsWith('.des-tmp-') && name.endsWith('.part')) return { type: 'temp' }
  if (name.endsWith('.lock')) return { type: 'lock' }
  if (layout === 'flat') {
    if (dir === bigfilesPrefix) return SHA256.test(name) ? { type: 'bigfile', layout, sha256: name } : { type: 'other' }
    if (!name.endsWith('.des')) return { type: 'other' }
    if (dir !== '') return { type: 'misnamed', why: 'the flat layout keeps shards at the top of the store' }
    const m = /^(\d{8})_([0-9A-Za-z]+)_(\d{4,})\.des$/.exec(name)
    if (!m) return { type: 'misnamed', why: 'not <YYYYMMDD>_<HEX>_<NNNN>.des' }
    return shardName(key, layout, m[1], m[2], Number(m[3]), nBits, (loc) => flatShardKey(loc, Number(m[3])))
  }
  const parts = key.split('/')
  if (parts.length === 3 && parts[1] === bigfilesPrefix) return SHA256.test(name) && isDate(parts[0]) ? { type: 'bigfile', layout, sha256: name } : { type: 'other' }
  if (!name.endsWith('.des')) return { type: 'other' }
  if (parts.length !== 2) return { type: 'misnamed', why: 'the nested layout keeps shards at <YYYYMMDD>/<HEX>.des' }
  const m = /^([0-9A-Za-z]+)(?:\.(\d+))?\.des$/.exec(name)
  if (!m) return { type: 'misnamed', why: 'not <HEX>.des or <HEX>.<part>.des' }
  const part = m[2] === undefined ? 0 : Number(m[2])
  return shardName(key, layout, parts[0], m[1], part, nBits, (loc) => shardKey(loc, part))
}

function shardName(key: string, layout: Layout, dateDir: string, hex: string, part: number, nBits: number, keyOf: (loc: { dateDir: string; shardHex: string }) => string): KeyKind {
  if (!isDate(dateDir)) return { type: 'misnamed', why: `${dateDir} is not a date (YYYYMMDD)` }
  const shardIndex = parseShardHex(hex, nBits)
  if (shardIndex === null) {
    return { type: 'misnamed', why: `${hex} is not a shard hex for n_bits ${nBits} (${hexWidth(nBits)} uppercase digits, below ${(2 ** nBits).toString(16).toUpperCase()})` }
  }
  // `5C.01.des` or `_00001` are never asked for: the part must be written as the layout writes it.
  const expected = Number.isSafeInteger(part) ? keyOf({ dateDir, shardHex: hex }) : undefined
  if (expected !== key) return { type: 'misnamed', why: expected ? `readers ask for this part as ${expected}` : 'its part number is out of range' }
  return { type: 'shard', layout, dateDir, shardHex: hex, shardIndex, part }
}

/**
 * Classifies a key of a store that readers look up in several layouts (a store
 * being converted, `DES_LAYOUT=nested,flat`): the first layout that reads it
 * as a shard or BigFile wins; a `.des` no layout reads is misnamed (in the
 * words of the first).
 */
export function classifyKeyIn(key: string, layouts: readonly Layout[], nBits: number, bigfilesPrefix: string): KeyKind {
  let first: KeyKind | undefined
  for (const layout of layouts) {
    const kind = classifyKey(key, layout, nBits, bigfilesPrefix)
    if (kind.type === 'shard' || kind.type === 'bigfile') return kind
    first ??= kind
  }
  return first ?? { type: 'other' }
}

/**
 * Whether readers look for objects under the folder `key` in one of
 * `layouts`: a nested store's date folder or its BigFile folder, a flat
 * store's BigFile folder.
 */
export function isStoreFolder(key: string, layouts: readonly Layout[], bigfilesPrefix: string): boolean {
  const parts = key.split('/')
  return layouts.some((layout) =>
    layout === 'flat' ? key === bigfilesPrefix : isDate(parts[0]) && (parts.length === 1 || (parts.length === 2 && parts[1] === bigfilesPrefix)),
  )
}

/**
 * The group a key is scanned with: a nested store's date folder (its shards
 * and BigFiles), a flat store's date (`YYYYMMDD_`), else the key's first
 * folder. Listings are sorted, so the keys of a group arrive together.
 */
export function groupOf(key: string, layouts: Layout | readonly Layout[]): string {
  if (layouts === 'flat' || (Array.isArray(layouts) && layouts.includes('flat'))) {
    const m = /^(\d{8})_/.exec(key)
    if (m) return m[1]
  }
  const slash = key.indexOf('/')
  return slash < 0 ? '' : key.slice(0, slash)
}
