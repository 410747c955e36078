// A count of something held at once, taken and given back, with the takers
// that do not fit waiting in order: a pack run's inputs of the keys in hand
// (a local run packs many keys at a time, and a budget of inputs, not of
// keys, keeps memory the same whether a key has 16 files or 16,000), the
// large parts being written through a writer each, and the S3 upload bodies
// held in memory (storage/s3-upload.ts).

export class Budget {
  private free: number
  private readonly waiting: Array<{ n: number; go: () => void }> = []

  constructor(private readonly total: number) {
    this.free = total
  }

  /** Waits until `n` fit (more than the whole budget waits for all of it), then takes them; returns their release. */
  async take(n: number): Promise<() => void> {
    const want = Math.min(Math.max(n, 1), this.total)
    if (this.waiting.length > 0 || this.free < want) await new Promise<void>((go) => this.waiting.push({ n: want, go }))
    else this.free -= want
    let released = false
    return () => {
      if (released) return
      released = true
      this.free += want
      this.wake()
    }
  }

  /** Lets waiting takers in, in order, while they fit. */
  private wake(): void {
    while (this.waiting.length > 0 && this.waiting[0].n <= this.free) {
      const next = this.waiting.shift()!
      this.free -= next.n
      next.go()
    }
  }
}
