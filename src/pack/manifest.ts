// The packer's manifest (SPEC §9): a JSON array of
// `{ uid, created_at, size_bytes, source_path, meta? }`, or the same objects as
// JSON lines. Read as a stream, entry by entry, so a manifest of millions of
// entries never sits in memory whole; every error names the line (and the uid
// when there is one).
//
// Hand-written rather than stream-json or @streamparser/json: those build each
// value token by token in JS and report no line numbers. Here a byte scanner
// only finds where each top-level entry starts and ends (strings, escapes,
// nesting), and V8's own JSON.parse reads the entry.

import { promises as fsp } from 'node:fs'
import { DesError } from '../errors'
import type { PackInput } from './types'

/** A parsed manifest: the inputs and, for each, the line it starts on. */
export interface Manifest {
  inputs: PackInput[]
  /** 1-based line of each input in the manifest text. */
  lines: number[]
}

/** One input of a manifest and how errors name it (`line 12`). */
export interface ManifestEntry {
  input: PackInput
  label: string
}

/** An entry longer than this is refused (a string that never closes would otherwise swallow the file). */
const MAX_ENTRY_BYTES = 16 * 1024 * 1024

/** The first of the names the object has (not undefined); no rest array: this runs for every entry. */
function field(obj: Record<string, unknown>, a: string, b: string, c?: string): unknown {
  if (obj[a] !== undefined) return obj[a]
  if (obj[b] !== undefined || c === undefined) return obj[b]
  return obj[c]
}

/** Checks one manifest object and turns it into a PackInput. */
export function manifestEntry(value: unknown, where: string): PackInput {
  const bad = (why: string) => new DesError('DES_BAD_ARG', `manifest ${where}: ${why}`)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('expected an object')
  const obj = value as Record<string, unknown>
  const uid = obj.uid
  if (typeof uid === 'number' && Number.isSafeInteger(uid) && uid >= 0) {
    // A number becomes its decimal string (SPEC §1).
  } else if (typeof uid !== 'string' || uid === '') throw bad('"uid" must be a non-empty string or a whole number')
  const uidText = String(uid)
  const badUid = (why: string) => bad(`uid ${JSON.stringify(uidText)}: ${why}`)
  const createdAt = field(obj, 'created_at', 'createdAt')
  if (typeof createdAt !== 'string' || createdAt.trim() === '') throw badUid('"created_at" must be an ISO-8601 string')
  const source = field(obj, 'source_path', 'source', 'file_location')
  if (typeof source !== 'string' || source === '') throw badUid('"source_path" must be a non-empty string (a local path or s3://bucket/key)')
  const size = field(obj, 'size_bytes', 'sizeBytes')
  if (size !== undefined && size !== null && !(typeof size === 'number' && Number.isSafeInteger(size) && size >= 0)) {
    throw badUid('"size_bytes" must be a whole number of bytes')
  }
  const meta = obj.meta
  if (meta !== undefined && meta !== null && (typeof meta !== 'object' || Array.isArray(meta))) throw badUid('"meta" must be a JSON object')
  return {
    uid: uidText,
    createdAt,
    source,
    ...(typeof size === 'number' ? { sizeBytes: size } : {}),
    ...(meta ? { meta: meta as Record<string, unknown> } : {}),
  }
}

const NL = 0x0a
const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const isSpace = (b: number) => b === 0x20 || b === NL || b === 0x0d || b === 0x09
const CLOSER: Record<number, number> = { 0x7b: 0x7d, 0x5b: 0x5d }
const BOM = [0xef, 0xbb, 0xbf]

/** Where the next `byte` is in `chunk` from `from`, or its length when there is none. */
function nextOf(chunk: Buffer, byte: number, from: number): number {
  const at = chunk.indexOf(byte, from)
  return at < 0 ? chunk.length : at
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function syntax(where: string): DesError {
  return new DesError('DES_BAD_ARG', `manifest is not valid JSON: ${where}`)
}

/**
 * Splits manifest bytes, fed in chunks of any size, into entries: the
 * elements of a top-level JSON array (each with the line it starts on) or
 * the non-blank lines of JSON lines. The format is told by the first byte
 * that is not white space (`[` or `{`).
 */
export class ManifestScanner {
  private mode: 'start' | 'array' | 'lines' | 'done' = 'start'
  private line = 1
  /** Entries seen so far (1-based number of the current one). */
  private entry = 0
  /** Bytes of a UTF-8 byte order mark matched at the very start (-1: none there). */
  private bomAt = 0
  // Array mode.
  private expect: 'first' | 'value' | 'comma' = 'first'
  private inEntry = false
  /** The entry is a bare scalar (number, true, ...): it ends at white space, `,` or `]`. */
  private bare = false
  private inString = false
  private escaped = false
  /** Closing brackets still expected inside the current entry. */
  private closers: number[] = []
  private entryLine = 0
  // Both modes: bytes of the current entry (or line) from earlier chunks.
  private pieces: Buffer[] = []
  private pieceBytes = 0

  constructor(private readonly emit: (input: PackInput, line: number) => void) {}

  /** Scans one chunk; throws DES_BAD_ARG at the first problem. */
  feed(chunk: Buffer): void {
    let from = 0
    if (this.mode === 'start') from = this.start(chunk, 0)
    if (this.mode === 'array') this.scanArray(chunk, from)
    else if (this.mode === 'lines') this.scanLines(chunk, from)
    else if (this.mode === 'done') this.scanAfter(chunk, from)
  }

  /** The input has ended: emits the last line, or throws if the array is not closed. */
  end(): void {
    if (this.mode === 'start') throw new DesError('DES_BAD_ARG', 'manifest is empty')
    if (this.mode === 'lines') {
      this.lineDone(Buffer.alloc(0), 0, 0)
      return
    }
    if (this.mode !== 'array') return
    if (this.inEntry && this.bare) {
      this.entryDone(Buffer.alloc(0), 0, 0)
    } else if (this.inEntry) {
      this.failEntry(Buffer.alloc(0), 0, 0)
    }
    throw syntax(`line ${this.line}: the manifest ends before its array is closed (after entry ${this.entry})`)
  }

  private start(chunk: Buffer, i: number): number {
    for (; i < chunk.length; i++) {
      const b = chunk[i]
      if (this.bomAt >= 0 && this.bomAt < 3 && b === BOM[this.bomAt]) {
        this.bomAt++
        continue
      }
      if (this.bomAt === 1 || this.bomAt === 2) throw new DesError('DES_BAD_ARG', 'manifest must be a JSON array of objects (or JSON lines)')
      this.bomAt = -1
      if (b === NL) this.line++
      else if (!isSpace(b)) {
        if (b === 0x5b) {
          this.mode = 'array'
          return i + 1
        }
        if (b === 0x7b) {
          this.mode = 'lines'
          return i
        }
        throw new DesError('DES_BAD_ARG', 'manifest must be a JSON array of objects (or JSON lines)')
      }
    }
    return i
  }

  private keep(chunk: Buffer, start: number, end: number): void {
    if (end <= start) return
    this.pieces.push(chunk.subarray(start, end))
    this.pieceBytes += end - start
    if (this.pieceBytes > MAX_ENTRY_BYTES) {
      const what = this.mode === 'lines' ? `line ${this.line}` : `line ${this.entryLine} (entry ${this.entry})`
      throw syntax(`${what}: an entry longer than ${MAX_ENTRY_BYTES} bytes`)
    }
  }

  private text(chunk: Buffer, start: number, end: number): string {
    if (this.pieces.length === 0) return chunk.toString('utf8', start, end)
    this.keep(chunk, start, end)
    const text = Buffer.concat(this.pieces, this.pieceBytes).toString('utf8')
    this.pieces = []
    this.pieceBytes = 0
    return text
  }

  private scanLines(chunk: Buffer, from: number): void {
    let start = from
    for (;;) {
      const nl = chunk.indexOf(NL, start)
      if (nl < 0) {
        this.keep(chunk, start, chunk.length)
        return
      }
      this.lineDone(chunk, start, nl)
      this.line++
      start = nl + 1
    }
  }

  private lineDone(chunk: Buffer, start: number, end: number): void {
    const raw = this.text(chunk, start, end)
    if (raw.trim() === '') return
    let value: unknown
    try {
      value = JSON.parse(raw)
    } catch (err) {
      throw new DesError('DES_BAD_ARG', `manifest line ${this.line} is not valid JSON: ${messageOf(err)}`)
    }
    this.entry++
    this.emit(manifestEntry(value, `line ${this.line}`), this.line)
  }

  private entryDone(chunk: Buffer, start: number, end: number): void {
    const raw = this.text(chunk, start, end)
    this.inEntry = false
    let value: unknown
    try {
      value = JSON.parse(raw)
    } catch (err) {
      throw syntax(`line ${this.entryLine} (entry ${this.entry}): ${messageOf(err)}`)
    }
    this.emit(manifestEntry(value, `line ${this.entryLine} (entry ${this.entry})`), this.entryLine)
  }

  /** The entry so far cannot be JSON (a stray bracket, a raw control character): JSON.parse says why. */
  private failEntry(chunk: Buffer, start: number, end: number): never {
    const raw = this.text(chunk, start, end)
    let why = 'not a JSON value'
    try {
      JSON.parse(raw)
    } catch (err) {
      why = messageOf(err)
    }
    throw syntax(`line ${this.entryLine} (entry ${this.entry}): ${why}`)
  }

  private scanArray(chunk: Buffer, from: number): void {
    let entryStart = this.inEntry ? from : -1
    const n = chunk.length
    // Most bytes of a manifest are inside strings: a string is skipped to its
    // next quote, backslash or newline, found natively (where each next one
    // is, kept while it lies ahead: a string of many escapes is not searched
    // again to its end after each one); any other control byte in a string
    // is JSON.parse's to refuse.
    let nextQuote = -1
    let nextBackslash = -1
    let nextNewline = -1
    for (let i = from; i < n; i++) {
      if (this.inString && !this.escaped) {
        if (nextQuote < i) nextQuote = nextOf(chunk, QUOTE, i)
        if (nextBackslash < i) nextBackslash = nextOf(chunk, BACKSLASH, i)
        if (nextNewline < i) nextNewline = nextOf(chunk, NL, i)
        i = Math.min(nextQuote, nextBackslash, nextNewline)
        if (i === n) break
      }
      const b = chunk[i]
      if (this.inString) {
        if (this.escaped) this.escaped = false
        else if (b === BACKSLASH) this.escaped = true
        else if (b === QUOTE) {
          this.inString = false
          if (this.closers.length === 0) {
            // A string entry: it ends with its quote.
            this.entryDone(chunk, entryStart, i + 1)
            this.expect = 'comma'
          }
        } else if (b < 0x20) this.failEntry(chunk, entryStart, i + 1)
        continue
      }
      if (b === NL) this.line++
      if (this.inEntry) {
        if (!this.bare) {
          if (b === QUOTE) this.inString = true
          else if (b === 0x7b || b === 0x5b) this.closers.push(CLOSER[b])
          else if (b === 0x7d || b === 0x5d) {
            if (this.closers.pop() !== b) this.failEntry(chunk, entryStart, i + 1)
            if (this.closers.length === 0) {
              this.entryDone(chunk, entryStart, i + 1)
              this.expect = 'comma'
            }
          }
          continue
        }
        if (!isSpace(b) && b !== COMMA && b !== 0x5d) continue
        this.entryDone(chunk, entryStart, i)
        this.expect = 'comma'
        // This byte ends the bare entry and is read again below as a separator.
      }
      if (isSpace(b)) continue
      if (this.expect === 'comma') {
        if (b === COMMA) this.expect = 'value'
        else if (b === 0x5d) {
          this.mode = 'done'
          this.scanAfter(chunk, i + 1)
          return
        } else throw syntax(`line ${this.line}: expected "," or "]" after entry ${this.entry}, found ${JSON.stringify(String.fromCharCode(b))}`)
        continue
      }
      if (b === 0x5d) {
        if (this.expect === 'first') {
          this.mode = 'done'
          this.scanAfter(chunk, i + 1)
          return
        }
        throw syntax(`line ${this.line}: an entry is expected after "," (entry ${this.entry}), found "]"`)
      }
      // An entry starts here.
      this.entry++
      this.entryLine = this.line
      this.inEntry = true
      entryStart = i
      this.bare = false
      if (b === QUOTE) this.inString = true
      else if (b === 0x7b || b === 0x5b) this.closers.push(CLOSER[b])
      else if (b === 0x7d || b === COMMA) this.failEntry(chunk, i, i + 1)
      else this.bare = true
    }
    if (this.inEntry) this.keep(chunk, entryStart, n)
  }

  private scanAfter(chunk: Buffer, from: number): void {
    for (let i = from; i < chunk.length; i++) {
      const b = chunk[i]
      if (b === NL) this.line++
      else if (!isSpace(b)) throw syntax(`line ${this.line}: text after the closing "]" of the array`)
    }
  }
}

/** Parses manifest text: a JSON array of objects, or one object per line. */
export function parseManifest(text: string): Manifest {
  const inputs: PackInput[] = []
  const lines: number[] = []
  const scanner = new ManifestScanner((input, line) => {
    inputs.push(input)
    lines.push(line)
  })
  scanner.feed(Buffer.from(text, 'utf8'))
  scanner.end()
  return { inputs, lines }
}

/**
 * Reads a manifest file as a stream of entries, a chunk at a time: memory
 * stays flat in the manifest's size. Throws DES_NOT_FOUND / DES_IO when the
 * file cannot be read, DES_BAD_ARG at the first bad entry (naming its line).
 */
export async function* readManifest(file: string): AsyncGenerator<ManifestEntry> {
  for await (const batch of readManifestBatches(file)) yield* batch
}

/**
 * `readManifest`, the entries of each chunk read as one array: a run of
 * thousands of entries takes a step of the stream per chunk, not per entry.
 */
export async function* readManifestBatches(file: string): AsyncGenerator<ManifestEntry[]> {
  let handle
  try {
    handle = await fsp.open(file, 'r')
  } catch (err) {
    throw new DesError((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'DES_NOT_FOUND' : 'DES_IO', `cannot read manifest ${file}: ${(err as Error).message}`)
  }
  let batch: ManifestEntry[] = []
  const scanner = new ManifestScanner((input, line) => batch.push({ input, label: `line ${line}` }))
  // The stream closes the file when it ends or is destroyed.
  const stream = handle.createReadStream({ highWaterMark: 256 * 1024 })
  try {
    for await (const chunk of stream) {
      scanner.feed(chunk as Buffer)
      if (batch.length > 0) {
        const out = batch
        batch = []
        yield out
      }
    }
    scanner.end()
    if (batch.length > 0) yield batch
  } catch (err) {
    if (err instanceof DesError) throw err
    throw new DesError('DES_IO', `cannot read manifest ${file}: ${(err as Error).message}`)
  } finally {
    stream.destroy()
  }
}

/**
 * About how many entries a manifest file holds, from its size (a manifest
 * entry is rarely under 100 bytes): sizes a spilled plan's files. Undefined
 * when the file cannot be read (readManifest then says why).
 */
export async function manifestEntriesHint(file: string): Promise<number | undefined> {
  try {
    return Math.ceil((await fsp.stat(file)).size / 100)
  } catch {
    return undefined
  }
}
