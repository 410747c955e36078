// SIGHUP re-reads the authorized keys file (DES_AUTHORIZED_KEYS_PATH), as the
// original DES does: a key added or revoked there takes effect without a
// restart. Without a handler Node ends the process on SIGHUP, so the
// original's way to rotate keys would take the server down.

import cluster from 'node:cluster'
import { authorizedKeysFromFile, type AuthorizedKey } from '../config/authorized-keys'
import { describe } from '../errors'
import type { Logger } from './log'

/**
 * In a serving process: on SIGHUP, replace the contents of `keys` (the map
 * the signed-request check holds) with the file's. An invalid or unreadable
 * file keeps the keys in force and logs why: a half-edited file must not
 * lock every client out.
 */
export function reloadAuthorizedKeysOnHangup(keys: Map<string, AuthorizedKey>, file: string, logger: Logger): void {
  process.on('SIGHUP', () => {
    let fresh: Map<string, AuthorizedKey>
    try {
      fresh = authorizedKeysFromFile(file)
    } catch (err) {
      logger.error({ signal: 'SIGHUP', authorizedKeys: keys.size }, `authorized keys not reloaded, the ${keys.size} in force are kept: ${describe(err)}`)
      return
    }
    keys.clear()
    for (const [canonical, entry] of fresh) keys.set(canonical, entry)
    logger.info({ signal: 'SIGHUP', authorizedKeys: keys.size }, `authorized keys reloaded: ${keys.size}`)
  })
}

/** In the primary of `--workers N`: pass SIGHUP on to every worker, each of which reloads its keys. */
export function forwardHangupToWorkers(): void {
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP')
  })
}
