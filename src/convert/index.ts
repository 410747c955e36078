// `des convert`: a store in the reference's flat layout moved into the nested
// layout, key by key, on local disk or S3.
//
// For each (date, shard) key of the flat store (`<date>_<HEX>_0000.des`,
// `_0001`…): every entry of its flat shards, first copy of a uid first (the
// one the reference's reader serves), is added to the nested chain
// `<date>/<HEX>.des` (+ continuations) in one append, streamed (decoded
// window by window, re-encoded by the packer, BigFiles from their object).
// Then every uid is read back from its new key and compared by sha256 with
// the flat copy; only then, with `deleteSource`, are the key's flat shards
// removed, last one first (so a reader walking `_0000`, `_0001`… never meets
// a gap), and a flat BigFile once no flat shard names it any more.
//
// Nothing is kept on the side: the store itself says what is done. A uid
// already in the nested chain is not added again (it is verified like the
// rest), so a run killed anywhere is finished by running it again, and a run
// over a converted store changes nothing.
//
// The nested date is the flat file's date, the date as written: a flat shard
// does not record the offsets its timestamps had, so the UTC date cannot be
// known. Readers of the nested layout look there after the UTC date
// (src/store/layout.ts, lookupsFor).

import { createReadStream, createWriteStream } from 'node:fs'
import * as path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createHash } from 'node:crypto'
import { DesError, describe } from '../errors'
import { makeTempDir, removeTempDir } from '../temp-dir'
import { DEFAULT_BIGFILES_PREFIX, DEFAULT_TAIL_BYTES } from '../config/defaults'
import { locateShard, type EntryInfo, type PackFile, type ShardReader } from '../native'
import type { PartWrite, ShardSink } from '../pack/local-target'
import type { KeyPlan, PlannedInput } from '../pack/plan'
import type { ByteSource } from '../storage/source'
import { bigfileKey, flatBigfileKey, flatShardKey, parseFlatShardKey, referenceDigits, shardKey } from '../store/layout'
import { openShard, type ShardHandle } from '../store/shard'
import { EntryReader, sha256 } from './entries'

/** Test-only points where a run kills itself (SIGKILL), to prove a rerun finishes the job. */
export type ConvertFault = 'convert-after-pack' | 'convert-mid-delete'

/** The store being converted: read, written (nested), and objects removed. */
export interface ConvertStore {
  /** Reads flat and nested objects alike (keys relative to the store). */
  source: ByteSource
  /** Writes nested parts (a LocalTarget or S3Target over the same store). */
  sink: ShardSink
  /** Removes one object. */
  remove(key: string): Promise<void>
  /** A local file with the object's bytes for the packer to read (the file itself on local disk, a download on S3). */
  localCopy(key: string, size: number, tmpDir: string): Promise<string>
}

export interface ConvertOptions {
  /** Routing bits of the store (every uid must route to the HEX of its flat file). */
  nBits: number
  bigfilesPrefix?: string
  /** Remove flat shards and BigFiles once every file in them is verified at its new key. */
  deleteSource?: boolean
  /** Continue nested shards in `<HEX>.1.des`… past this many bytes of data. */
  maxShardSize?: number
  /** Suffix read size for shard indexes. */
  tailBytes?: number
  /** Where S3 BigFiles are downloaded to on their way (default the OS temp dir). */
  tmpDir?: string
  onProgress?(p: ConvertProgress): void
  /** Tests only. */
  fault?: ConvertFault
}

export interface ConvertProgress {
  keys: number
  totalKeys: number
  /** Bytes of flat shards handled. */
  bytes: number
  totalBytes: number
  files: number
}

/** A flat object left in place, and why. */
export interface Kept {
  key: string
  reason: string
}

export interface ConvertReport {
  /** (date, shard) keys with flat shards. */
  keys: number
  flatShards: number
  /** Distinct uids found in flat shards. */
  files: number
  /** Of those, already in the nested layout before this run (a rerun). */
  alreadyNested: number
  /** Added to the nested layout by this run. */
  added: number
  /** Read back from their nested key and equal to the flat copy. */
  verified: number
  deletedShards: number
  deletedBigfiles: number
  /** Temp files of writers that died (a run killed before this one) removed from the nested folders written to. */
  tempsRemoved: number
  /** Flat shards holding a file that did not read back the same from its new key (never removed). */
  problems: Kept[]
  /** Flat shards and BigFiles not removed (with deleteSource), with the reason. */
  kept: Kept[]
  /** Keys that could not be converted (nothing of theirs removed). */
  failed: Kept[]
  seconds: number
}

const BIGFILE_NAME = /^[0-9a-f]{64}$/
/** Keys converted at once. */
const KEY_WORKERS = 4

interface FlatKey {
  dateDir: string
  shardHex: string
  /** `[part, object size]`, in part order. */
  parts: Array<{ part: number; key: string; size: number }>
}

/** What a listing of the store says: flat shards by key, flat BigFiles, nested BigFile copies. */
interface Listing {
  keys: FlatKey[]
  flatBigfiles: Map<string, number>
  nestedBigfiles: Map<string, string[]>
  totalBytes: number
}

async function listStore(source: ByteSource, prefix: string): Promise<Listing> {
  const byKey = new Map<string, FlatKey>()
  const flatBigfiles = new Map<string, number>()
  const nestedBigfiles = new Map<string, string[]>()
  let totalBytes = 0
  for await (const o of source.list()) {
    const flat = parseFlatShardKey(o.key)
    if (flat) {
      const k = `${flat.dateDir}_${flat.shardHex}`
      let fk = byKey.get(k)
      if (!fk) byKey.set(k, (fk = { dateDir: flat.dateDir, shardHex: flat.shardHex, parts: [] }))
      fk.parts.push({ part: flat.part, key: o.key, size: o.size })
      totalBytes += o.size
      continue
    }
    const slash = o.key.split('/')
    if (slash.length === 2 && slash[0] === prefix && BIGFILE_NAME.test(slash[1])) flatBigfiles.set(slash[1], o.size)
    else if (slash.length === 3 && /^\d{8}$/.test(slash[0]) && slash[1] === prefix && BIGFILE_NAME.test(slash[2])) {
      const list = nestedBigfiles.get(slash[2]) ?? []
      list.push(o.key)
      nestedBigfiles.set(slash[2], list)
    }
  }
  const keys = [...byKey.values()].sort((a, b) => (a.dateDir + a.shardHex < b.dateDir + b.shardHex ? -1 : 1))
  for (const k of keys) k.parts.sort((a, b) => a.part - b.part)
  return { keys, flatBigfiles, nestedBigfiles, totalBytes }
}

/** sha256 of an object's bytes, streamed. */
/** sha256 hex of a local file, streamed. */
async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) hash.update(chunk)
  return hash.digest('hex')
}

async function objectSha256(source: ByteSource, key: string): Promise<{ sha: string; size: number }> {
  const { body } = await source.stream(key)
  const h = createHash('sha256')
  let size = 0
  for await (const chunk of body) {
    h.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return { sha: h.digest('hex'), size }
}

/** The `YYYYMMDD` date `days` days after `dateDir` (before, when negative). */
function dayAfter(dateDir: string, days: number): string {
  const day = new Date(Date.UTC(Number(dateDir.slice(0, 4)), Number(dateDir.slice(4, 6)) - 1, Number(dateDir.slice(6, 8)) + days))
  return day.toISOString().slice(0, 10).replaceAll('-', '')
}

/** Tests only: dies here, as kill -9 would, at the second key to reach this point. */
class Faults {
  private readonly seen = new Map<ConvertFault, number>()
  constructor(private readonly fault?: ConvertFault) {}
  at(point: ConvertFault): void {
    if (this.fault !== point) return
    const n = (this.seen.get(point) ?? 0) + 1
    this.seen.set(point, n)
    if (n === 2) process.kill(process.pid, 'SIGKILL')
  }
}

/** One uid of a key: where its first flat copy is and what it holds. */
interface FlatFile {
  uid: string
  /** Part (index into FlatKey.parts) holding the copy the reference serves. */
  part: number
  entry: EntryInfo
  /** sha256 of its content, once read. */
  sha?: string
}

/** Converts the flat layout of `store` into the nested one. See the module comment. */
export async function convertStore(store: ConvertStore, opts: ConvertOptions): Promise<ConvertReport> {
  const started = performance.now()
  const prefix = opts.bigfilesPrefix ?? DEFAULT_BIGFILES_PREFIX
  const tailBytes = opts.tailBytes ?? DEFAULT_TAIL_BYTES
  const tmpRoot = opts.tmpDir
  const faults = new Faults(opts.fault)
  const listing = await listStore(store.source, prefix)
  const flatKeys = new Map(listing.keys.map((k) => [`${k.dateDir}_${k.shardHex}`, k]))
  const report: ConvertReport = {
    keys: listing.keys.length,
    flatShards: listing.keys.reduce((n, k) => n + k.parts.length, 0),
    files: 0,
    alreadyNested: 0,
    added: 0,
    verified: 0,
    deletedShards: 0,
    deletedBigfiles: 0,
    tempsRemoved: 0,
    problems: [],
    kept: [],
    failed: [],
    seconds: 0,
  }
  const progress: ConvertProgress = { keys: 0, totalKeys: listing.keys.length, bytes: 0, totalBytes: listing.totalBytes, files: 0 }
  opts.onProgress?.(progress)
  /** BigFiles whose content was read back at a nested key in this run. */
  const verifiedBigfiles = new Set<string>()
  /** BigFiles named by flat shards that are not removed. */
  const stillNamed = new Set<string>()
  /** A kept flat shard could not be read: what it names is unknown, so no flat BigFile is removed. */
  let namesUnknown = false

  // Every key takes a temp folder: a root that cannot hold one stops the run
  // once, before any key (not each key, reported as not converted).
  if (listing.keys.length > 0) await removeTempDir(await makeTempDir('des-convert-', tmpRoot))

  // A run killed mid-write left its temp files in the folders this one writes to: removed once
  // stale, as des pack does. Beside the conversion, never failing it (des verify --store names what stays).
  const tidying = (store.sink.tidy?.(listing.keys) ?? Promise.resolve(0)).catch(() => 0)
  // A few keys at a time: on S3 a key is mostly waiting on requests.
  let next = 0
  const worker = async () => {
    while (next < listing.keys.length) await convertOne(listing.keys[next++])
  }
  await Promise.all(Array.from({ length: Math.min(KEY_WORKERS, listing.keys.length) }, worker))
  if (opts.deleteSource) await removeBigfiles()
  report.tempsRemoved = await tidying
  report.seconds = (performance.now() - started) / 1000
  return report

  /** One key converted; a failure is reported and leaves the key as it was. */
  async function convertOne(fk: FlatKey): Promise<void> {
    try {
      await convertKey(fk)
    } catch (err) {
      report.failed.push({ key: `${fk.dateDir}_${fk.shardHex}`, reason: describe(err) })
      if (opts.deleteSource) {
        // Nothing of this key is removed, nor the BigFiles its shards name.
        for (const p of fk.parts) report.kept.push({ key: p.key, reason: 'its key was not converted' })
        await namedBigfiles(fk.parts.map((p) => p.key))
      }
    }
    progress.keys++
    progress.bytes += fk.parts.reduce((n, p) => n + p.size, 0)
    opts.onProgress?.(progress)
  }

  /** Notes the BigFiles that flat shards which stay still name (every part that reads; one that does not keeps them all). */
  async function namedBigfiles(keys: string[]): Promise<void> {
    for (const key of keys) {
      try {
        const shard = await openShard(store.source, key, tailBytes)
        for (const e of shard.reader.entries()) if (e.isBigfile && e.sha256) stillNamed.add(e.sha256)
      } catch {
        namesUnknown = true
      }
    }
  }

  async function convertKey(fk: FlatKey): Promise<void> {
    const { dateDir, shardHex } = fk
    const shards: ShardHandle[] = []
    for (const p of fk.parts) shards.push(await openShard(store.source, p.key, tailBytes, undefined, undefined, { deletions: true }))
    // The original's deletions are kept beside its flat shards, and the nested layout has no place
    // for them: converted, the files they mark deleted would be served again. The key stays flat
    // (DES_LAYOUT=nested,flat answers them 410 from there).
    const deleting = shards.find((shard) => shard.tombstones !== undefined)
    if (deleting !== undefined) {
      throw new DesError('DES_CONFLICT', `${deleting.key} has a .meta sidecar beside it (the original DES's deletions, or a damaged one), which the nested layout cannot carry: the key stays in the flat layout`)
    }
    // The first copy of each uid, in part order (the one the reference's reader finds).
    const files = new Map<string, FlatFile>()
    const shadowed: FlatFile[] = []
    const iso = `${dateDir.slice(0, 4)}-${dateDir.slice(4, 6)}-${dateDir.slice(6, 8)}T00:00:00Z`
    shards.forEach((shard, part) => {
      for (const entry of shard.reader.entries()) {
        const routed = locateShard(entry.uid, iso, opts.nBits).shardHex
        // A uid of other decimal digits sits where the original's int() put it (see referenceDigits); it keeps that key.
        const digits = routed === shardHex ? undefined : referenceDigits(entry.uid)
        if (routed !== shardHex && (digits === undefined || locateShard(digits, iso, opts.nBits).shardHex !== shardHex)) {
          throw new DesError('DES_BAD_ARG', `uid ${JSON.stringify(entry.uid)} of ${shard.key} routes to ${routed} with n_bits ${opts.nBits}, not ${shardHex}: give the n_bits the store was written with`)
        }
        const f = { uid: entry.uid, part, entry }
        if (files.has(entry.uid)) shadowed.push(f)
        else files.set(entry.uid, f)
      }
    })
    await refuseTwinsNextDoor(fk, files, shards)
    report.files += files.size

    // What the nested chain holds already (a rerun, or files packed there since).
    const existing: ShardReader[] = await store.sink.existingParts({ dateDir, shardHex, items: [] })
    const inNested = (uid: string) => existing.some((r) => r.has(uid))
    const readers = shards.map((s) => new EntryReader(s))
    const tmp = await makeTempDir('des-convert-', tmpRoot)
    try {
      const items: PlannedInput[] = []
      for (const f of files.values()) {
        if (inNested(f.uid)) {
          report.alreadyNested++
          continue
        }
        items.push(plannedInput(f, shards[f.part], readers[f.part], tmp, dateDir, shardHex, items.length))
      }
      if (items.length > 0) await write({ dateDir, shardHex, items }, existing.length)
      report.added += items.length
      progress.files += files.size
      faults.at('convert-after-pack')

      // Read back every uid from its new key and compare with the flat copy.
      const check = await verifyKey(fk, shards, files, shadowed)
      report.verified += check.verified
      for (const [part, reason] of check.problems) report.problems.push({ key: fk.parts[part].key, reason })
      if (!opts.deleteSource) return
      // Last part first: a reader walking _0000, _0001… never meets a gap.
      let removing = true
      for (let part = fk.parts.length - 1; part >= 0; part--) {
        const why = check.problems.get(part)
        if (why !== undefined) removing = false
        if (!removing) {
          report.kept.push({ key: fk.parts[part].key, reason: why ?? 'a later shard of its key is kept (without this one, readers of the flat layout would not reach it)' })
          for (const e of shards[part].reader.entries()) if (e.isBigfile && e.sha256) stillNamed.add(e.sha256)
          continue
        }
        await store.remove(fk.parts[part].key)
        report.deletedShards++
        faults.at('convert-mid-delete')
      }
    } finally {
      await removeTempDir(tmp)
    }

    async function write(plan: KeyPlan, parts: number): Promise<void> {
      let rest = plan.items
      const ctx = { skipExisting: true, progress: () => undefined }
      for (let part = Math.max(0, parts - 1); rest.length > 0; part++) {
        const w: PartWrite = await store.sink.writePart(plan, part, rest, opts.maxShardSize, ctx)
        rest = w.fill.rest
        // Each part is checked at its new key before the flat copy goes: store it now.
        await store.sink.flush?.()
        await w.done
      }
    }

    /** The packer's input for one flat file: its bytes decoded from the flat shard, or its BigFile as a local file. */
    function plannedInput(f: FlatFile, shard: ShardHandle, reader: EntryReader, tmpDir: string, dateDir: string, shardHex: string, index: number): PlannedInput {
      const meta = f.entry.meta === '{}' || f.entry.meta === '' ? undefined : f.entry.meta
      const load = async (): Promise<PackFile> => {
        if (!f.entry.isBigfile) {
          const data = await reader.read(f.entry)
          f.sha = sha256(data)
          return { uid: f.uid, data, meta }
        }
        const key = flatBigfileKey(f.entry.sha256!, prefix)
        const copy = await store.localCopy(key, f.entry.size, tmpDir)
        // A damaged BigFile would go in under the sha256 of its damage, a nested
        // file that reads back clean: refused here, the key is not converted.
        const got = await fileSha256(copy)
        if (got !== f.entry.sha256) throw new DesError('DES_CORRUPT', `flat BigFile ${key} of uid ${JSON.stringify(f.uid)} has sha256 ${got}, its name says ${f.entry.sha256}`)
        return { uid: f.uid, path: copy, size: f.entry.size, meta }
      }
      return {
        input: { uid: f.uid, createdAt: '', sizeBytes: f.entry.size, source: shard.key },
        index,
        label: shard.key,
        dateDir,
        shardHex,
        size: f.entry.size,
        onS3: false,
        load,
      }
    }
  }

  /**
   * Refuses a key one of whose uids the day before or after also holds, under the same HEX
   * (flat, or nested already), with other bytes. In the nested layout a reader looks under a
   * request's UTC date before its date as written (lookupsFor), so once both copies are nested,
   * a request for one whose UTC date is the other's date gets the other's bytes.
   */
  async function refuseTwinsNextDoor(fk: FlatKey, files: Map<string, FlatFile>, shards: ShardHandle[]): Promise<void> {
    const readers = shards.map((s) => new EntryReader(s))
    const compare = async (shard: ShardHandle): Promise<void> => {
      const theirReader = new EntryReader(shard)
      for (const theirs of shard.reader.entries()) {
        const ours = files.get(theirs.uid)
        if (ours === undefined) continue
        ours.sha ??= ours.entry.isBigfile ? ours.entry.sha256! : sha256(await readers[ours.part].read(ours.entry))
        const theirSha = theirs.isBigfile ? theirs.sha256! : sha256(await theirReader.read(theirs))
        if (theirSha === ours.sha) continue
        throw new DesError(
          'DES_CONFLICT',
          `uid ${JSON.stringify(ours.uid)} is also in ${shard.key} with other bytes: in the nested layout a request for one whose UTC date is the other's date would get the other's bytes, so the key stays in the flat layout`,
        )
      }
    }
    for (const dateDir of [dayAfter(fk.dateDir, -1), dayAfter(fk.dateDir, 1)]) {
      // Flat before nested: a flat shard goes only once its files are nested, so none is missed.
      for (const part of flatKeys.get(`${dateDir}_${fk.shardHex}`)?.parts ?? []) {
        try {
          await compare(await openShard(store.source, part.key, tailBytes))
        } catch (err) {
          // Converted (by this run or another) since the listing: its files are in the nested key.
          if ((err as DesError)?.code !== 'DES_NOT_FOUND') throw err
        }
      }
      for (const shard of await openNested({ dateDir, shardHex: fk.shardHex })) await compare(shard)
    }
  }

  /** The parts of a nested key, in order (none when it has none). */
  async function openNested(loc: { dateDir: string; shardHex: string }): Promise<ShardHandle[]> {
    const nested: ShardHandle[] = []
    for (let part = 0; ; part++) {
      try {
        nested.push(await openShard(store.source, shardKey(loc, part), tailBytes))
      } catch (err) {
        if ((err as DesError)?.code === 'DES_NOT_FOUND') return nested
        throw err
      }
    }
  }

  /**
   * Every uid of a key read back from the nested chain and compared with its
   * flat copy (sha256 of the content). Returns, by flat part, why it must stay.
   */
  async function verifyKey(fk: FlatKey, shards: ShardHandle[], files: Map<string, FlatFile>, shadowed: FlatFile[]): Promise<{ verified: number; problems: Map<number, string> }> {
    const problems = new Map<number, string>()
    const problem = (part: number, why: string) => {
      if (!problems.has(part)) problems.set(part, why)
    }
    const nested = await openNested(fk)
    const nestedReaders = new Map(nested.map((n) => [n, new EntryReader(n)]))
    const flatReaders = shards.map((s) => new EntryReader(s))
    const flatSha = async (f: FlatFile): Promise<string> => {
      if (f.sha !== undefined) return f.sha
      if (f.entry.isBigfile) return f.entry.sha256!
      f.sha = sha256(await flatReaders[f.part].read(f.entry))
      return f.sha
    }
    const nestedSha = async (uid: string): Promise<string | undefined> => {
      for (const n of nested) {
        const entry = n.reader.entry(uid)
        if (!entry) continue
        if (!entry.isBigfile) return sha256(await nestedReaders.get(n)!.read(entry))
        const key = bigfileKey(fk.dateDir, entry.sha256!, prefix)
        const got = await objectSha256(store.source, key)
        if (got.size !== entry.size) throw new DesError('DES_CORRUPT', `${key} is ${got.size} bytes, the index of ${n.key} says ${entry.size}`)
        if (got.sha === entry.sha256) verifiedBigfiles.add(got.sha)
        return got.sha
      }
      return undefined
    }
    let verified = 0
    const seen = new Map<string, string | undefined>()
    for (const f of [...files.values(), ...shadowed]) {
      let want: string
      let got: string | undefined
      try {
        want = await flatSha(f)
        if (!seen.has(f.uid)) seen.set(f.uid, await nestedSha(f.uid))
        got = seen.get(f.uid)
      } catch (err) {
        problem(f.part, `uid ${JSON.stringify(f.uid)}: ${describe(err)}`)
        continue
      }
      if (got === undefined) problem(f.part, `uid ${JSON.stringify(f.uid)} is not in ${shardKey(fk, 0)} after converting`)
      else if (got !== want) {
        problem(
          f.part,
          files.get(f.uid) === f
            ? `uid ${JSON.stringify(f.uid)} in ${shardKey(fk, 0)} differs from its flat copy`
            : `uid ${JSON.stringify(f.uid)} is in this shard a second time with other bytes (the first copy, the one served, was converted)`,
        )
      } else if (files.get(f.uid) === f) {
        verified++
        // A flat BigFile whose content is at its new key (as a BigFile or inline) may go.
        if (f.entry.isBigfile) verifiedBigfiles.add(want)
      }
    }
    return { verified, problems }
  }

  /**
   * Flat BigFiles no remaining flat shard names are removed once a nested copy
   * is known good: verified in this run, or (a rerun after a kill) found at a
   * nested key and hashed now.
   */
  async function removeBigfiles(): Promise<void> {
    for (const [sha] of listing.flatBigfiles) {
      const key = flatBigfileKey(sha, prefix)
      if (stillNamed.has(sha)) {
        report.kept.push({ key, reason: 'a flat shard that is kept names it' })
        continue
      }
      if (namesUnknown) {
        report.kept.push({ key, reason: 'a flat shard that is kept could not be read (it may name it)' })
        continue
      }
      let good = verifiedBigfiles.has(sha)
      for (const copy of good ? [] : (listing.nestedBigfiles.get(sha) ?? [])) {
        const got = await objectSha256(store.source, copy).catch(() => undefined)
        if (got?.sha === sha) {
          good = true
          break
        }
      }
      if (!good) {
        report.kept.push({ key, reason: 'no nested copy of it was found' })
        continue
      }
      await store.remove(key)
      report.deletedBigfiles++
    }
  }
}

/** `localCopy` for a store on S3 (or anything that streams): the object downloaded into `tmpDir`. */
export async function downloadTo(source: ByteSource, key: string, size: number, tmpDir: string): Promise<string> {
  const file = path.join(tmpDir, `${path.basename(key)}-${Math.random().toString(36).slice(2)}`)
  const { body, objectSize } = await source.stream(key)
  if (objectSize !== size) {
    body.destroy()
    throw new DesError('DES_CORRUPT', `BigFile ${key} is ${objectSize} bytes, its index entry says ${size}`)
  }
  await pipeline(body, createWriteStream(file))
  return file
}

export { flatShardKey }
