// Parts of a local run made durable together: each part is staged (written,
// its turn on the shard kept, nothing synced nor put in place yet) and a
// group of them is committed at once: their syncs started together and
// overlapping, then each part renamed into place or its footer rewritten,
// then one sync per folder (des-core `writer::commit`). A part counts as
// stored only when its group's commit has returned it.

import { DesError } from '../errors'
import { decodeError, StagedGroup, type ShardWriter, type ShardWriteSummary } from '../native'

/** Parts staged before a group is committed: bounds the turns and files held open. */
export const GROUP_PARTS = 64
/**
 * Files in the parts staged before a group is committed: a part is reported
 * (and what the run kept of its inputs let go) only once committed, so 64
 * parts of thousands of files each would hold hundreds of thousands.
 */
export const GROUP_FILES = 8_192

interface Waiter {
  resolve(s: ShardWriteSummary): void
  reject(err: unknown): void
}

export class CommitGroup {
  private readonly native = new StagedGroup()
  /** By shard path; set before a part is staged, so every committed part finds its waiter. */
  private readonly waiting = new Map<string, Waiter>()
  private committing: Promise<void> = Promise.resolve()
  /** Files in the parts staged since the last commit. */
  private files = 0

  /** True while a part at `file` is staged or being staged: its writer holds the shard's turn. */
  holds(file: string): boolean {
    return this.waiting.has(file)
  }

  /**
   * Stages `writer`'s part at `file`, which adds `files` files. Resolves once
   * staged (committing the group when it is full), with `done`: the part's
   * summary once committed.
   */
  async stage(writer: ShardWriter, file: string, files: number): Promise<{ done: Promise<ShardWriteSummary> }> {
    let waiter!: Waiter
    const done = new Promise<ShardWriteSummary>((resolve, reject) => (waiter = { resolve, reject }))
    this.waiting.set(file, waiter)
    try {
      await writer.stageInto(this.native)
    } catch (err) {
      this.waiting.delete(file)
      throw err
    }
    this.files += files
    if (this.native.size >= GROUP_PARTS || this.files >= GROUP_FILES) await this.commit()
    return { done }
  }

  /** Commits every part staged so far. */
  commit(): Promise<void> {
    this.files = 0
    this.committing = this.committing.then(async () => {
      if (this.native.size === 0) return
      for (const o of await this.native.commit()) {
        const waiter = this.waiting.get(o.path)
        this.waiting.delete(o.path)
        if (!waiter) continue
        if (o.summary) waiter.resolve(o.summary)
        else waiter.reject(decodeError(new Error(o.error ?? 'commit failed')))
      }
    })
    return this.committing.catch((err) => {
      // The commit itself failed: every part it held is unstored.
      const e = err instanceof DesError ? err : new DesError('DES_IO', `commit failed: ${(err as Error).message}`)
      for (const w of this.waiting.values()) w.reject(e)
      this.waiting.clear()
      throw e
    })
  }
}
