// What goes where: inputs grouped by (date, shard) key in manifest order, and,
// against the parts a key already has, which inputs are new, which replace an
// entry of an existing part, and which are already there (skipped).

import { DesError } from '../errors'
import { locateShard, type ShardReader } from '../native'
import type { PackInput } from './index'
import type { PackFile } from '../native'

/** One input with what validation learnt about it. */
export interface PlannedInput {
  input: PackInput
  /** Position in the manifest / input array. */
  index: number
  /** How errors name it: `line 12` or `input 3`. */
  label: string
  dateDir: string
  shardHex: string
  /** Size of the source in bytes (checked against `sizeBytes`). */
  size: number
  /** True for an s3:// source. */
  onS3: boolean
  /**
   * The file as `addFiles` takes it, supplied by the caller instead of read
   * from `input.source` (`des convert`: a payload decoded from another shard,
   * its meta as stored); held in memory chunk by chunk like s3:// sources.
   */
  load?: () => Promise<PackFile>
}

/** All inputs of one (date, shard) key, in manifest order. */
export interface KeyPlan {
  dateDir: string
  shardHex: string
  items: PlannedInput[]
}

/** "uid "x" (line 3)": how an error names an input. */
export function named(p: Pick<PlannedInput, 'label'> & { input: Pick<PackInput, 'uid'> }): string {
  return `uid ${JSON.stringify(p.input.uid)} (${p.label})`
}

/**
 * Routes every input and groups them by key (keys in order of first
 * appearance). Refuses a bad date or n_bits and a uid given twice.
 */
export function planInputs(inputs: PackInput[], nBits: number, label: (i: number) => string): { keys: KeyPlan[]; items: PlannedInput[] } {
  const byKey = new Map<string, KeyPlan>()
  const seen = new Map<string, number>()
  const items: PlannedInput[] = []
  inputs.forEach((input, index) => {
    const where = label(index)
    if (typeof input?.uid !== 'string' || input.uid === '') throw new DesError('DES_BAD_ARG', `${where}: uid must be a non-empty string`)
    const p = { input, label: where }
    if (typeof input.source !== 'string' || input.source === '') throw new DesError('DES_BAD_ARG', `${named(p)}: source must be a local path or s3://bucket/key`)
    if (input.sizeBytes !== undefined && !(Number.isSafeInteger(input.sizeBytes) && input.sizeBytes >= 0)) {
      throw new DesError('DES_BAD_ARG', `${named(p)}: sizeBytes must be a whole number of bytes, got ${input.sizeBytes}`)
    }
    const before = seen.get(input.uid)
    if (before !== undefined) {
      throw new DesError('DES_DUPLICATE', `duplicate uid ${JSON.stringify(input.uid)}: ${label(before)} and ${where}`)
    }
    seen.set(input.uid, index)
    let loc
    try {
      loc = locateShard(input.uid, String(input.createdAt), nBits)
    } catch (err) {
      throw new DesError('DES_BAD_ARG', `${named(p)}: created_at ${JSON.stringify(input.createdAt)}: ${err instanceof Error ? err.message : String(err)}`)
    }
    const onS3 = input.source.length > 5 && /^s3:\/\//i.test(input.source)
    const item: PlannedInput = { input, index, label: where, dateDir: loc.dateDir, shardHex: loc.shardHex, size: input.sizeBytes ?? -1, onS3 }
    items.push(item)
    const key = `${loc.dateDir}/${loc.shardHex}`
    let plan = byKey.get(key)
    if (!plan) {
      plan = { dateDir: loc.dateDir, shardHex: loc.shardHex, items: [] }
      byKey.set(key, plan)
    }
    plan.items.push(item)
  })
  return { keys: [...byKey.values()], items }
}

/** What to do with a key's inputs given the parts it already has. */
export interface PartAssignment {
  /** Inputs not in any part: they go to the last part, then new ones. */
  fresh: PlannedInput[]
  /** `--replace`: inputs whose uid is in part `n`, replaced there. */
  replacements: Map<number, PlannedInput[]>
  /** `skipExisting`: inputs already stored with the same size. */
  skipped: PlannedInput[]
}

/**
 * Sorts a key's inputs against its existing parts (readers in part order). A
 * uid already stored is skipped (skipExisting, same size), replaced in its part
 * (replace), or refused.
 */
export function assignToParts(items: PlannedInput[], parts: Array<ShardReader | null>, opts: { replace?: boolean; skipExisting?: boolean }): PartAssignment {
  const out: PartAssignment = { fresh: [], replacements: new Map(), skipped: [] }
  for (const item of items) {
    const part = parts.findIndex((r) => r?.has(item.input.uid))
    if (part < 0) {
      out.fresh.push(item)
      continue
    }
    const entry = parts[part]!.entry(item.input.uid)!
    if (opts.skipExisting && entry.size === item.size) {
      out.skipped.push(item)
    } else if (opts.replace) {
      const list = out.replacements.get(part) ?? []
      list.push(item)
      out.replacements.set(part, list)
    } else {
      const why = opts.skipExisting ? ` with a different size (${entry.size} bytes stored, ${item.size} given)` : ''
      throw new DesError('DES_DUPLICATE', `${named(item)} is already in its shard${why}; use --replace to overwrite it`)
    }
  }
  return out
}
