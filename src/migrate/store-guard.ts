// Which sources are files of the store being written. Once archived, a
// row's source is deleted; a row that names one of the store's own shards
// or BigFiles (a mistake in the table) would delete that file with it.

import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import type { MigrateConfig } from '../config/migrate'
import { DEFAULT_BIGFILES_PREFIX } from '../config/defaults'
import { DesError } from '../errors'
import { classifyKey, isStoreFolder } from '../verify/keys'
import type { ByteSource, ShardSources } from '../storage/source'
import { dirId, LocalSource } from '../storage/local'
import { S3Source } from '../storage/s3'
import { keyReached } from '../storage/s3-key'
import { localFileId, type SourceRef } from './sources'

/**
 * True when a source is a file of the store being written (one of its
 * shards or BigFiles, a `.des` file under another n_bits or layout, a
 * writer's lock or temp file; however the path is spelled: `..`, links, or
 * the store's folder mounted a second time elsewhere), or the file or folder
 * at the far end of one of the store's links (`folders` built with the
 * store's StoreLinks).
 */
export function ofTheStore(ref: SourceRef, store: ByteSource | ShardSources, packer: MigrateConfig['packer'], folders = new FolderKeys()): boolean {
  // Every place the store writes: one folder or bucket prefix, or each zone's.
  const roots = 'all' in store ? store.all() : [store]
  return roots.some((root) => {
    let key: string | null
    if (ref.kind === 'local' && root instanceof LocalSource) {
      key = folders.keyOf(root.baseDir, ref.path)
    } else if (ref.kind === 's3' && root instanceof S3Source) {
      // Both as such a server reaches them: a prefix `/archive/` writes `archive/` there.
      const reached = keyReached(ref.key)
      const rootReached = root.prefix === '' ? '' : keyReached(root.prefix)
      key = ref.bucket === root.bucket && reached.startsWith(rootReached) ? reached.slice(rootReached.length) : null
    } else key = null
    if (key === null) return false
    // A `.des` at a name this config's readers never ask for is still the store's (written with another
    // n_bits or layout), as are a writer's lock and temp files: only what the store never made may go.
    const kind = classifyKey(key, packer.layout, packer.nBits, packer.bigfilesPrefix ?? DEFAULT_BIGFILES_PREFIX).type
    return kind !== 'other'
  })
}

/**
 * Where local files sit under a root folder, found by the folders' identity
 * (device and inode), not by how their paths are spelled: a bind mount of
 * the root (the same volume mounted twice) has other paths but the same
 * identity. Folders are looked at once per instance (a batch's rows share
 * a few folders).
 */
export class FolderKeys {
  private readonly ids = new Map<string, string | null>()
  /** A folder's path under each root, by root identity and folder. */
  private readonly under = new Map<string, string | null>()

  /** `links`: the store's entries that are symlinks; what they point at is under the root too, at their key. */
  constructor(private readonly links = StoreLinks.none) {}

  /** The file's key under `root` ('/'-separated), or null when it is not under it. */
  keyOf(root: string, file: string): string | null {
    const rootId = this.idOf(root)
    if (rootId === null) return null
    const linked = this.links.fileKey(rootId, file)
    if (linked !== undefined) return linked
    const real = realOrResolved(file)
    const folder = this.folderUnder(rootId, path.dirname(real))
    return folder === null ? null : folder === '' ? path.basename(real) : `${folder}/${path.basename(real)}`
  }

  private folderUnder(rootId: string, folder: string): string | null {
    const cached = this.under.get(`${rootId}\0${folder}`)
    if (cached !== undefined) return cached
    let found: string | null
    const id = this.idOf(folder)
    const linked = id === null ? undefined : this.links.folderKey(rootId, id)
    if (id === rootId) found = ''
    else if (linked !== undefined) found = linked
    else {
      const parent = path.dirname(folder)
      const above = parent === folder ? null : this.folderUnder(rootId, parent)
      found = above === null ? null : above === '' ? path.basename(folder) : `${above}/${path.basename(folder)}`
    }
    this.under.set(`${rootId}\0${folder}`, found)
    return found
  }

  private idOf(folder: string): string | null {
    let id = this.ids.get(folder)
    if (id === undefined) {
      id = folderId(folder)
      this.ids.set(folder, id)
    }
    return id
  }
}

/** A local root's links: the keys of the folders and of the files they point at, by those targets' identities. */
interface RootLinks {
  folders: Map<string, string>
  files: Map<string, string>
}

/**
 * The entries of a local store that are symlinks, by the identity (device
 * and inode) of what they point at. The packer writes a shard through its
 * link (docs/FORMAT.md), so the file at the far end holds the shard's bytes:
 * a row naming that file, however its path is spelled, names the store's
 * file, and deleting it would empty the shard. Collected once per cycle: a
 * readdir of the store's folder and of each folder readers look in (date
 * folders, BigFile folders), a stat of the links alone; any shard may be
 * linked, whatever dates the cycle's rows have.
 */
export class StoreLinks {
  static readonly none = new StoreLinks(new Map())

  /** By the identity of the root folder. */
  private constructor(private readonly byRoot: Map<string, RootLinks>) {}

  /** The links of every local folder the store writes to (none for S3). */
  static async collect(store: ByteSource | ShardSources, packer: MigrateConfig['packer']): Promise<StoreLinks> {
    const roots = ('all' in store ? store.all() : [store]).filter((r): r is LocalSource => r instanceof LocalSource)
    const byRoot = new Map<string, RootLinks>()
    for (const root of roots) {
      const rootId = folderId(root.baseDir)
      if (rootId === null || byRoot.has(rootId)) continue
      const links: RootLinks = { folders: new Map(), files: new Map() }
      await collectIn(root.baseDir, '', links, packer)
      if (links.folders.size > 0 || links.files.size > 0) byRoot.set(rootId, links)
    }
    return new StoreLinks(byRoot)
  }

  /** The key of a linked folder of the root, by the identity of the folder it points at. */
  folderKey(rootId: string, id: string): string | undefined {
    return this.byRoot.get(rootId)?.folders.get(id)
  }

  /** The key of a linked file of the root that `file` is (its far end, or the link itself). */
  fileKey(rootId: string, file: string): string | undefined {
    const links = this.byRoot.get(rootId)
    if (links === undefined || links.files.size === 0) return undefined
    const id = localFileId(file)
    return id === undefined ? undefined : links.files.get(id)
  }
}

const BOTH_LAYOUTS = ['nested', 'flat'] as const

/**
 * Records the links among `dir`'s entries (a store file's or a store
 * folder's name: what ofTheStore counts as the store's), and goes into the
 * folders readers look in, in either layout (a store written under another
 * layout is still the store's). At most two levels under the root, so a
 * link back up is not walked again.
 */
async function collectIn(dir: string, dirKey: string, links: RootLinks, packer: MigrateConfig['packer']): Promise<void> {
  const bigfilesPrefix = packer.bigfilesPrefix ?? DEFAULT_BIGFILES_PREFIX
  let entries: fs.Dirent[]
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true })
  } catch (err) {
    // A folder gone holds no link. One that cannot be read may hold links
    // unseen, whose far ends a row could name: the cycle stops, and nothing
    // is archived or deleted on a guess.
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return
    throw new DesError('DES_IO', `cannot read the store's folder ${dirKey === '' ? '(its root)' : dirKey} to find its links: ${(err as Error).message}`)
  }
  for (const entry of entries) {
    const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`
    const at = path.join(dir, entry.name)
    const storeFolder = isStoreFolder(key, BOTH_LAYOUTS, bigfilesPrefix)
    if (entry.isSymbolicLink()) {
      const target = await fsp.stat(at).catch(() => undefined)
      if (target?.isDirectory() && storeFolder) links.folders.set(dirId(target), key)
      else if (target?.isFile() && classifyKey(key, packer.layout, packer.nBits, bigfilesPrefix).type !== 'other') {
        const id = localFileId(at)
        if (id !== undefined) links.files.set(id, key)
      }
      if (!target?.isDirectory()) continue
    } else if (!entry.isDirectory()) continue
    if (storeFolder) await collectIn(at, key, links, packer)
  }
}

/**
 * A folder's identity; null when it is none: absent, not a folder, or not
 * reachable (a path through a file, a link loop, too long). A row may name
 * any of those; its source check says why it is bad, the cycle goes on.
 */
function folderId(folder: string): string | null {
  try {
    const st = fs.statSync(folder, { throwIfNoEntry: false })
    return st?.isDirectory() ? dirId(st) : null
  } catch {
    return null
  }
}

/** The path with symlinks followed where it exists (else as resolved). */
function realOrResolved(p: string): string {
  try {
    return fs.realpathSync(p)
  } catch {
    return path.resolve(p)
  }
}
