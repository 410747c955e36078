// A count of something held at once, taken and given back, with the takers
// that do not fit waiting in order: a pack run's inputs of the keys in hand
// (a local run packs many keys at a time, and a budget of inputs, not of
// keys, keeps memory the same whether a key has 16 files or 16,000), the
// large parts being written through a writer each, and the S3 upload bodies
// held in memory (storage/s3-upload.ts), and the bodies of des serve's
// responses waiting to go out (serve/responder.ts).

export class Budget {
  private free: number
  private readonly waiting: Array<{ n: number; go: () => void }> = []

  constructor(private readonly total: number) {
    this.free = total
  }

  /** Waits until `n` fit (more than the whole budget waits for all of it), then takes them; returns their release. */
  async take(n: number): Promise<() => void> {
    const now = this.tryTake(n)
    if (now) return now
    const want = this.wanted(n)
    await new Promise<void>((go) => this.waiting.push({ n: want, go }))
    return this.releaseOf(want)
  }

  /** `take` without waiting: the release when `n` fit now (and nobody waits before), else undefined. */
  tryTake(n: number): (() => void) | undefined {
    const want = this.wanted(n)
    if (this.waiting.length > 0 || this.free < want) return undefined
    this.free -= want
    return this.releaseOf(want)
  }

  private wanted(n: number): number {
    return Math.min(Math.max(n, 1), this.total)
  }

  private releaseOf(want: number): () => void {
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
