// Reading every entry of one opened shard, in the order its bytes lie: range
// reads of up to WINDOW bytes shared by neighbouring entries, each entry
// decoded and checked (checksum, decode, size) by the native reader. A window
// is dropped once all of its entries were taken, so memory holds a window or
// two however large the shard is.

import { createHash } from 'node:crypto'
import { DesError } from '../errors'
import type { EntryInfo } from '../native'
import type { ShardHandle } from '../store/shard'

/** Bytes one range read may span (more only for a single larger entry). */
const WINDOW = 8 << 20

interface Window {
  start: number
  end: number
  /** Entries of the window not taken yet. */
  left: number
  bytes?: Promise<Buffer>
}

/** sha256 hex of a buffer. */
export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

export class EntryReader {
  private readonly windowOf = new Map<string, Window>()
  /** Inline entries in the order their bytes lie. */
  readonly inline: EntryInfo[]

  constructor(readonly shard: ShardHandle) {
    const entries = shard.reader.entries()
    this.inline = entries.filter((e) => !e.isBigfile).sort((a, b) => (a.offset ?? 0) - (b.offset ?? 0))
    let w: Window | undefined
    for (const e of this.inline) {
      const start = e.offset ?? 0
      const end = start + e.storedSize
      if (w === undefined || end - w.start > WINDOW) {
        w = { start, end, left: 0 }
      }
      w.end = Math.max(w.end, end)
      w.left++
      this.windowOf.set(e.uid, w)
    }
  }

  /** The decoded, checked bytes of an inline entry of this shard. */
  async read(entry: EntryInfo): Promise<Buffer> {
    const w = this.windowOf.get(entry.uid)
    if (w === undefined) throw new DesError('DES_BAD_ARG', `uid ${JSON.stringify(entry.uid)} is not an inline entry of ${this.shard.key}`)
    w.bytes ??= this.shard.source.getRange(this.shard.key, w.start, w.end - w.start, 'payload', this.shard.etag)
    const bytes = await w.bytes
    if (--w.left === 0) w.bytes = undefined
    const at = (entry.offset ?? 0) - w.start
    try {
      return await this.shard.reader.decode(entry.uid, bytes.subarray(at, at + entry.storedSize))
    } catch (err) {
      if (err instanceof DesError) throw new DesError(err.code, `${this.shard.key}: ${err.message}`, { cause: err })
      throw err
    }
  }
}
