// Shards on a local disk: positional reads of the bytes asked for, never a
// whole-file load. The store opens shards with the native reader through
// `localPath`; the ByteSource methods serve BigFiles and the generic path.

import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import { DesError } from '../errors'
import { EtagMismatchError, type ByteRange, type ByteSource, type ListedObject, type ObjectStream, type ObjectTail, type ReadType, type StreamOptions } from './source'

/** What identifies one version of a local file. */
export function statEtag(st: fs.Stats): string {
  return `${st.size}-${Math.trunc(st.mtimeMs * 1000)}-${st.ino}`
}

/**
 * A failed look at `key`, coded: missing is DES_NOT_FOUND only while
 * `baseDir` is there (a store folder removed or moved from under the server,
 * or on a mount that went away above it, is unavailable, not an answer that
 * no file exists; a mount point left empty still looks like a store); without
 * `baseDir` (a packer's output folder, made by its first write) missing is
 * missing.
 */
function localError(err: unknown, baseDir: string | undefined, key: string, what: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    if (baseDir !== undefined && !isDirectory(baseDir)) return new DesError('DES_UNAVAILABLE', `DES_BASE_DIR ${baseDir} is not reachable`)
    return new DesError('DES_NOT_FOUND', `no object ${key}`)
  }
  if (err instanceof DesError) return err
  return new DesError('DES_STORAGE', `${what} ${key}: ${code ?? (err as Error)?.message ?? String(err)}`, { cause: err })
}

/** A folder's identity, however it is reached: its device and inode. */
export function dirId(st: fs.Stats): string {
  return `${st.dev}:${st.ino}`
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory()
  } catch {
    return false
  }
}

async function readAt(fh: fsp.FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, offset + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return done === length ? buf : buf.subarray(0, done)
}

export class LocalSource implements ByteSource {
  readonly backend = 'local'
  readonly id: string
  readonly baseDir: string

  /** The folder that must be there for a missing file to be missing (not for a packer's output, made as it writes). */
  private readonly mustExist: string | undefined

  constructor(baseDir: string, opts: { madeByWriting?: boolean } = {}) {
    this.baseDir = path.resolve(baseDir)
    this.id = `file:${this.baseDir}`
    this.mustExist = opts.madeByWriting ? undefined : this.baseDir
  }

  localPath(key: string): string {
    return path.join(this.baseDir, key)
  }

  async localEtag(key: string): Promise<string> {
    try {
      const st = await fsp.stat(this.localPath(key))
      if (!st.isFile()) throw new DesError('DES_NOT_FOUND', `no object ${key}`)
      return statEtag(st)
    } catch (err) {
      throw localError(err, this.mustExist, key, 'stat')
    }
  }

  async getTail(key: string, n: number): Promise<ObjectTail> {
    let fh: fsp.FileHandle | undefined
    try {
      fh = await fsp.open(this.localPath(key), 'r')
      const st = await fh.stat()
      const len = Math.min(n, st.size)
      const bytes = await readAt(fh, st.size - len, len)
      if (bytes.length !== len) throw new DesError('DES_STORAGE', `${key} shrank while its tail was read`)
      return { bytes, objectSize: st.size, etag: statEtag(st) }
    } catch (err) {
      throw localError(err, this.mustExist, key, 'read tail of')
    } finally {
      await fh?.close()
    }
  }

  async getRange(key: string, offset: number, length: number, _type: ReadType, etag?: string): Promise<Buffer> {
    let fh: fsp.FileHandle | undefined
    try {
      fh = await fsp.open(this.localPath(key), 'r')
      if (etag !== undefined && statEtag(await fh.stat()) !== etag) throw new EtagMismatchError(key)
      const bytes = await readAt(fh, offset, length)
      if (bytes.length !== length) throw new DesError('DES_CORRUPT', `${key}: range ${offset}+${length} passes the end of the object`)
      return bytes
    } catch (err) {
      throw localError(err, this.mustExist, key, 'read')
    } finally {
      await fh?.close()
    }
  }

  async stream(key: string, range?: ByteRange, opts: StreamOptions = {}): Promise<ObjectStream> {
    let fh: fsp.FileHandle | undefined
    try {
      // Non-blocking: opening a FIFO put there would wait for a writer, holding a thread of the pool for good.
      fh = await fsp.open(this.localPath(key), fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0))
      const st = await fh.stat()
      // Only regular files are objects (as for localEtag and list): a folder, a device or a FIFO is none.
      if (!st.isFile()) throw new DesError('DES_NOT_FOUND', `no object ${key}`)
      if (opts.etag !== undefined && statEtag(st) !== opts.etag) throw new EtagMismatchError(key)
      const body = fh.createReadStream(range ? { start: range.start, end: range.end, autoClose: true } : { autoClose: true })
      fh = undefined // the stream owns it now
      return { body, objectSize: st.size, etag: statEtag(st) }
    } catch (err) {
      await fh?.close()
      throw localError(err, this.mustExist, key, 'open')
    }
  }

  /** Every regular file under the base directory, depth first, names sorted at each level. */
  async *list(): AsyncIterable<ListedObject> {
    let root: fs.Stats
    try {
      root = await fsp.stat(this.baseDir)
      if (!root.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
    } catch (err) {
      throw new DesError('DES_UNAVAILABLE', `the store's base directory (DES_BASE_DIR) is not reachable: ${(err as NodeJS.ErrnoException).code ?? err}`)
    }
    yield* this.walk('', new Set([dirId(root)]))
  }

  /** Files at the root, in directory order: a readdir of a flat store's root would read every shard's name. */
  async rootKeys(limit: number): Promise<string[]> {
    let dir: fs.Dir
    try {
      dir = await fsp.opendir(this.baseDir)
    } catch (err) {
      throw new DesError('DES_UNAVAILABLE', `the store's base directory (DES_BASE_DIR) is not reachable: ${(err as NodeJS.ErrnoException).code ?? err}`)
    }
    const keys: string[] = []
    try {
      for await (const d of dir) {
        // Folders are not counted: a nested store's root holds only its date folders.
        if (d.isFile() || d.isSymbolicLink()) keys.push(d.name)
        if (keys.length >= limit) break
      }
    } catch (err) {
      throw new DesError('DES_STORAGE', `list .: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    return keys
  }

  /** `ancestors`: the folders above (device and inode), so a link back up to one of them is not walked again and again. */
  private async *walk(dirKey: string, ancestors: ReadonlySet<string>): AsyncIterable<ListedObject> {
    let names: fs.Dirent[]
    try {
      names = await fsp.readdir(path.join(this.baseDir, dirKey), { withFileTypes: true })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') return // removed while we walked
      throw new DesError('DES_STORAGE', `list ${dirKey || '.'}: ${code ?? (err as Error).message}`)
    }
    // Bytewise, as S3 lists: `_bigFiles` after the date directories.
    names.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)))
    for (const d of names) {
      const key = dirKey ? `${dirKey}/${d.name}` : d.name
      let isDir = d.isDirectory()
      let st: fs.Stats | undefined
      if (d.isSymbolicLink()) {
        let broken: string | undefined
        st = await fsp.stat(this.localPath(key)).catch((err: NodeJS.ErrnoException) => {
          broken = err.code ?? err.message
          return undefined
        })
        // Listed, not skipped: what it stood for cannot be read, and a whole-store check must say so.
        if (broken !== undefined) {
          const link = await fsp.lstat(this.localPath(key)).catch(() => undefined)
          if (link) yield { key, size: 0, modifiedMs: link.mtimeMs, broken }
          continue
        }
        isDir = st?.isDirectory() ?? false
      }
      if (isDir) {
        const dir = st ?? (await fsp.stat(this.localPath(key)).catch(() => undefined))
        if (dir && !ancestors.has(dirId(dir))) yield* this.walk(key, new Set([...ancestors, dirId(dir)]))
        continue
      }
      if (!d.isFile() && !st?.isFile()) continue
      st ??= await fsp.stat(this.localPath(key)).catch(() => undefined)
      if (st) yield { key, size: st.size, modifiedMs: st.mtimeMs }
    }
  }

  async ping(): Promise<void> {
    let st: fs.Stats
    try {
      st = await fsp.stat(this.baseDir)
    } catch (err) {
      throw new DesError('DES_UNAVAILABLE', `DES_BASE_DIR ${this.baseDir} is not reachable: ${(err as NodeJS.ErrnoException).code ?? err}`)
    }
    if (!st.isDirectory()) throw new DesError('DES_UNAVAILABLE', `DES_BASE_DIR ${this.baseDir} is not a directory`)
  }
}
