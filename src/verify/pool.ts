// At most `limit` tasks at a time, first come first served. A producer awaits
// `start`, so a listing never runs far ahead of the checks; tasks found while
// checking are queued with `spawn`.

export class Pool {
  private active = 0
  private readonly waiting: Array<() => void> = []
  private readonly running = new Set<Promise<void>>()

  constructor(readonly limit: number) {}

  private slot(): Promise<void> {
    if (this.active < this.limit) {
      this.active++
      return Promise.resolve()
    }
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  private release(): void {
    const next = this.waiting.shift()
    if (next) next() // the slot passes straight on
    else this.active--
  }

  private async runIn(task: () => Promise<void>): Promise<void> {
    try {
      await task()
    } finally {
      this.release()
    }
  }

  private track(p: Promise<void>): Promise<void> {
    this.running.add(p)
    void p.finally(() => this.running.delete(p))
    return p
  }

  /** Waits for a free slot and starts `task`; resolves once it has started, with its completion. */
  async start(task: () => Promise<void>, onError: (err: unknown) => void): Promise<{ done: Promise<void> }> {
    await this.slot()
    return { done: this.track(this.runIn(task).catch(onError)) }
  }

  /** Queues `task` for the next free slot; resolves when it has run. */
  spawn(task: () => Promise<void>, onError: (err: unknown) => void): Promise<void> {
    return this.track(
      this.slot()
        .then(() => this.runIn(task))
        .catch(onError),
    )
  }

  /** Waits for every task started or queued so far, and any they queue. */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running])
  }
}
