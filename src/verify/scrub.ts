// The store-wide verify (`des verify --store`): every object of every root
// (the local base directory, the bucket/prefix, or each zone) listed once,
// grouped by date, each shard and each BigFile read once, a bounded number at
// a time. What is wrong is reported per object, as data; nothing is changed.
//
// Beyond the bytes (checked by the native verifier), what only a whole-store
// view shows: an entry that does not route to the shard it sits in (it can
// never be found), a shard in a zone that does not own its index, a missing
// part before later ones (readers stop at the first missing part), a uid in
// two parts of one key, missing or damaged BigFiles (each checked once however
// many entries share it), and files no reader uses.

import { STALE_TEMP_MS } from '../config/defaults'
import type { Layout } from '../config/env'
import { DesError, errorCode } from '../errors'
import { locateShard } from '../native'
import type { ByteSource, ListedObject } from '../storage/source'
import { checkBigfile, checkShard, type BigfileCheck, type ShardCheck } from './check'
import { bigfileKeyIn, referenceDigits, shardKeyIn } from '../store/layout'
import { classifyKeyIn, groupOf, isStoreFolder, type KeyKind, type ShardName } from './keys'
import { Pool } from './pool'

/** One place objects are listed from: the store, or one zone of a multi-S3 store. */
export interface ScrubRoot {
  /** The zone's name (multi-S3 only). */
  zone?: string
  source: ByteSource
  /** Whether readers look in this root for shards of `shardIndex`. */
  owns(shardIndex: number): boolean
  /** Which zone readers look in for `shardIndex` (for messages). */
  ownerOf?(shardIndex: number): string | undefined
  /** Keys under these prefixes (relative to the root) are another root's: zones nested in one bucket. */
  others?: string[]
}

export type Severity = 'error' | 'warning' | 'note'

/** One thing found about an object. */
export interface Finding {
  severity: Severity
  /**
   * error: `corrupt`, `misplaced`, `wrong-zone`, `misnamed`, `part-gap`,
   * `duplicate-uid`, `bigfile-missing`, `bigfile-corrupt`, `unreadable`;
   * warning: `stale-temp`, `changed`; note: `temp`, `lock`, `other`,
   * `orphan-bigfile`, `vanished`.
   */
  kind: string
  message: string
  uid?: string | null
  /** `corrupt`: where in the shard (header, data, index, footer, entry). */
  region?: string
  /** `corrupt`, `unreadable`: the error code. */
  code?: string
  /** Findings that stand for many entries: how many. */
  count?: number
  /** ...and the first few of them. */
  examples?: Array<Record<string, unknown>>
}

/** What was found about one object. */
export interface ObjectReport {
  key: string
  zone?: string
  type: 'shard' | 'bigfile' | 'other'
  /** Bytes read from it. */
  bytes: number
  /** Shards: which part of its key (continuation or flat `_NNNN`). */
  part?: number
  entries?: number
  /** Shards: entries and index carry checksums (a flipped byte in a raw entry is caught too). */
  checksummed?: boolean
  /** BigFiles: index entries that reference it. */
  refs?: number
  findings: Finding[]
}

export interface ScrubSummary {
  /** Objects listed and reported (shards, BigFiles, everything else). */
  objects: number
  shards: number
  bigfiles: number
  /** Objects that are neither (locks, temp files, other files). */
  other: number
  entries: number
  /** Bytes read. */
  bytes: number
  /** Error findings; any makes the run fail. */
  problems: number
  /** ...of which storage errors (the object could not be read). */
  unreadable: number
  warnings: number
  notes: number
  /** Shards whose entries carry no checksums. */
  unchecksummed_shards: number
  seconds: number
  mib_per_s: number
  objects_per_s: number
}

export interface ScrubProgress {
  /** Objects listed so far, and their bytes. */
  listed: number
  listedBytes: number
  /** True once every listing has ended. */
  listingDone: boolean
  checked: number
  bytes: number
}

export interface ScrubOptions {
  roots: ScrubRoot[]
  layout: Layout
  /** Layouts readers look in, in order (a store being converted has both); default `[layout]`. */
  readLayouts?: Layout[]
  nBits: number
  bigfilesPrefix: string
  /** Suffix read that fetches footer and index together (DES_TAIL_BYTES). */
  tailBytes: number
  /** Objects checked at a time. */
  parallel: number
  /** Called for each object as its check ends (awaited: a slow reader slows the scan). */
  onObject?(report: ObjectReport): void | Promise<void>
  onProgress?(p: ScrubProgress): void
  /** The clock, ms since the epoch (tests inject one). */
  now?: () => number
  /** A temp file older than this is a warning (default one hour). */
  staleTempMs?: number
}

/** More findings than this on one object are summed up in one. */
const MAX_FINDINGS = 100
const EXAMPLES = 5
/** Any instant: the shard index does not depend on the date. */
const ANY_TIME = '2000-01-01T00:00:00Z'

interface BigfileState {
  key: string
  sha256: string
  /** Sizes the referencing entries give (one, unless the index disagrees with itself). */
  sizes: Set<number>
  refs: number
  firstRef: { shard: string; uid: string }
  check?: BigfileCheck | Finding
  checked: Promise<void>
}

/** The BigFiles of one group (a nested date folder) or of a whole flat root. */
class BigfileSet {
  readonly referenced = new Map<string, BigfileState>()
  readonly listed = new Map<string, ListedObject>()
}

/** A shard part found in a listing. */
interface PartObject {
  name: ShardName
  obj: ListedObject
}

export class Scrub {
  private readonly pool: Pool
  private readonly now: () => number
  private readonly layouts: Layout[]
  private fatal: unknown
  private readonly counts = { objects: 0, shards: 0, bigfiles: 0, other: 0, entries: 0, bytes: 0, problems: 0, unreadable: 0, warnings: 0, notes: 0, unchecksummed_shards: 0 }
  private readonly progress: ScrubProgress = { listed: 0, listedBytes: 0, listingDone: false, checked: 0, bytes: 0 }

  constructor(private readonly opts: ScrubOptions) {
    this.pool = new Pool(Math.max(1, opts.parallel))
    this.now = opts.now ?? Date.now
    this.layouts = opts.readLayouts && opts.readLayouts.length > 0 ? opts.readLayouts : [opts.layout]
  }

  /** Checks every root; throws only when storage stops answering (DES_UNAVAILABLE) or on a listing error. */
  async run(): Promise<ScrubSummary> {
    const started = performance.now()
    const finishing: Promise<void>[] = []
    for (const root of this.opts.roots) {
      if (this.fatal) break
      try {
        finishing.push((await this.scanRoot(root)).done)
      } catch (err) {
        this.fail(err)
      }
    }
    this.progress.listingDone = true
    this.tick()
    await this.pool.drain()
    await Promise.all(finishing)
    await this.pool.drain()
    if (this.fatal) throw this.fatal
    const seconds = (performance.now() - started) / 1000
    const per = (n: number) => (seconds > 0 ? Number((n / seconds).toFixed(1)) : 0)
    return { ...this.counts, seconds: Number(seconds.toFixed(3)), mib_per_s: per(this.counts.bytes / 1048576), objects_per_s: per(this.counts.objects) }
  }

  private fail(err: unknown): void {
    this.fatal ??= err
  }

  private tick(): void {
    this.opts.onProgress?.(this.progress)
  }

  private read = (n: number): void => {
    this.progress.bytes += n
    this.tick()
  }

  private async emit(report: ObjectReport): Promise<void> {
    const c = this.counts
    c.objects++
    c[report.type === 'shard' ? 'shards' : report.type === 'bigfile' ? 'bigfiles' : 'other']++
    c.entries += report.entries ?? 0
    c.bytes += report.bytes
    if (report.type === 'shard' && report.checksummed === false) c.unchecksummed_shards++
    for (const f of report.findings) {
      if (f.severity === 'error') c.problems++
      else if (f.severity === 'warning') c.warnings++
      else c.notes++
      if (f.kind === 'unreadable') c.unreadable++
    }
    this.progress.checked++
    this.tick()
    await this.opts.onObject?.(report)
  }

  private base(root: ScrubRoot, key: string, type: ObjectReport['type']): ObjectReport {
    return { key, ...(root.zone !== undefined ? { zone: root.zone } : {}), type, bytes: 0, findings: [] }
  }

  /** Lists a root, starting checks group by group; resolves when the listing has ended, with the root's completion. */
  private async scanRoot(root: ScrubRoot): Promise<{ done: Promise<void> }> {
    const layouts = this.layouts
    // A flat store keeps every BigFile in one folder: they are reported once every shard of the root is read.
    const flatBigfiles = new BigfileSet()
    const groups: Promise<void>[] = []
    let group: string | undefined
    let batch: ListedObject[] = []
    for await (const obj of root.source.list()) {
      if (this.fatal) break
      if (root.others?.some((p) => obj.key.startsWith(p))) continue
      this.progress.listed++
      this.progress.listedBytes += obj.size
      const g = groupOf(obj.key, layouts)
      if (g !== group && batch.length > 0) {
        groups.push((await this.startGroup(root, batch, flatBigfiles)).done.catch((err) => this.fail(err)))
        batch = []
      }
      group = g
      batch.push(obj)
      if (batch.length === 1) this.tick()
    }
    if (batch.length > 0 && !this.fatal) groups.push((await this.startGroup(root, batch, flatBigfiles)).done.catch((err) => this.fail(err)))
    return { done: Promise.all(groups).then(() => this.finishBigfiles(root, flatBigfiles)) }
  }

  /** Starts the checks of one group (waiting for free slots); resolves once started, with the group's completion. */
  private async startGroup(root: ScrubRoot, objs: ListedObject[], flatBigfiles: BigfileSet): Promise<{ done: Promise<void> }> {
    const { nBits, bigfilesPrefix } = this.opts
    // The nested layout's BigFiles of this date, known once the group's shards are read.
    const nestedBigfiles = new BigfileSet()
    const setOf = (layout: Layout) => (layout === 'flat' ? flatBigfiles : nestedBigfiles)
    const keys = new Map<string, PartObject[]>()
    const started: Promise<void>[] = []
    const onError = (err: unknown) => this.fail(err)
    for (const obj of objs) {
      const kind = classifyKeyIn(obj.key, this.layouts, nBits, bigfilesPrefix)
      if (obj.broken !== undefined) {
        started.push((await this.pool.start(() => this.emit(this.brokenReport(root, obj, obj.broken!, kind)), onError)).done)
        continue
      }
      switch (kind.type) {
        case 'shard': {
          const id = `${kind.layout}:${kind.dateDir}/${kind.shardHex}`
          keys.set(id, [...(keys.get(id) ?? []), { name: kind, obj }])
          break
        }
        case 'bigfile':
          setOf(kind.layout).listed.set(obj.key, obj)
          break
        case 'misnamed':
          started.push((await this.pool.start(() => this.checkMisnamed(root, obj, kind.why), onError)).done)
          break
        default:
          started.push((await this.pool.start(() => this.emit(this.otherReport(root, obj, kind.type)), onError)).done)
      }
    }
    for (const parts of keys.values()) {
      parts.sort((a, b) => a.name.part - b.name.part)
      started.push((await this.pool.start(() => this.checkKey(root, parts, setOf(parts[0].name.layout)), onError)).done)
    }
    return { done: Promise.all(started).then(() => this.finishBigfiles(root, nestedBigfiles)) }
  }

  /**
   * A link whose target cannot be reached: whatever it stood for (a shard, a
   * BigFile, a date folder) cannot be read. One at a name no reader looks up
   * (an editor's lock link, a stale shortcut) is noted as any other file is.
   */
  private brokenReport(root: ScrubRoot, obj: ListedObject, why: string, kind: KeyKind): ObjectReport {
    const r = this.base(root, obj.key, 'other')
    const ofTheStore = kind.type === 'shard' || kind.type === 'bigfile' || kind.type === 'misnamed' || isStoreFolder(obj.key, this.layouts, this.opts.bigfilesPrefix)
    if (!ofTheStore) {
      r.findings.push({ severity: 'note', kind: 'other', message: `a link whose target cannot be reached (${why}), at a name no reader looks up` })
      return r
    }
    r.findings.push({ severity: 'error', kind: 'unreadable', code: 'DES_STORAGE', message: `a link whose target cannot be reached (${why}): no reader can read what it stands for` })
    return r
  }

  private otherReport(root: ScrubRoot, obj: ListedObject, type: 'lock' | 'temp' | 'other'): ObjectReport {
    const r = this.base(root, obj.key, 'other')
    if (type === 'lock') r.findings.push({ severity: 'note', kind: 'lock', message: 'a lock file earlier packers kept beside a shard (harmless; no longer made)' })
    else if (type === 'temp') {
      const ageMs = this.now() - obj.modifiedMs
      const stale = ageMs > (this.opts.staleTempMs ?? STALE_TEMP_MS)
      r.findings.push(
        stale
          ? { severity: 'warning', kind: 'stale-temp', message: `a writer's temp file, ${Math.round(ageMs / 60_000)} min old: left by a packer that died; safe to delete when no packer runs` }
          : { severity: 'note', kind: 'temp', message: "a writer's temp file (a packer may be running)" },
      )
    } else r.findings.push({ severity: 'note', kind: 'other', message: `neither a shard nor a BigFile of the ${this.layouts.join(' or ')} layout` })
    return r
  }

  /**
   * Runs one read of an object: a replaced object is read again once; errors
   * that concern only this object become a finding, DES_UNAVAILABLE stops the run.
   */
  private async guarded<T>(read: () => Promise<T>): Promise<T | Finding> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await read()
      } catch (err) {
        const code = errorCode(err)
        const message = err instanceof Error ? err.message : String(err)
        // Storage gone stops the run; so does an error with no code at all (a bug, not the object's fault).
        if (code === 'DES_UNAVAILABLE' || (code === 'DES_INTERNAL' && !(err as { code?: unknown })?.code && !(err as { $metadata?: unknown })?.$metadata)) throw err
        if (code === 'DES_CONFLICT' || code === 'DES_CHANGED') {
          if (attempt === 0) continue
          return { severity: 'warning', kind: 'changed', message: 'changed twice while it was being read: check it again later' }
        }
        if (code === 'DES_NOT_FOUND') return { severity: 'note', kind: 'vanished', message: 'removed after it was listed' }
        if (code === 'DES_CORRUPT') return { severity: 'error', kind: 'corrupt', code, message }
        return { severity: 'error', kind: 'unreadable', code: code === 'DES_INTERNAL' ? 'DES_STORAGE' : code, message }
      }
    }
  }

  private async readShard(root: ScrubRoot, key: string): Promise<ShardCheck | Finding> {
    return this.guarded(() => checkShard(root.source, key, this.opts.tailBytes, this.read))
  }

  /** The bytes' findings of a checked shard (capped). */
  private corruptFindings(check: ShardCheck): Finding[] {
    const out: Finding[] = check.problems.slice(0, MAX_FINDINGS).map((p) => ({ severity: 'error', kind: 'corrupt', uid: p.uid, region: p.region, code: p.code, message: p.error }))
    if (check.problems.length > MAX_FINDINGS) {
      out.push({ severity: 'error', kind: 'corrupt', count: check.problems.length - MAX_FINDINGS, message: `and ${check.problems.length - MAX_FINDINGS} more damaged entries` })
    }
    return out
  }

  private shardReport(root: ScrubRoot, key: string, part: number | undefined, check: ShardCheck | Finding): ObjectReport {
    const r = this.base(root, key, 'shard')
    if (part !== undefined) r.part = part
    if ('severity' in check) {
      r.findings.push(check)
      return r
    }
    r.bytes = check.bytes
    r.entries = check.entries
    // Unknown for an index that did not read: not counted as a shard without checksums.
    if (check.checksummed !== null) r.checksummed = check.checksummed
    r.findings.push(...this.corruptFindings(check))
    return r
  }

  /** A `.des` object at a name no reader asks for: its bytes are checked, and it is reported. */
  private async checkMisnamed(root: ScrubRoot, obj: ListedObject, why: string): Promise<void> {
    if (this.fatal) return
    const r = this.shardReport(root, obj.key, undefined, await this.readShard(root, obj.key))
    r.findings.unshift({ severity: 'error', kind: 'misnamed', message: `no reader looks here: ${why} (layout ${this.layouts.join(',')}, n_bits ${this.opts.nBits})` })
    await this.emit(r)
  }

  /** Every part of one (date, shard) key, in part order. */
  private async checkKey(root: ScrubRoot, parts: PartObject[], bigfiles: BigfileSet): Promise<void> {
    const { layout } = parts[0].name
    const present = new Set(parts.map((p) => p.name.part))
    // Where each uid was seen, to find one in two parts (only a key of several parts needs it).
    const seen = parts.length > 1 ? new Map<string, number>() : undefined
    for (const { name, obj } of parts) {
      if (this.fatal) return
      const check = await this.readShard(root, obj.key)
      const r = this.shardReport(root, obj.key, name.part, check)
      const entries = 'severity' in check ? undefined : check.entries
      let missing = -1
      for (let p = 0; p < name.part; p++) {
        if (!present.has(p)) {
          missing = p
          break
        }
      }
      if (missing >= 0) {
        r.findings.push({
          severity: 'error',
          kind: 'part-gap',
          message: `part ${missing} (${shardKeyIn(layout, name, missing)}) is missing: readers stop at the first missing part, so ${entries === undefined ? 'the entries' : `the ${entries} entries`} of this part can never be found`,
        })
      }
      if (!root.owns(name.shardIndex)) {
        const owner = root.ownerOf?.(name.shardIndex)
        r.findings.push({
          severity: 'error',
          kind: 'wrong-zone',
          message: owner ? `shard ${name.shardHex} belongs to zone ${owner}: readers never look for it in this one` : `no zone serves shard ${name.shardHex}: readers answer not found for its files`,
        })
      }
      if (!('severity' in check) && check.index) await this.checkEntries(root, name, obj.key, check, r, seen, bigfiles)
      await this.emit(r)
    }
  }

  /** Routing, uniqueness across parts, and BigFile references of one shard's entries (paged). */
  private async checkEntries(root: ScrubRoot, name: ShardName, key: string, check: ShardCheck, r: ObjectReport, seen: Map<string, number> | undefined, bigfiles: BigfileSet): Promise<void> {
    const { nBits, bigfilesPrefix } = this.opts
    const { layout } = name
    const index = check.index!
    const PAGE = 10_000
    let misplaced = 0
    const misplacedExamples: Array<Record<string, unknown>> = []
    let duplicates = 0
    const duplicateExamples: Array<Record<string, unknown>> = []
    for (let start = 0; start < index.entryCount; start += PAGE) {
      for (const e of index.entries(start, PAGE)) {
        const loc = locateShard(e.uid, ANY_TIME, nBits)
        // A shard of the original's (or converted from one) may hold a uid of other decimal digits where its ASCII digits route.
        const digits = loc.shardIndex !== name.shardIndex ? referenceDigits(e.uid) : undefined
        if (loc.shardIndex !== name.shardIndex && (digits === undefined || locateShard(digits, ANY_TIME, nBits).shardIndex !== name.shardIndex)) {
          misplaced++
          if (misplacedExamples.length < EXAMPLES) misplacedExamples.push({ uid: e.uid, shard_hex: loc.shardHex })
        }
        if (seen) {
          const earlier = seen.get(e.uid)
          if (earlier === undefined) seen.set(e.uid, name.part)
          else {
            duplicates++
            if (duplicateExamples.length < EXAMPLES) duplicateExamples.push({ uid: e.uid, also_in: shardKeyIn(layout, name, earlier) })
          }
        }
        if (e.isBigfile && e.sha256) this.reference(root, bigfiles, bigfileKeyIn(layout, name.dateDir, e.sha256, bigfilesPrefix), e.sha256, e.size, key, e.uid)
      }
      // Let other tasks run between pages of a large index.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    if (misplaced > 0) {
      const ex = misplacedExamples.map((x) => `${JSON.stringify(x.uid)} → ${x.shard_hex}`).join(', ')
      r.findings.push({
        severity: 'error',
        kind: 'misplaced',
        count: misplaced,
        examples: misplacedExamples,
        message: `${misplaced} of ${check.entries} entries route to another shard with n_bits ${nBits} (${ex}${misplaced > EXAMPLES ? ', …' : ''}): no reader looks for them here`,
      })
    }
    if (duplicates > 0) {
      const ex = duplicateExamples.map((x) => `${JSON.stringify(x.uid)} also in ${x.also_in}`).join(', ')
      r.findings.push({
        severity: 'error',
        kind: 'duplicate-uid',
        count: duplicates,
        examples: duplicateExamples,
        message: `${duplicates} uids are also in an earlier part of this key (${ex}${duplicates > EXAMPLES ? ', …' : ''}): readers return the earlier copy`,
      })
    }
  }

  /** Notes a BigFile reference; the first one queues the object's check. */
  private reference(root: ScrubRoot, set: BigfileSet, key: string, sha256: string, size: number, shard: string, uid: string): void {
    const known = set.referenced.get(key)
    if (known) {
      known.refs++
      known.sizes.add(size)
      return
    }
    const state: BigfileState = { key, sha256, sizes: new Set([size]), refs: 1, firstRef: { shard, uid }, checked: Promise.resolve() }
    state.checked = this.pool.spawn(
      async () => {
        if (this.fatal) return
        state.check = await this.guarded(() => checkBigfile(root.source, key, this.read, size))
      },
      (err) => this.fail(err),
    )
    set.referenced.set(key, state)
  }

  /** Reports every BigFile of a set: each referenced one as checked, listed ones no entry references as orphans. */
  private async finishBigfiles(root: ScrubRoot, set: BigfileSet): Promise<void> {
    for (const state of set.referenced.values()) {
      await state.checked
      if (this.fatal) return
      await this.emit(this.bigfileReport(root, state))
    }
    for (const [key, obj] of set.listed) {
      if (set.referenced.has(key)) continue
      const r = this.base(root, key, 'bigfile')
      r.refs = 0
      r.findings.push({ severity: 'note', kind: 'orphan-bigfile', message: `no index entry references it (${obj.size} bytes, not read): left by a replaced entry or an interrupted pack` })
      await this.emit(r)
    }
  }

  private bigfileReport(root: ScrubRoot, state: BigfileState): ObjectReport {
    const r = this.base(root, state.key, 'bigfile')
    r.refs = state.refs
    const by = `uid ${JSON.stringify(state.firstRef.uid)} in ${state.firstRef.shard}${state.refs > 1 ? ` and ${state.refs - 1} more` : ''}`
    const check = state.check
    if (!check) return r
    if ('severity' in check) {
      r.findings.push(check)
      return r
    }
    r.bytes = check.bytes
    if (check.sha256 === null) {
      r.findings.push({ severity: 'error', kind: 'bigfile-missing', uid: state.firstRef.uid, message: `missing: referenced by ${by}` })
      return r
    }
    const sizes = [...state.sizes]
    if (!sizes.includes(check.bytes)) {
      // Reading stops past the first entry's size: a longer object's length is not known.
      const is = check.bytes > Math.max(...sizes) ? `more than ${Math.max(...sizes)}` : String(check.bytes)
      r.findings.push({ severity: 'error', kind: 'bigfile-corrupt', uid: state.firstRef.uid, message: `${is} bytes, the index says ${sizes.join(' or ')} (referenced by ${by})` })
    } else if (sizes.length > 1) {
      r.findings.push({ severity: 'error', kind: 'bigfile-corrupt', uid: state.firstRef.uid, message: `entries referencing it disagree on its size (${sizes.join(', ')} bytes)` })
    }
    if (check.sha256 !== state.sha256) {
      r.findings.push({ severity: 'error', kind: 'bigfile-corrupt', uid: state.firstRef.uid, message: `sha256 ${check.sha256} does not match its name and index (referenced by ${by})` })
    }
    return r
  }
}

/** Runs a store-wide verify. */
export function scrub(opts: ScrubOptions): Promise<ScrubSummary> {
  return new Scrub(opts).run()
}

/** The worst severity of a report's findings, or `ok`. */
export function statusOf(report: ObjectReport): 'ok' | Severity {
  const s = report.findings.map((f) => f.severity)
  return s.includes('error') ? 'error' : s.includes('warning') ? 'warning' : s.includes('note') ? 'note' : 'ok'
}

/** The exit an outcome deserves: DES_CORRUPT (4) for any problem, DES_STORAGE (6) when the only problems are objects that could not be read. */
export function outcomeError(summary: ScrubSummary): DesError | undefined {
  if (summary.problems === 0) return undefined
  const what = `${summary.problems} problem${summary.problems === 1 ? '' : 's'} found in ${summary.objects} objects`
  if (summary.problems === summary.unreadable) return new DesError('DES_STORAGE', `${what}: objects that could not be read`)
  return new DesError('DES_CORRUPT', what)
}
