// Small local parts packed many per call (des-core `pack_parts`): the parts
// of many keys are filled on every core and committed together (their syncs
// overlapping), instead of an open, a fill and a stage through the addon for
// each part. A key of a few files costs its bytes, not those
// round trips (the per-key overhead of a run over thousands of keys).
//
// Parts wait here until the event loop turns (every key worker has queued
// what it has), then go to Rust in batches; three batches run at once, so
// one is filled on the cores while another's commit waits on the disk and
// the third's results come back to the run.

import { packParts, type PartFiles, type PartResult, type Prefetch, type ShardWriterOptions } from '../native'

/** Parts handed to Rust at once. */
export const BATCH_PARTS = 64
/** Batches in Rust at once. */
export const BATCHES_AT_ONCE = 3

interface Queued {
  part: PartFiles
  resolve(r: PartResult): void
  reject(err: unknown): void
}

export class PartBatch {
  private queue: Queued[] = []
  private running = 0
  private turnPending = false

  constructor(
    private readonly options: ShardWriterOptions,
    /** Payloads read ahead while the run was planned, taken by the batches. */
    private readonly prefetch?: Prefetch,
  ) {}

  /**
   * Packs one part on its own, now: for a part whose shard's turn another
   * writer held (`busy`), sent with `wait` once the caller holds no other
   * turn, so it can wait for that one.
   */
  packAlone(part: PartFiles): Promise<PartResult> {
    return packParts([part], this.options, this.prefetch).then(([r]) => r)
  }

  /** Packs one part with others; resolves once it is stored (or with its error). */
  pack(part: PartFiles): Promise<PartResult> {
    return new Promise<PartResult>((resolve, reject) => {
      this.queue.push({ part, resolve, reject })
      if (this.queue.length >= BATCH_PARTS) this.next()
      else this.atNextTurn()
    })
  }

  private atNextTurn(): void {
    if (this.turnPending) return
    this.turnPending = true
    setImmediate(() => {
      this.turnPending = false
      this.next()
    })
  }

  /** Sends the next batch when fewer than BATCHES_AT_ONCE are running. */
  private next(): void {
    if (this.running >= BATCHES_AT_ONCE || this.queue.length === 0) return
    const batch = this.queue.splice(0, BATCH_PARTS)
    this.running++
    packParts(
      batch.map((q) => q.part),
      this.options,
      this.prefetch,
    ).then(
      (results) => batch.forEach((q, i) => q.resolve(results[i])),
      (err: unknown) => batch.forEach((q) => q.reject(err)),
    ).finally(() => {
      this.running--
      if (this.queue.length >= BATCH_PARTS) this.next()
      else if (this.queue.length > 0) this.atNextTurn()
    })
  }
}
