// The lines of a stream, each kept only up to a bound: readline holds a line
// whole however long it grows (a line of 600 MB is past V8's longest string
// and crashed `des locate --stdin` with a RangeError).

/** What a line longer than the bound gives instead of its text (its bytes were skipped, not kept). */
export const TOO_LONG = Symbol('line too long')

const LF = 0x0a
const CR = 0x0d

/**
 * The lines of `input` as text, split where readline splits them (`\n`,
 * `\r\n` or a lone `\r`); TOO_LONG for one of more than `maxBytes` bytes.
 * Memory stays within `maxBytes` and a chunk however long the lines are.
 */
export async function* boundedLines(input: AsyncIterable<Buffer>, maxBytes: number): AsyncGenerator<string | typeof TOO_LONG> {
  let parts: Buffer[] = []
  let kept = 0
  let tooLong = false
  // The last break was a `\r`: a `\n` right after it ends no other line.
  let afterCR = false
  const add = (bytes: Buffer) => {
    if (tooLong || bytes.length === 0) return
    if (kept + bytes.length > maxBytes) {
      tooLong = true
      parts = []
      kept = 0
      return
    }
    parts.push(bytes)
    kept += bytes.length
  }
  const take = (): string | typeof TOO_LONG => {
    const line = tooLong ? TOO_LONG : Buffer.concat(parts, kept).toString('utf8')
    parts = []
    kept = 0
    tooLong = false
    return line
  }
  for await (const chunk of input) {
    let start = 0
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]
      if (b !== LF && b !== CR) continue
      const crlf = b === LF && afterCR && i === start
      afterCR = b === CR
      if (!crlf) {
        add(chunk.subarray(start, i))
        yield take()
      }
      start = i + 1
    }
    if (start < chunk.length) {
      add(chunk.subarray(start))
      afterCR = false
    }
  }
  if (kept > 0 || tooLong) yield take()
}
