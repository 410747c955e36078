// The environment (SPEC §6) turned into a validated, typed config. This is the
// only module that reads process.env; a bad value is refused at start-up with
// a message that names the variable.

import * as fs from 'node:fs'
import { DesError } from '../errors'
import type { AuthorizedKey } from './authorized-keys'
import { availableCpus } from './cpus'
import { isEndpointUrl, isFolderName, isRegionName, FOLDER_NAME_EXPECTED, normalisePrefix, REGION_EXPECTED } from './checks'
import {
  DEFAULT_BIG_FILE_THRESHOLD,
  DEFAULT_BIGFILES_PREFIX,
  DEFAULT_INDEX_CACHE_BYTES,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_N_BITS,
  DEFAULT_S3_REGION,
  DEFAULT_TAIL_BYTES,
  DEFAULT_WRITE_PAST_CACHE,
  MAX_N_BITS,
  MIN_N_BITS,
} from './defaults'
import { parseYaml, whereParsingStopped } from './yaml'

export type Backend = 'local' | 's3' | 'multi_s3'
export type Layout = 'nested' | 'flat'

export interface S3Settings {
  bucket: string
  region: string
  endpoint?: string
  /** Key prefix, '' or ending in '/'. */
  prefix: string
  /** Path-style URLs (what MinIO and most S3-compatible servers want with an endpoint). */
  forcePathStyle: boolean
}

export interface DesConfig {
  backend: Backend
  baseDir: string
  nBits: number
  /**
   * Where `nBits` was set on purpose (`DES_N_BITS`, `--n-bits`); undefined
   * when it is the default. A zones file routes with its own n_bits, and one
   * set on purpose that differs is refused (src/config/zones.ts).
   */
  nBitsFrom?: string
  /**
   * Where writers write: `nested` = `<date>/<HEX>.des` (ours), `flat` =
   * `<date>_<HEX>_<NNNN>.des` (the reference packer's). The first of `readLayouts`.
   */
  layout: Layout
  /** Where readers look, in order (`DES_LAYOUT=nested,flat` while a store is converted). */
  readLayouts: Layout[]
  /** `'DES_LAYOUT'` when that variable chose the layout; undefined for the default (nested). */
  layoutFrom?: string
  s3?: S3Settings
  zonesConfig?: string
  bigFileThreshold: number
  /**
   * Largest inline payload a read will hold in memory, stored or decoded
   * (`DES_MAX_PAYLOAD_BYTES`; default 64 MiB, or the BigFile threshold when
   * that is larger). A larger size in an index is refused as damage.
   */
  maxPayloadBytes: number
  bigfilesPrefix: string
  /** Bytes of parsed indexes kept in memory. */
  indexCacheBytes: number
  /**
   * Bytes of decoded small payloads kept in memory (0 = off); undefined =
   * sized by `des serve` from the memory limit (src/config/memory.ts).
   */
  payloadCacheBytes: number | undefined
  /** Size of the suffix-range GET that fetches footer and index together. */
  tailBytes: number
  /** A local store's new shards are written past the page cache (DES_WRITE_PAST_CACHE). */
  writePastCache: boolean
  /**
   * How long a cached shard (its index, and finds and payloads taken from it)
   * is trusted before a request re-checks its version; undefined = 2 s for
   * local disk (a stat), 30 s for S3 (a suffix GET).
   */
  shardRecheckMs: number | undefined
  /**
   * A Range of a BigFile is served only from an object whose whole bytes
   * matched its sha256 (read once per version; DES_CHECK_BIGFILE_RANGES).
   */
  checkBigfileRanges: boolean
}

type Env = Record<string, string | undefined>

function bad(name: string, value: string, why: string): DesError {
  return new DesError('DES_CONFIG', `${name}=${JSON.stringify(value)} is invalid: ${why}`)
}

/** An integer variable within [min, max], or the default when unset. */
export function intVar(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return def
  if (!/^\d+$/.test(raw.trim())) throw bad(name, raw, 'expected a whole number')
  const n = Number(raw.trim())
  if (n < min || n > max) throw bad(name, raw, `expected ${min}..${max}`)
  return n
}

/** An integer variable within [min, max], or undefined when unset. */
function optionalIntVar(env: Env, name: string, min: number, max: number): number | undefined {
  const raw = env[name]
  return raw === undefined || raw.trim() === '' ? undefined : intVar(env, name, 0, min, max)
}

/** One of a set of words, or the default when unset. */
export function enumVar<T extends string>(env: Env, name: string, def: T, allowed: readonly T[]): T {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return def
  const v = raw.trim().toLowerCase() as T
  if (!allowed.includes(v)) throw bad(name, raw, `expected one of ${allowed.join(', ')}`)
  return v
}

/** A true/false variable. */
export function boolVar(env: Env, name: string, def: boolean): boolean {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return def
  const v = raw.trim().toLowerCase()
  if (['1', 'true', 'yes', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'off'].includes(v)) return false
  throw bad(name, raw, 'expected true or false')
}

/**
 * The region of an S3 client whose setting names none: `AWS_REGION`, else
 * `AWS_DEFAULT_REGION`, else us-east-1 (the original's boto3 clients take the
 * environment's region too).
 */
export function awsDefaultRegion(env: Env = process.env): string {
  return env.AWS_REGION?.trim() || env.AWS_DEFAULT_REGION?.trim() || DEFAULT_S3_REGION
}

/** S3 settings from DES_S3_* (bucket required when `required`). */
export function s3FromEnv(env: Env, required: boolean): S3Settings | undefined {
  const bucket = env.DES_S3_BUCKET?.trim()
  if (!bucket) {
    if (required) throw new DesError('DES_CONFIG', 'DES_S3_BUCKET is required for DES_BACKEND=s3')
    return undefined
  }
  const endpoint = env.DES_S3_ENDPOINT_URL?.trim() || undefined
  if (endpoint && !isEndpointUrl(endpoint)) throw bad('DES_S3_ENDPOINT_URL', endpoint, 'expected an http(s) URL')
  const region = env.DES_S3_REGION?.trim()
  if (region && !isRegionName(region)) throw bad('DES_S3_REGION', region, REGION_EXPECTED)
  return {
    bucket,
    region: region || awsDefaultRegion(env),
    endpoint,
    prefix: normalisePrefix(env.DES_S3_PREFIX),
    forcePathStyle: boolVar(env, 'DES_S3_FORCE_PATH_STYLE', Boolean(endpoint)),
  }
}

/**
 * `DES_BACKEND`; unset, it is `s3` when `DES_S3_BUCKET` names a bucket (as
 * the original picks S3 then), else `local`.
 */
export function backendVar(env: Env = process.env): Backend {
  return enumVar<Backend>(env, 'DES_BACKEND', env.DES_S3_BUCKET?.trim() ? 's3' : 'local', ['local', 's3', 'multi_s3'])
}

/**
 * Start-up warnings for a backend the original would pick otherwise: with
 * `DES_S3_BUCKET` set, it serves S3 even when `DES_BACKEND=local`.
 */
export function backendNotices(env: Env = process.env): string[] {
  const explicit = env.DES_BACKEND?.trim().toLowerCase()
  return explicit === 'local' && env.DES_S3_BUCKET?.trim()
    ? ['DES_BACKEND=local with DES_S3_BUCKET set: serving the local store (the original DES would serve the bucket); unset one of them']
    : []
}

/** Reads and validates the whole DES environment. */
export function loadConfig(env: Env = process.env): DesConfig {
  const backend = backendVar(env)
  const zonesConfig = env.DES_ZONES_CONFIG?.trim() || undefined
  if (backend === 'multi_s3' && !zonesConfig) throw new DesError('DES_CONFIG', 'DES_ZONES_CONFIG is required for DES_BACKEND=multi_s3')
  const layouts = layoutsVar(env, 'DES_LAYOUT')
  const bigFileThreshold = intVar(env, 'DES_BIG_FILE_THRESHOLD_BYTES', DEFAULT_BIG_FILE_THRESHOLD, 0, Number.MAX_SAFE_INTEGER)
  return {
    backend,
    baseDir: env.DES_BASE_DIR?.trim() || './des-data',
    nBits: loadNBits(env),
    nBitsFrom: nBitsFromVar(env),
    layout: layouts[0],
    readLayouts: layouts,
    layoutFrom: env.DES_LAYOUT?.trim() ? 'DES_LAYOUT' : undefined,
    s3: s3FromEnv(env, backend === 's3'),
    zonesConfig,
    bigFileThreshold,
    maxPayloadBytes: loadMaxPayloadBytes(env),
    bigfilesPrefix: bigfilesPrefixVar(env),
    indexCacheBytes: intVar(env, 'DES_INDEX_CACHE_BYTES', DEFAULT_INDEX_CACHE_BYTES, 0, Number.MAX_SAFE_INTEGER),
    payloadCacheBytes: env.DES_PAYLOAD_CACHE_BYTES?.trim().toLowerCase() === 'auto' ? undefined : optionalIntVar(env, 'DES_PAYLOAD_CACHE_BYTES', 0, Number.MAX_SAFE_INTEGER),
    tailBytes: loadTailBytes(env),
    writePastCache: loadWritePastCache(env),
    shardRecheckMs: optionalIntVar(env, 'DES_SHARD_RECHECK_MS', 0, 24 * 3600 * 1000),
    checkBigfileRanges: boolVar(env, 'DES_CHECK_BIGFILE_RANGES', true),
  }
}

/**
 * `DES_MAX_PAYLOAD_BYTES`: the largest inline payload any read decodes
 * (default 64 MiB, or the BigFile threshold when that is larger): every
 * command that reads payloads (serve, cat, verify, migrate, convert) sets it.
 */
export function loadMaxPayloadBytes(env: Env = process.env): number {
  const bigFileThreshold = intVar(env, 'DES_BIG_FILE_THRESHOLD_BYTES', DEFAULT_BIG_FILE_THRESHOLD, 0, Number.MAX_SAFE_INTEGER)
  return intVar(env, 'DES_MAX_PAYLOAD_BYTES', Math.max(DEFAULT_MAX_PAYLOAD_BYTES, bigFileThreshold), 1, Number.MAX_SAFE_INTEGER)
}

/** `DES_N_BITS` alone (4..16, default 8), for commands that need only the routing (`des locate`). */
export function loadNBits(env: Env = process.env): number {
  return intVar(env, 'DES_N_BITS', DEFAULT_N_BITS, MIN_N_BITS, MAX_N_BITS)
}

/** `'DES_N_BITS'` when the variable sets n_bits, undefined when it is unset or empty (the default applies). */
export function nBitsFromVar(env: Env = process.env): string | undefined {
  return env.DES_N_BITS?.trim() ? 'DES_N_BITS' : undefined
}

/** The n_bits of `config` when it was set on purpose (and where), for the zones file to check against. */
export function explicitNBits(config: Pick<DesConfig, 'nBits' | 'nBitsFrom'>): ExplicitNBits | undefined {
  return config.nBitsFrom === undefined ? undefined : { nBits: config.nBits, from: config.nBitsFrom }
}

/** An n_bits set on purpose, and what set it (`DES_N_BITS`, `--n-bits`, `packer.n_bits of FILE`). */
export interface ExplicitNBits {
  nBits: number
  from: string
}

/** `DES_TAIL_BYTES` alone: the suffix read that fetches footer and index together (12 B..1 GiB, default 64 KiB). */
export function loadTailBytes(env: Env = process.env): number {
  return intVar(env, 'DES_TAIL_BYTES', DEFAULT_TAIL_BYTES, 12, 1024 * 1024 * 1024)
}

/**
 * `DES_WRITE_PAST_CACHE` alone (default true): whether the packer writes a
 * local store's new shards past the page cache (O_DIRECT where the
 * filesystem takes it; docs/FORMAT.md).
 */
export function loadWritePastCache(env: Env = process.env): boolean {
  return boolVar(env, 'DES_WRITE_PAST_CACHE', DEFAULT_WRITE_PAST_CACHE)
}

/** The layout `DES_LAYOUT` says files are written in (its first), for commands that need only that (`des locate`). */
export function loadLayout(env: Env = process.env): Layout {
  return layoutsVar(env, 'DES_LAYOUT')[0]
}

/** `DES_BIGFILES_PREFIX` alone (default `_bigFiles`), for commands that read one shard file (`des cat`, `des verify SHARD`). */
export function loadBigfilesPrefix(env: Env = process.env): string {
  return bigfilesPrefixVar(env)
}

/**
 * `DES_LAYOUT`: `nested` (default), `flat`, or both in the order readers look
 * (`nested,flat` while a store is being converted); writers use the first.
 */
export function layoutsVar(env: Env, name: string): Layout[] {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return ['nested']
  const list = raw.split(',').map((s) => s.trim().toLowerCase())
  for (const l of list) if (l !== 'nested' && l !== 'flat') throw bad(name, raw, 'expected nested, flat, or both in reading order (nested,flat)')
  if (new Set(list).size !== list.length) throw bad(name, raw, 'a layout is named twice')
  return list as Layout[]
}

function bigfilesPrefixVar(env: Env): string {
  const raw = env.DES_BIGFILES_PREFIX
  if (raw === undefined || raw.trim() === '') return DEFAULT_BIGFILES_PREFIX
  if (!isFolderName(raw)) throw bad('DES_BIGFILES_PREFIX', raw, FOLDER_NAME_EXPECTED)
  return raw
}

// ---------------------------------------------------------------------------
// `des serve`: the HTTP server's own settings (SPEC §7), on top of DesConfig.

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/** One API key, held only as the sha256 of its text. */
export interface ApiKey {
  /** sha256 of the key (32 bytes). */
  hash: Buffer
  /** What the key may do: `read` (GET /files), `metrics`, `admin` (everything). */
  scopes: string[]
  /** A label for logs (never the key itself). */
  name: string
}

export interface ServeConfig {
  host: string
  port: number
  /** Worker processes (node:cluster); 1 = serve in this process. Default: the CPUs this process may use. */
  workers: number
  logLevel: LogLevel
  /** API keys; auth is off when empty. */
  apiKeys: ApiKey[]
  /**
   * The original's authorized keys (DES_AUTHORIZED_KEYS_PATH), by canonical
   * key; undefined = signed requests are not checked (their headers are ignored).
   */
  authorizedKeys?: Map<string, AuthorizedKey>
  /** The file `authorizedKeys` came from, read again on SIGHUP as the original does. */
  authorizedKeysPath?: string
  /** DES_REQUIRE_AUTHENTICATION: no request is served without an API key or a signature. */
  requireAuthentication: boolean
  /** Nonces of signed requests held at most (DES_AUTH_MAX_NONCES); a new one past that is refused. */
  maxNonces: number
  /** Paths served without a key even when auth is on. */
  authOpenPaths: string[]
  /** How long SIGTERM waits for in-flight requests before closing connections. */
  shutdownTimeoutMs: number
  /** S3 client: connect timeout, per-request timeout, attempts (SDK standard retry). */
  s3ConnectTimeoutMs: number
  s3RequestTimeoutMs: number
  s3MaxAttempts: number
  /** Send zstd entries as stored (`Content-Encoding: zstd`) to clients that accept zstd. */
  zstdPassthrough: boolean
  /** `Cache-Control` of file responses (`DES_CACHE_CONTROL`); undefined = no such header. */
  cacheControl?: string
}

const SCOPES = ['read', 'metrics', 'admin']

// node:crypto and the SSH key reader are loaded by the serve settings that
// use them: a few ms of the start of every other command (des pack, des cat).

function sha256(text: string): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createHash } = require('node:crypto') as typeof import('node:crypto')
  return createHash('sha256').update(text, 'utf8').digest()
}

function authorizedKeysFromFile(file: string): Map<string, AuthorizedKey> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('./authorized-keys') as typeof import('./authorized-keys')).authorizedKeysFromFile(file)
}

function parseScopes(name: string, raw: unknown, where: string): string[] {
  const list = raw === undefined ? ['read'] : Array.isArray(raw) ? raw : String(raw).split(/[+ ]/)
  const scopes = list.map((s) => String(s).trim().toLowerCase()).filter(Boolean)
  for (const s of scopes) {
    if (!SCOPES.includes(s)) throw new DesError('DES_CONFIG', `${where}: key ${JSON.stringify(name)} has unknown scope ${JSON.stringify(s)} (expected ${SCOPES.join(', ')})`)
  }
  // A key that may do nothing is a mistake (a trailing ":" or "scopes: []"), not a way to say "read".
  if (scopes.length === 0) throw new DesError('DES_CONFIG', `${where}: key ${JSON.stringify(name)} has no scopes (give ${SCOPES.join(', ')}, or leave scopes out for read)`)
  return scopes
}

/**
 * Why a key could never be presented as it is written, or undefined: a
 * client sends it in a header, which Node reads as Latin-1 and trims, so a
 * key outside printable ASCII, or with spaces around it, would never match.
 */
function unusableKey(key: string): string | undefined {
  if (!/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(key)) return 'is not printable ASCII without spaces around it (a header cannot carry it as it is)'
  return undefined
}

/**
 * `DES_API_KEYS`: comma-separated keys, each optionally `key:scope+scope`
 * (default scope `read`). The plain keys are hashed here and not kept.
 */
export function apiKeysFromEnv(raw: string | undefined): ApiKey[] {
  if (!raw || raw.trim() === '') return []
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item, i) => {
      const colon = item.indexOf(':')
      const key = colon < 0 ? item : item.slice(0, colon)
      if (key.length < 8) throw new DesError('DES_CONFIG', `DES_API_KEYS: key #${i + 1} is shorter than 8 characters`)
      const why = unusableKey(key)
      if (why) throw new DesError('DES_CONFIG', `DES_API_KEYS: key #${i + 1} ${why}`)
      const scopes = parseScopes(`#${i + 1}`, colon < 0 ? undefined : item.slice(colon + 1), 'DES_API_KEYS')
      return { hash: sha256(key), scopes, name: `env#${i + 1}` }
    })
}

/**
 * `DES_API_KEYS_FILE`: JSON or YAML, `{keys: [{name, key | sha256, scopes}]}`
 * (or the list alone). `sha256` (hex of the key) keeps plain keys out of the file.
 */
export function apiKeysFromFile(file: string): ApiKey[] {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new DesError('DES_CONFIG', `DES_API_KEYS_FILE=${file}: ${(err as Error).message}`)
  }
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (err) {
    // The parser's message would quote the line: an API key.
    throw new DesError('DES_CONFIG', `DES_API_KEYS_FILE=${file}: not valid YAML/JSON ${whereParsingStopped(err, text)}`)
  }
  const list = Array.isArray(doc) ? doc : (doc as { keys?: unknown } | null)?.keys
  if (!Array.isArray(list)) throw new DesError('DES_CONFIG', `DES_API_KEYS_FILE=${file}: expected a list of keys or {keys: [...]}`)
  return list.map((k: Record<string, unknown>, i) => {
    const name = typeof k?.name === 'string' && k.name ? k.name : `file#${i + 1}`
    const where = `DES_API_KEYS_FILE=${file}`
    let hash: Buffer
    if (typeof k?.sha256 === 'string') {
      if (!/^[0-9a-fA-F]{64}$/.test(k.sha256)) throw new DesError('DES_CONFIG', `${where}: key ${JSON.stringify(name)}: sha256 must be 64 hex digits`)
      hash = Buffer.from(k.sha256, 'hex')
    } else if (typeof k?.key === 'string' && k.key.length >= 8) {
      const why = unusableKey(k.key)
      if (why) throw new DesError('DES_CONFIG', `${where}: key ${JSON.stringify(name)} ${why}`)
      hash = sha256(k.key)
    } else {
      throw new DesError('DES_CONFIG', `${where}: key ${JSON.stringify(name)} needs "key" (8+ characters) or "sha256"`)
    }
    return { hash, scopes: parseScopes(name, k.scopes, where), name }
  })
}

/** `DES_CACHE_CONTROL`: a header value (printable ASCII), or undefined when unset or empty. */
function cacheControlVar(env: Env): string | undefined {
  const raw = env.DES_CACHE_CONTROL
  if (raw === undefined || raw.trim() === '') return undefined
  if (!/^[\x20-\x7e]{1,256}$/.test(raw.trim())) throw bad('DES_CACHE_CONTROL', raw, 'expected a Cache-Control header value (printable ASCII, at most 256 characters)')
  return raw.trim()
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** `DES_LOG_LEVEL`: the level of every command's log lines (`des serve`'s on stdout, the others' on stderr). */
export function loadLogLevel(env: Env = process.env): LogLevel {
  return enumVar<LogLevel>(env, 'DES_LOG_LEVEL', 'info', LOG_LEVELS)
}

/**
 * `DES_REQUIRE_AUTHENTICATION`, the original's switch for its signed-request
 * auth (true as the original reads it: 1, true, yes, y). A server told to
 * require auth serves only with API keys of ours or authorized keys of the
 * original's, never open. A value that is neither yes nor no is refused: a
 * typo must not serve the archive to anyone.
 */
function requiresAuthentication(env: Env): boolean {
  const raw = env.DES_REQUIRE_AUTHENTICATION
  if (raw === undefined || raw.trim() === '') return false
  const v = raw.trim().toLowerCase()
  if (['1', 'true', 'yes', 'y', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'n', 'off'].includes(v)) return false
  throw bad('DES_REQUIRE_AUTHENTICATION', raw, 'expected true or false')
}

/**
 * Start-up warnings about the original's auth settings: DES_VAULT_ADDR (its
 * OpenBao/Vault source of authorized keys, which des serve does not read),
 * and an authorized keys file that lists no key.
 */
export function originalAuthNotices(env: Env = process.env, authorizedKeys?: Map<string, AuthorizedKey>): string[] {
  const notices: string[] = []
  if (env.DES_VAULT_ADDR?.trim()) {
    notices.push(
      `DES_VAULT_ADDR is set: des serve does not read authorized keys from OpenBao/Vault; ${
        authorizedKeys ? 'signed requests are checked against DES_AUTHORIZED_KEYS_PATH only' : 'signed requests (X-DES-* headers) are not checked'
      }`,
    )
  }
  if (authorizedKeys?.size === 0) notices.push('DES_AUTHORIZED_KEYS_PATH lists no keys: every signed request will be refused')
  return notices
}

/** Why `des serve` will not start with the auth it was given, or undefined. */
function authRefusal(env: Env, apiKeys: ApiKey[], authorizedKeys: Map<string, AuthorizedKey> | undefined): string | undefined {
  if (!requiresAuthentication(env)) return undefined
  if (env.DES_VAULT_ADDR?.trim()) {
    return 'DES_REQUIRE_AUTHENTICATION is true and DES_VAULT_ADDR is set: des serve cannot read authorized keys from OpenBao/Vault, so the clients it holds keys for would all be refused; export the keys to a YAML file (DES_AUTHORIZED_KEYS_PATH) and unset DES_VAULT_ADDR'
  }
  if (apiKeys.length === 0 && authorizedKeys === undefined) {
    return 'DES_REQUIRE_AUTHENTICATION is true but no key is configured, and des serve will not serve without auth: give the original\'s authorized keys file (DES_AUTHORIZED_KEYS_PATH; clients sign requests with X-DES-* headers) or API keys (DES_API_KEYS or DES_API_KEYS_FILE; clients send X-API-Key or Authorization: Bearer)'
  }
  return undefined
}

/**
 * A start-up warning about the original's deletion API key
 * (DES_DELETE_API_KEY): des serve honours the deletions that API made (the
 * tombstones in the `.meta` sidecars beside the shards answer 410) but has
 * no such API itself.
 */
export function originalDeletionNotices(env: Env = process.env): string[] {
  if (!env.DES_DELETE_API_KEY?.trim()) return []
  return ["DES_DELETE_API_KEY is set: des serve has no deletion API (DELETE /files/... answers 405); files the original DES deleted (tombstones in the .meta sidecars beside its shards) are answered 410 File deleted, and new deletions must be made with the original"]
}

/**
 * Start-up warnings about the original's extended retention settings
 * (DES_EXT_RETENTION_BUCKET, DES_EXT_RETENTION_PREFIX): des serve does not
 * read its copies, which hold the same bytes as the shards they were taken
 * from; a file whose shard is gone is not found.
 */
export function originalRetentionNotices(env: Env = process.env): string[] {
  const set = ['DES_EXT_RETENTION_BUCKET', 'DES_EXT_RETENTION_PREFIX'].filter((name) => env[name]?.trim())
  if (set.length === 0) return []
  return [`${set.join(' and ')} ${set.length > 1 ? 'are' : 'is'} set: des serve does not read the original's extended retention copies (or offer its retention-policy API); files are served from their shards only, and one whose shard is gone is not found`]
}

/**
 * The S3 client timeouts of every command (`DES_S3_CONNECT_TIMEOUT_MS`,
 * `DES_S3_REQUEST_TIMEOUT_MS`; the second is how long a connection may carry
 * nothing): without them a request to an endpoint that accepts and never
 * answers waits for ever.
 */
export function s3TimeoutsFromEnv(env: Env = process.env): { s3ConnectTimeoutMs: number; s3RequestTimeoutMs: number } {
  return {
    s3ConnectTimeoutMs: intVar(env, 'DES_S3_CONNECT_TIMEOUT_MS', 2_000, 1, 600_000),
    s3RequestTimeoutMs: intVar(env, 'DES_S3_REQUEST_TIMEOUT_MS', 30_000, 1, 3_600_000),
  }
}

/** The `des serve` settings from the environment (flags override host/port/workers). */
export function loadServeConfig(env: Env = process.env): ServeConfig {
  const host = env.DES_HOST?.trim() || '0.0.0.0'
  const apiKeys = [...apiKeysFromEnv(env.DES_API_KEYS), ...(env.DES_API_KEYS_FILE?.trim() ? apiKeysFromFile(env.DES_API_KEYS_FILE.trim()) : [])]
  const authorizedKeysPath = env.DES_AUTHORIZED_KEYS_PATH?.trim()
  const authorizedKeys = authorizedKeysPath ? authorizedKeysFromFile(authorizedKeysPath) : undefined
  const refusal = authRefusal(env, apiKeys, authorizedKeys)
  if (refusal) throw new DesError('DES_CONFIG', refusal)
  const open = env.DES_AUTH_OPEN_PATHS
  const authOpenPaths = (open === undefined ? '/health,/ready,/metrics' : open)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const p of authOpenPaths) if (!p.startsWith('/')) throw bad('DES_AUTH_OPEN_PATHS', open ?? '', `path ${JSON.stringify(p)} must start with /`)
  return {
    host,
    port: intVar(env, 'DES_PORT', 8000, 0, 65535),
    // Unset or `auto`: one per CPU this process may use (a cgroup quota counts: 1 in a 1-CPU pod).
    workers: env.DES_WORKERS?.trim().toLowerCase() === 'auto' ? Math.min(256, availableCpus()) : intVar(env, 'DES_WORKERS', Math.min(256, availableCpus()), 1, 256),
    logLevel: loadLogLevel(env),
    apiKeys,
    authorizedKeys,
    authorizedKeysPath: authorizedKeys ? authorizedKeysPath : undefined,
    requireAuthentication: requiresAuthentication(env),
    // About 80 bytes each: the default holds 10 minutes of 800 signed requests a second in some 40 MB.
    maxNonces: intVar(env, 'DES_AUTH_MAX_NONCES', 500_000, 1, 100_000_000),
    authOpenPaths,
    shutdownTimeoutMs: intVar(env, 'DES_SHUTDOWN_TIMEOUT_MS', 10_000, 0, 3_600_000),
    ...s3TimeoutsFromEnv(env),
    s3MaxAttempts: intVar(env, 'DES_S3_MAX_ATTEMPTS', 3, 1, 20),
    zstdPassthrough: boolVar(env, 'DES_ZSTD_PASSTHROUGH', false),
    cacheControl: cacheControlVar(env),
  }
}

/**
 * The AWS SDK prints a multi-line NodeVersionSupportWarning on Node 20 at the
 * first S3 call; in the CLI that breaks "one clear line on stderr". Users who
 * want it back set the variable to "false".
 */
export function quietAwsSdkNodeWarning(env: Env = process.env): void {
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
}
