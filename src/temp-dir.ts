// Temp folders of pack (a spilled plan, S3 parts on their way) and convert
// (S3 objects on their way): made under the given root or the OS temp
// directory (TMPDIR), and a root that cannot hold one refused by name.

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DesError } from './errors'

/** What the root not being usable looks like, and how to say it. */
const UNUSABLE_ROOT: Record<string, string> = {
  ENOENT: 'does not exist',
  ENOTDIR: 'is not a directory',
  EACCES: 'is not writable by this user',
  EPERM: 'is not writable by this user',
  EROFS: 'is on a read-only file system',
}

/** A root that cannot hold a temp folder is a setting to change (exit 2); any other error is returned as it is. */
function tempDirError(err: unknown, root: string | undefined): unknown {
  const why = UNUSABLE_ROOT[(err as NodeJS.ErrnoException | null)?.code ?? '']
  if (why === undefined) return err
  const which = root === undefined ? `the temp directory ${os.tmpdir()} (TMPDIR)` : `the temp directory ${root}`
  return new DesError('DES_CONFIG', `${which} ${why}: set TMPDIR to a writable directory`, { cause: err })
}

/**
 * Folders made here and not yet removed with removeTempDir: a command that is
 * stopped (SIGTERM, SIGINT) removes them before it exits (removeTempDirsSync).
 */
const live = new Set<string>()

/** A new folder `<root>/<prefix>XXXXXX`; `root` defaults to the OS temp directory. */
export function makeTempDirSync(prefix: string, root?: string): string {
  try {
    const dir = fs.mkdtempSync(path.join(root ?? os.tmpdir(), prefix))
    live.add(dir)
    return dir
  } catch (err) {
    throw tempDirError(err, root)
  }
}

/** `makeTempDirSync`, without blocking. */
export async function makeTempDir(prefix: string, root?: string): Promise<string> {
  try {
    const dir = await fs.promises.mkdtemp(path.join(root ?? os.tmpdir(), prefix))
    live.add(dir)
    return dir
  } catch (err) {
    throw tempDirError(err, root)
  }
}

/** Removes a folder made by makeTempDir and all it holds. */
export async function removeTempDir(dir: string): Promise<void> {
  live.delete(dir)
  await fs.promises.rm(dir, { recursive: true, force: true })
}

/** `removeTempDir`, blocking. */
export function removeTempDirSync(dir: string): void {
  live.delete(dir)
  fs.rmSync(dir, { recursive: true, force: true })
}

/** Removes every folder made here and not removed yet (a command stopped by a signal); returns how many. */
export function removeTempDirsSync(): number {
  const dirs = [...live]
  for (const dir of dirs) removeTempDirSync(dir)
  return dirs.length
}
