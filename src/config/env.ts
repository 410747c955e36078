// The environment (SPEC §6) turned into a validated, typed config. This is the
// only module that reads process.env; a bad value is refused at start-up with
// a message that names the variable.

import { DesError } from '../errors'

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
  /** `nested` = `<date>/<HEX>.des` (ours), `flat` = `<date>_<HEX>_<NNNN>.des` (the reference packer's). */
  layout: Layout
  s3?: S3Settings
  zonesConfig?: string
  bigFileThreshold: number
  bigfilesPrefix: string
  /** Bytes of parsed indexes kept in memory. */
  indexCacheBytes: number
  /** Size of the suffix-range GET that fetches footer and index together. */
  tailBytes: number
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

/** A key prefix normalised to '' or 'something/'. */
export function normalisePrefix(prefix: string | undefined): string {
  const p = (prefix ?? '').replace(/^\/+/, '')
  return p === '' || p.endsWith('/') ? p : `${p}/`
}

/** S3 settings from DES_S3_* (bucket required when `required`). */
export function s3FromEnv(env: Env, required: boolean): S3Settings | undefined {
  const bucket = env.DES_S3_BUCKET?.trim()
  if (!bucket) {
    if (required) throw new DesError('DES_CONFIG', 'DES_S3_BUCKET is required for DES_BACKEND=s3')
    return undefined
  }
  const endpoint = env.DES_S3_ENDPOINT_URL?.trim() || undefined
  if (endpoint && !/^https?:\/\/[^\s/]+/.test(endpoint)) throw bad('DES_S3_ENDPOINT_URL', endpoint, 'expected an http(s) URL')
  return {
    bucket,
    region: env.DES_S3_REGION?.trim() || env.AWS_REGION?.trim() || env.AWS_DEFAULT_REGION?.trim() || 'us-east-1',
    endpoint,
    prefix: normalisePrefix(env.DES_S3_PREFIX),
    forcePathStyle: boolVar(env, 'DES_S3_FORCE_PATH_STYLE', Boolean(endpoint)),
  }
}

/** Reads and validates the whole DES environment. */
export function loadConfig(env: Env = process.env): DesConfig {
  const backend = enumVar<Backend>(env, 'DES_BACKEND', 'local', ['local', 's3', 'multi_s3'])
  const zonesConfig = env.DES_ZONES_CONFIG?.trim() || undefined
  if (backend === 'multi_s3' && !zonesConfig) throw new DesError('DES_CONFIG', 'DES_ZONES_CONFIG is required for DES_BACKEND=multi_s3')
  return {
    backend,
    baseDir: env.DES_BASE_DIR?.trim() || './des-data',
    nBits: intVar(env, 'DES_N_BITS', 8, 4, 16),
    layout: enumVar<Layout>(env, 'DES_LAYOUT', 'nested', ['nested', 'flat']),
    s3: s3FromEnv(env, backend === 's3'),
    zonesConfig,
    bigFileThreshold: intVar(env, 'DES_BIG_FILE_THRESHOLD_BYTES', 10 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
    bigfilesPrefix: bigfilesPrefixVar(env),
    indexCacheBytes: intVar(env, 'DES_INDEX_CACHE_BYTES', 256 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
    tailBytes: intVar(env, 'DES_TAIL_BYTES', 64 * 1024, 12, 1024 * 1024 * 1024),
  }
}

function bigfilesPrefixVar(env: Env): string {
  const raw = env.DES_BIGFILES_PREFIX
  if (raw === undefined || raw.trim() === '') return '_bigFiles'
  if (!/^[A-Za-z0-9._-]+$/.test(raw) || raw === '.' || raw === '..') {
    throw bad('DES_BIGFILES_PREFIX', raw, 'expected one folder name (letters, digits, . _ -)')
  }
  return raw
}
