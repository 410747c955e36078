// Which sources are files of the store being written. Once archived, a
// row's source is deleted; a row that names one of the store's own shards
// or BigFiles (a mistake in the table) would delete that file with it.

import * as fs from 'node:fs'
import * as path from 'node:path'
import type { MigrateConfig } from '../config/migrate'
import { DEFAULT_BIGFILES_PREFIX } from '../config/defaults'
import { classifyKey } from '../verify/keys'
import type { ByteSource, ShardSources } from '../storage/source'
import { dirId, LocalSource } from '../storage/local'
import { S3Source } from '../storage/s3'
import { keyReached } from '../storage/s3-key'
import type { SourceRef } from './sources'

/**
 * True when a source is a file of the store being written (one of its
 * shards or BigFiles, a `.des` file under another n_bits or layout, a
 * writer's lock or temp file; however the path is spelled: `..`, links, or
 * the store's folder mounted a second time elsewhere).
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

  /** The file's key under `root` ('/'-separated), or null when it is not under it. */
  keyOf(root: string, file: string): string | null {
    const rootId = this.idOf(root)
    if (rootId === null) return null
    const real = realOrResolved(file)
    const folder = this.folderUnder(rootId, path.dirname(real))
    return folder === null ? null : folder === '' ? path.basename(real) : `${folder}/${path.basename(real)}`
  }

  private folderUnder(rootId: string, folder: string): string | null {
    const cached = this.under.get(`${rootId}\0${folder}`)
    if (cached !== undefined) return cached
    let found: string | null
    if (this.idOf(folder) === rootId) found = ''
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
