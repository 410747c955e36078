// SIGHUP re-reads the authorized keys file (DES_AUTHORIZED_KEYS_PATH), as the
// original DES does: a key added or revoked there takes effect without a
// restart. Without a handler Node ends the process on SIGHUP, so the
// original's way to rotate keys would take the server down. (With
// `--workers`, the primary passes SIGHUP on: supervisor.ts.)

import * as fs from 'node:fs'
import { authorizedKeysFromFile, type AuthorizedKey } from '../config/authorized-keys'
import { describe } from '../errors'
import type { Logger } from './log'

/**
 * In a serving process: on SIGHUP, replace the contents of `keys` (the map
 * the signed-request check holds) with the file's. An invalid, unreadable
 * or empty file keeps the keys in force and logs why: a half-edited file
 * must not lock every client out, and one being rewritten (`cat > file`) is
 * empty for a moment. Every key is revoked with `authorized_keys: []`.
 */
export function reloadAuthorizedKeysOnHangup(keys: Map<string, AuthorizedKey>, file: string, logger: Logger, signals: { on(signal: 'SIGHUP', listener: () => void): unknown } = process): void {
  signals.on('SIGHUP', () => {
    let fresh: Map<string, AuthorizedKey>
    try {
      if (fs.readFileSync(file, 'utf8').trim() === '') throw new Error('the file is empty (write `authorized_keys: []` to revoke every key)')
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
