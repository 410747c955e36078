// SIGHUP re-reads the authorized keys file (DES_AUTHORIZED_KEYS_PATH), as the
// original DES does: a key added or revoked there takes effect without a
// restart. Without a handler Node ends the process on SIGHUP, so the
// original's way to rotate keys would take the server down.

import cluster from 'node:cluster'
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

/** The parts of node:cluster the forwarding uses (a test hands in its own). */
export interface HangupCluster {
  readonly workers?: Record<string, HangupWorker | undefined>
  on(event: 'listening' | 'exit', listener: (worker: HangupWorker) => void): unknown
}
export interface HangupWorker {
  readonly id: number
  readonly process: { kill(signal?: NodeJS.Signals): unknown }
}

/**
 * In the primary of `--workers N`: pass SIGHUP on to every worker, each of
 * which reloads its keys. Only to a worker that listens: one still starting
 * (a restart after a crash) has no handler yet, so SIGHUP would end it, and
 * the supervisor takes a worker that dies before listening for a bad config
 * and stops them all. It may have read the file before the change, so it
 * gets the SIGHUP once it listens.
 */
export function forwardHangupToWorkers(deps: { cluster: HangupCluster; signals: { on(signal: 'SIGHUP', listener: () => void): unknown } } = { cluster: cluster as unknown as HangupCluster, signals: process }): void {
  const listening = new Set<number>()
  const owed = new Set<number>()
  deps.cluster.on('listening', (w) => {
    listening.add(w.id)
    if (owed.delete(w.id)) w.process.kill('SIGHUP')
  })
  deps.cluster.on('exit', (w) => {
    listening.delete(w.id)
    owed.delete(w.id)
  })
  deps.signals.on('SIGHUP', () => {
    for (const w of Object.values(deps.cluster.workers ?? {})) {
      if (!w) continue
      if (listening.has(w.id)) w.process.kill('SIGHUP')
      else owed.add(w.id)
    }
  })
}
