// The packer's manifest (SPEC §9): a JSON array of
// `{ uid, created_at, size_bytes, source_path, meta? }`, or the same objects as
// JSON lines. Read as a stream, entry by entry, so a manifest of millions of
// entries never sits in memory whole; every error names the line (and the uid
// when there is one).
//
// Not stream-json or @streamparser/json: those build each value token by
// token in JS and report no line numbers. Here des-core's byte scanner only
// finds where each top-level entry starts and ends (strings, escapes,
// nesting), and V8's own JSON.parse reads the entries.

import { promises as fsp } from 'node:fs'
import { DesError, describe } from '../errors'
import { pythonNumberText, topLevelMember, uidOfNumber } from '../number-uid'
import { ManifestScan, type ManifestFound } from '../native'
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
  /** Bytes of the entry's text in the manifest: about what it holds in memory (a meta may be megabytes); counted by the plan's byte budget. */
  bytes?: number
}

/** The first of the names the object has (not undefined); no rest array: this runs for every entry. */
function field(obj: Record<string, unknown>, a: string, b: string, c?: string): unknown {
  if (obj[a] !== undefined) return obj[a]
  if (obj[b] !== undefined || c === undefined) return obj[b]
  return obj[c]
}

/**
 * Checks one manifest object and turns it into a PackInput. `line` and
 * `entry` (its number in an array, 0 in JSON lines) name it in errors;
 * `text` gives the entry's JSON text, read again only for a uid that is a
 * number.
 */
export function manifestEntry(value: unknown, line: number, entry: number, text?: () => string): PackInput {
  const bad = (why: string) => new DesError('DES_BAD_ARG', `manifest ${where(line, entry)}: ${why}`)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('expected an object')
  const obj = value as Record<string, unknown>
  const uid = obj.uid
  let uidText: string
  if (typeof uid === 'number') {
    // A number becomes its text as the original writes it (SPEC §1: str() of what Python's json reads).
    const raw = text === undefined ? undefined : topLevelMember(text(), 'uid')
    try {
      uidText = raw !== undefined ? pythonNumberText(raw) : uidOfNumber(uid)
    } catch (err) {
      throw bad(describe(err))
    }
  } else if (typeof uid === 'string' && uid !== '') uidText = uid
  else throw bad('"uid" must be a non-empty string or a number')
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
  const metaWhy = meta ? metaProblem(meta, text) : undefined
  if (metaWhy) throw badUid(metaWhy)
  // Built field by field: spreads would make two objects more per entry.
  const input: PackInput = { uid: uidText, createdAt, source }
  if (typeof size === 'number') input.sizeBytes = size
  if (meta) input.meta = meta as Record<string, unknown>
  return input
}

/**
 * The deepest nesting of objects and arrays a meta may have, itself the first:
 * des-core's JSON reader refuses a 128th level. Checked here so a run (and a
 * dry run) refuses it before anything is written.
 */
const MAX_META_DEPTH = 127

/**
 * Why `meta` cannot be stored as the manifest writes it, or undefined: it
 * nests deeper than MAX_META_DEPTH, or holds a number JSON.parse did not
 * keep (an integer past 2^53 comes back rounded, one out of range as
 * Infinity, which JSON.stringify writes as null), which would be stored
 * changed. A level at a time, not recursive: a manifest may nest 100,000 deep.
 * `text` gives the entry's JSON text, read only when a whole number past 2^53
 * is met: written as a float (6.02e23), it is one in Python's json too, kept
 * as JSON.parse keeps it; only an integer literal loses digits.
 */
function metaProblem(meta: object, text?: () => string): string | undefined {
  let lostIntegers: Set<number> | undefined
  let level: object[] = [meta]
  for (let depth = 1; level.length > 0; depth++) {
    if (depth > MAX_META_DEPTH) return `"meta" nests objects and arrays more than ${MAX_META_DEPTH} deep`
    const next: object[] = []
    for (const value of level) {
      for (const key in value) {
        const child = (value as Record<string, unknown>)[key]
        if (typeof child === 'number') {
          if (Number.isSafeInteger(child) || (Number.isFinite(child) && !Number.isInteger(child))) continue
          if (Number.isFinite(child) && text !== undefined && !(lostIntegers ??= integerLiteralsPastSafe(text())).has(child)) continue
          return `"meta" holds a number that would not be stored as written (at ${JSON.stringify(key)}): an integer past 2^53 or out of range; write it as a string`
        } else if (child !== null && typeof child === 'object') next.push(child)
      }
    }
    level = next
  }
  return undefined
}

/** The JSON strings and numbers of a text, in order (a string first, so digits inside one are not taken for a number). */
const STRING_OR_NUMBER = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g

/** What JSON.parse makes of each integer literal (no fraction, no exponent) of `json` that it cannot keep exactly. */
function integerLiteralsPastSafe(json: string): Set<number> {
  const lost = new Set<number>()
  for (const [token] of json.matchAll(STRING_OR_NUMBER)) {
    if (token[0] === '"' || /[.eE]/.test(token)) continue
    const n = Number(token)
    if (!Number.isSafeInteger(n)) lost.add(n)
  }
  return lost
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function syntax(where: string): DesError {
  return new DesError('DES_BAD_ARG', `manifest is not valid JSON: ${where}`)
}

const EMPTY = Buffer.alloc(0)

/**
 * Splits manifest bytes, fed in chunks of any size, into entries: the
 * elements of a top-level JSON array (each with the line it starts on) or
 * the non-blank lines of JSON lines. Where each entry starts and ends is
 * found by des-core's scanner (strings, escapes, nesting, the lines; a
 * byte loop here was the largest part of planning a small run); the entries
 * are parsed here, those of an array in one JSON.parse per chunk.
 */
export class ManifestScanner {
  private readonly scan = new ManifestScan()
  /** The bytes of the entry (or line) still open at the end of the last chunk. */
  private kept: Buffer = EMPTY

  /** `emit` gets each entry, the line it starts on, how later errors name it (`labelOf`), and the bytes of its text. */
  constructor(private readonly emit: (input: PackInput, line: number, label: string, bytes: number) => void) {}

  /** Scans one chunk; throws DES_BAD_ARG at the first problem. */
  feed(chunk: Buffer): void {
    const buf = this.kept.length > 0 ? Buffer.concat([this.kept, chunk]) : chunk
    const found = this.scan.feed(buf, this.kept.length)
    // A copy: a slice would keep the whole chunk alive.
    this.kept = found.keepFrom >= 0 ? Buffer.from(buf.subarray(found.keepFrom)) : EMPTY
    this.take(buf, found)
  }

  /** The input has ended: emits the last line, or throws if the array is not closed. */
  end(): void {
    const kept = this.kept
    this.kept = EMPTY
    this.take(kept, this.scan.end(kept))
  }

  /** Emits what was found, in order, then throws its problem, if any. */
  private take(buf: Buffer, found: ManifestFound): void {
    const spans = found.spans
    if (spans.length > 0) {
      // Entries of an array that are all objects: one parse.
      if (found.allObjects) this.emitArray(buf, spans)
      else this.emitEach(buf, spans)
    }
    const bad = found.badEntry
    if (bad) {
      let why = 'not a JSON value'
      try {
        JSON.parse(bad.text)
      } catch (err) {
        why = messageOf(err)
      }
      throw syntax(`line ${bad.line} (entry ${bad.entry}): ${why}`)
    }
    if (found.refused) throw new DesError('DES_BAD_ARG', found.refused)
  }

  /**
   * Entries of an array as one JSON array: the scanner found each object's
   * end as JSON.parse does (strings, escapes, nesting) and only commas and
   * white space between them, so the elements are the entries. Should the
   * text not parse, entry by entry finds the one that does not and says why.
   */
  private emitArray(buf: Buffer, spans: Uint32Array): void {
    const n = spans.length / 4
    let values: unknown[] | undefined
    try {
      values = JSON.parse(`[${buf.toString('utf8', spans[0], spans[spans.length - 3])}]`) as unknown[]
    } catch {
      values = undefined
    }
    if (!values || values.length !== n) {
      this.emitEach(buf, spans)
      return
    }
    for (let i = 0; i < n; i++) {
      const line = spans[i * 4 + 2]
      const entry = spans[i * 4 + 3]
      this.emit(manifestEntry(values[i], line, entry, () => buf.toString('utf8', spans[i * 4], spans[i * 4 + 1])), line, labelOf(line, entry), spans[i * 4 + 1] - spans[i * 4])
    }
  }

  /** The entries one by one: an element of the array (its number is not 0) or a line each. */
  private emitEach(buf: Buffer, spans: Uint32Array): void {
    for (let k = 0; k < spans.length; k += 4) {
      const [line, entry] = [spans[k + 2], spans[k + 3]]
      const raw = buf.toString('utf8', spans[k], spans[k + 1])
      // A line of other white space than JSON's (the scanner skips JSON's).
      if (entry === 0 && raw.trim() === '') continue
      let value: unknown
      try {
        value = JSON.parse(raw)
      } catch (err) {
        if (entry === 0) throw new DesError('DES_BAD_ARG', `manifest line ${line} is not valid JSON: ${messageOf(err)}`)
        throw syntax(`${where(line, entry)}: ${messageOf(err)}`)
      }
      this.emit(manifestEntry(value, line, entry, () => raw), line, labelOf(line, entry), spans[k + 1] - spans[k])
    }
  }
}

/** How errors name an entry: its line, and its number in an array (0 in JSON lines). */
function where(line: number, entry: number): string {
  return entry === 0 ? `line ${line}` : `line ${line} (entry ${entry})`
}

/**
 * How the packer's later errors name an entry, in parentheses after its uid
 * or beside another entry's: its line, and its number in an array (the
 * entries of a one-line array all start on line 1).
 */
function labelOf(line: number, entry: number): string {
  return entry === 0 ? `line ${line}` : `line ${line}, entry ${entry}`
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
  const scanner = new ManifestScanner((input, _line, label, bytes) => batch.push({ input, label, bytes }))
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
