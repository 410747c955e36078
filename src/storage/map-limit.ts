// Work over a list with a bounded number in flight.

/** Runs `f` over `items` with at most `limit` in flight; results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, f: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  let failed = false
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++
      try {
        out[i] = await f(items[i], i)
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  // Every worker stops before the first error is thrown: nothing is left in flight.
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker))
  for (const s of settled) if (s.status === 'rejected') throw s.reason
  return out
}
