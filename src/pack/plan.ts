// What goes where: the inputs of one (date, shard) key, in manifest order
// (grouped by planner.ts), and, against the parts the key already has, which
// inputs are new, which replace an entry of an existing part, and which are
// already there (skipped).

import { DesError } from '../errors'
import type { ShardReader } from '../native'
import type { PackInput } from './types'
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
