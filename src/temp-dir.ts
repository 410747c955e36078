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

/** A new folder `<root>/<prefix>XXXXXX`; `root` defaults to the OS temp directory. */
export function makeTempDirSync(prefix: string, root?: string): string {
  try {
    return fs.mkdtempSync(path.join(root ?? os.tmpdir(), prefix))
  } catch (err) {
    throw tempDirError(err, root)
  }
}

/** `makeTempDirSync`, without blocking. */
export async function makeTempDir(prefix: string, root?: string): Promise<string> {
  try {
    return await fs.promises.mkdtemp(path.join(root ?? os.tmpdir(), prefix))
  } catch (err) {
    throw tempDirError(err, root)
  }
}
