// Reusable response buffers for payloads answered from the payload cache.
// A Buffer made per response is external memory to V8: at thousands of hits a
// second that alone set off several full GCs a second. A pooled buffer is
// allocated once and handed back when its response is over ('close' comes
// after the last byte went to the socket, or after the socket is gone).

/** Smallest size class: 4 KiB (smaller payloads come from Node's own pool). */
const MIN_CLASS = 12
/** Largest size class: 1 MiB, the payload cache's entry limit. */
const MAX_CLASS = 20
/** Free buffers kept per size class; more are left to the GC. */
const KEEP_PER_CLASS = 64

export class BufferPool {
  private readonly free: Buffer[][] = []

  /** A buffer of at least `size` bytes (its contents are stale), or undefined above 1 MiB. */
  take(size: number): Buffer | undefined {
    const c = Math.max(MIN_CLASS, 32 - Math.clz32(Math.max(1, size - 1)))
    if (c > MAX_CLASS) return undefined
    return this.free[c]?.pop() ?? Buffer.allocUnsafeSlow(2 ** c)
  }

  /** Gives back a buffer from `take` once nothing reads it any more. */
  give(buf: Buffer): void {
    const list = (this.free[31 - Math.clz32(buf.length)] ??= [])
    if (list.length < KEEP_PER_CLASS) list.push(buf)
  }

  /** Free buffers held, for tests. */
  get held(): number {
    return this.free.reduce((n, l) => n + (l?.length ?? 0), 0)
  }
}
