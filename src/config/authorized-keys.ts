// DES_AUTHORIZED_KEYS_PATH: the original DES's authorized keys file (YAML),
// read and validated once at start-up as the original validates it, so the
// same file works unchanged:
//
//   authorized_keys:
//     - public_key: "ssh-ed25519 AAAA… alice@laptop"
//       permissions: [read]
//       allowed_prefixes: ["tenant-a/"]      # optional
//       excluded_prefixes: ["tenant-a/tmp"]  # optional
//       expires_at: "2026-01-01T00:00:00Z"   # optional
//       max_requests_per_hour: 1000          # optional
//       comment: alice                       # optional
//
// An empty file is no keys. Messages name an entry by its number and comment,
// never by its key; a YAML error by line and column only.

import * as fs from 'node:fs'
import { parseSshPublicKey, SshKeyError, type SshPublicKey } from '../auth/ssh-public-key'
import { DesError } from '../errors'
import { parseTimestamp } from '../native'
import { parseYaml, whereParsingStopped } from './yaml'

/** One entry of the file, validated. */
export interface AuthorizedKey {
  key: SshPublicKey
  /** What the key may do; `read` is what GET/HEAD /files asks for. */
  permissions: string[]
  /** A uid must start with one of these (none or empty: any uid). */
  allowedPrefixes?: string[]
  /** A uid must start with none of these. */
  excludedPrefixes?: string[]
  /** Milliseconds since the epoch after which the key is refused. */
  expiresAtMs?: number
  /** Requests admitted in any sliding hour. */
  maxRequestsPerHour?: number
  comment?: string
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string')
}

/** One entry, or a DesError naming it (`where` already says which). */
function parseEntry(raw: unknown, where: string): AuthorizedKey {
  const fail = (why: string) => new DesError('DES_CONFIG', `${where}: ${why}`)
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw fail('an entry must be a mapping')
  const entry = raw as Record<string, unknown>
  if (typeof entry.public_key !== 'string') throw fail('public_key must be a string')
  let key: SshPublicKey
  try {
    key = parseSshPublicKey(entry.public_key)
  } catch (err) {
    if (err instanceof SshKeyError) throw fail(`invalid public_key: ${err.message}`)
    throw err
  }
  const permissions = entry.permissions ?? []
  if (!isStringList(permissions)) throw fail('permissions must be a list of strings')
  const allowed = entry.allowed_prefixes ?? undefined
  if (allowed !== undefined && !isStringList(allowed)) throw fail('allowed_prefixes must be a list of strings')
  const excluded = entry.excluded_prefixes ?? undefined
  if (excluded !== undefined && !isStringList(excluded)) throw fail('excluded_prefixes must be a list of strings')
  let expiresAtMs: number | undefined
  if (entry.expires_at !== undefined && entry.expires_at !== null) {
    if (typeof entry.expires_at !== 'string') throw fail('expires_at must be a string')
    try {
      // The ISO-8601 forms of created_at (no offset is UTC, as in the original).
      expiresAtMs = parseTimestamp(entry.expires_at) * 1000
    } catch {
      throw fail(`expires_at ${JSON.stringify(entry.expires_at)} is not an ISO-8601 timestamp (e.g. 2026-01-01T00:00:00Z)`)
    }
  }
  const max = entry.max_requests_per_hour ?? undefined
  if (max !== undefined) {
    if (typeof max !== 'number' || !Number.isSafeInteger(max)) throw fail('max_requests_per_hour must be an integer')
    if (max <= 0) throw fail('max_requests_per_hour must be positive')
  }
  const comment = entry.comment ?? undefined
  if (comment !== undefined && typeof comment !== 'string') throw fail('comment must be a string')
  return { key, permissions, allowedPrefixes: allowed, excludedPrefixes: excluded, expiresAtMs, maxRequestsPerHour: max, comment }
}

/**
 * The keys of an authorized keys file, by canonical key (type and blob):
 * a key listed twice is its last entry, as in the original.
 */
export function authorizedKeysFromFile(file: string): Map<string, AuthorizedKey> {
  const where = `DES_AUTHORIZED_KEYS_PATH=${file}`
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new DesError('DES_CONFIG', `${where}: ${(err as Error).message}`)
  }
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (err) {
    // The parser's message would quote the line: a key.
    throw new DesError('DES_CONFIG', `${where}: not valid YAML ${whereParsingStopped(err, text)}`)
  }
  const keys = new Map<string, AuthorizedKey>()
  if (doc === null || doc === undefined) return keys
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new DesError('DES_CONFIG', `${where}: the file must be a mapping with an authorized_keys list`)
  const list = (doc as Record<string, unknown>).authorized_keys ?? []
  if (!Array.isArray(list)) throw new DesError('DES_CONFIG', `${where}: authorized_keys must be a list`)
  list.forEach((raw, i) => {
    const comment = (raw as { comment?: unknown } | null)?.comment
    const name = `authorized_keys entry #${i + 1}${typeof comment === 'string' && comment ? ` (comment ${JSON.stringify(comment)})` : ''}`
    const entry = parseEntry(raw, `${where}: ${name}`)
    keys.set(entry.key.canonical, entry)
  })
  return keys
}
