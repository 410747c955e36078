// Optional API-key auth: keys held as sha256 hashes, compared in constant
// time; `Authorization: Bearer <key>` or `X-API-Key: <key>`. Off when no key
// is configured.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { ApiKey } from '../config/env'
import { DesError } from '../errors'

export class Auth {
  private readonly keys: ApiKey[]
  private readonly open: Set<string>

  /**
   * `openPaths` are compared exactly with the request's path (the app routes
   * case-sensitively and strictly, so that is the path its router uses).
   * A key without scopes is refused (DES_CONFIG), as the config loader does.
   */
  constructor(keys: ApiKey[] = [], openPaths: string[] = []) {
    for (const k of keys) if (k.scopes.length === 0) throw new DesError('DES_CONFIG', `API key ${JSON.stringify(k.name)} has no scopes`)
    this.keys = keys
    this.open = new Set(openPaths)
  }

  get enabled(): boolean {
    return this.keys.length > 0
  }

  /** True when `path` (no query) needs no key. */
  isOpen(path: string): boolean {
    return !this.enabled || this.open.has(path)
  }

  /** The key a request presents, or undefined. */
  static presented(req: IncomingMessage): string | undefined {
    const h = req.headers.authorization
    if (h && h.length > 7 && h.slice(0, 7).toLowerCase() === 'bearer ') return h.slice(7).trim()
    const x = req.headers['x-api-key']
    return typeof x === 'string' && x !== '' ? x.trim() : undefined
  }

  /**
   * null when the request may go on; else DES_UNAUTHORIZED (no or unknown key,
   * 401) or DES_FORBIDDEN (a key without `scope`, 403). `scope` undefined:
   * any valid key.
   */
  check(req: IncomingMessage, scope?: string): DesError | null {
    if (!this.enabled) return null
    const key = Auth.presented(req)
    if (key === undefined) return new DesError('DES_UNAUTHORIZED', 'an API key is required (Authorization: Bearer <key> or X-API-Key)')
    const hash = createHash('sha256').update(key, 'utf8').digest()
    let match: ApiKey | undefined
    // Every key is compared, so the time taken does not say which one matched.
    for (const k of this.keys) if (timingSafeEqual(k.hash, hash) && match === undefined) match = k
    if (!match) return new DesError('DES_UNAUTHORIZED', 'unknown API key')
    if (scope !== undefined && !match.scopes.includes(scope) && !match.scopes.includes('admin')) {
      return new DesError('DES_FORBIDDEN', `this API key lacks the "${scope}" scope`)
    }
    return null
  }
}
