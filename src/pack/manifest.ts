// The packer's manifest (SPEC §9): a JSON array of
// `{ uid, created_at, size_bytes, source_path, meta? }`, or the same objects as
// JSON lines. Parsed and checked field by field; every error names the line
// (and the uid when there is one).

import { DesError } from '../errors'
import type { PackInput } from './index'

/** A parsed manifest: the inputs and, for each, the line it starts on. */
export interface Manifest {
  inputs: PackInput[]
  /** 1-based line of each input in the manifest text. */
  lines: number[]
}

function lineAt(text: string, offset: number): number {
  let line = 1
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++
  return line
}

/**
 * Offsets where each top-level element of a JSON array starts. The text must
 * already be known to parse; this only tracks nesting and strings.
 */
function elementStarts(text: string): number[] {
  const starts: number[] = []
  let depth = 0
  let inString = false
  let expectValue = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (inString) {
      if (c === '\\') i++
      else if (c === '"') inString = false
      continue
    }
    if (c === ' ' || c === '\n' || c === '\r' || c === '\t') continue
    if (depth === 1 && expectValue && c !== ']') {
      starts.push(i)
      expectValue = false
    }
    if (c === '"') inString = true
    else if (c === '[' || c === '{') {
      depth++
      if (depth === 1) expectValue = true
    } else if (c === ']' || c === '}') depth--
    else if (c === ',' && depth === 1) expectValue = true
  }
  return starts
}

/**
 * Where JSON.parse failed, as a line: from the message's position when the
 * engine gives one, else the first array element that does not parse alone.
 */
function syntaxLine(text: string, err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err)
  const m = /position (\d+)/.exec(msg)
  if (m) return `line ${lineAt(text, Number(m[1]))}: ${msg}`
  const starts = elementStarts(text)
  for (let i = 0; i < starts.length; i++) {
    const end = i + 1 < starts.length ? starts[i + 1] : text.lastIndexOf(']')
    const piece = text.slice(starts[i], end > starts[i] ? end : undefined).replace(/[\s,\]]*$/, '')
    try {
      JSON.parse(piece)
    } catch (e) {
      return `line ${lineAt(text, starts[i])} (entry ${i + 1}): ${e instanceof Error ? e.message : String(e)}`
    }
  }
  return msg
}

function field(obj: Record<string, unknown>, ...names: string[]): unknown {
  for (const n of names) if (obj[n] !== undefined) return obj[n]
  return undefined
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

/** Parses manifest text: a JSON array of objects, or one object per line. */
export function parseManifest(text: string): Manifest {
  const body = text.replace(/^\uFEFF/, '')
  const first = body.trimStart()[0]
  if (first === '[') {
    let parsed: unknown
    try {
      parsed = JSON.parse(body)
    } catch (err) {
      throw new DesError('DES_BAD_ARG', `manifest is not valid JSON: ${syntaxLine(body, err)}`)
    }
    if (!Array.isArray(parsed)) throw new DesError('DES_BAD_ARG', 'manifest must be a JSON array of objects')
    const starts = elementStarts(body)
    const lines: number[] = []
    // One pass over the text for all line numbers.
    let line = 1
    let pos = 0
    for (const s of starts) {
      for (; pos < s; pos++) if (body.charCodeAt(pos) === 10) line++
      lines.push(line)
    }
    const inputs = parsed.map((v, i) => manifestEntry(v, `line ${lines[i] ?? '?'} (entry ${i + 1})`))
    return { inputs, lines }
  }
  if (first === '{') {
    const inputs: PackInput[] = []
    const lines: number[] = []
    body.split('\n').forEach((raw, i) => {
      if (raw.trim() === '') return
      let v: unknown
      try {
        v = JSON.parse(raw)
      } catch (err) {
        throw new DesError('DES_BAD_ARG', `manifest line ${i + 1} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`)
      }
      inputs.push(manifestEntry(v, `line ${i + 1}`))
      lines.push(i + 1)
    })
    return { inputs, lines }
  }
  if (first === undefined) throw new DesError('DES_BAD_ARG', 'manifest is empty')
  throw new DesError('DES_BAD_ARG', 'manifest must be a JSON array of objects (or JSON lines)')
}
