// Whether a store already holds shards of the original's flat layout
// (`20240501_01_0000.des` at its root). The original's configuration has no
// DES_LAYOUT, so a store it wrote, configured as it was, is taken for nested:
// a server then answers 404 for its files, and a writer puts nested shards
// beside them that neither the original nor a server reading flat finds.

import { DesError } from '../errors'
import type { ByteSource } from '../storage/source'
import { parseFlatShardKey } from './layout'

/** Objects of each source looked at for a flat shard. */
const FLAT_PROBE_OBJECTS = 100

/**
 * The key of a flat shard among the first objects at the root of each of
 * `sources`, or undefined. A source that cannot be listed (not there yet,
 * unreachable) says nothing here.
 */
export async function firstFlatShardKey(sources: ByteSource[]): Promise<string | undefined> {
  for (const source of sources) {
    let keys: string[]
    try {
      keys = await source.rootKeys(FLAT_PROBE_OBJECTS)
    } catch {
      continue
    }
    const flatKey = keys.find((k) => parseFlatShardKey(k))
    if (flatKey !== undefined) return flatKey
  }
  return undefined
}

/**
 * Refuses to write nested shards into a store of flat ones when nothing
 * chose the nested layout (`chosenBy` undefined: neither DES_LAYOUT nor the
 * command's own setting): the original's configuration, used as it is, would
 * otherwise split the store between two layouts without a word. `how` says
 * how this command sets the layout.
 */
export async function refuseUnchosenNestedBesideFlat(sources: ByteSource[], layout: string, chosenBy: string | undefined, how: string): Promise<void> {
  if (layout !== 'nested' || chosenBy !== undefined) return
  const flatKey = await firstFlatShardKey(sources)
  if (flatKey === undefined) return
  throw new DesError(
    'DES_CONFIG',
    `the store holds shards of the original's flat layout (${flatKey}), and no layout is set, so new shards would be nested beside them, where the original and a server reading DES_LAYOUT=flat do not find them: set ${how} flat to keep writing the original's layout, or nested to write nested ones on purpose (served with DES_LAYOUT=nested,flat until des convert has moved the flat ones)`,
  )
}
