// The `des migrate` config file (SPEC §10), JSON or YAML, turned once into a
// validated, typed config. Every error names the key it is about. Strings may
// name environment variables (`${VAR}`, `${VAR:-default}`); numbers and
// booleans may therefore arrive as strings and are accepted in that form too.
// Also what `des migrate` takes from the environment: the variables config
// files may name and the test-only fault switch.

import * as fs from 'node:fs'
import * as path from 'node:path'
import { DesError } from '../errors'
import type { Codec } from '../native'
import { isEndpointUrl, isFolderName, isRegionName, FOLDER_NAME_EXPECTED, normalisePrefix, REGION_EXPECTED } from './checks'
import { DEFAULT_MAX_SHARD_SIZE, DEFAULT_S3_REGION, MAX_N_BITS, MAX_ZSTD_LEVEL, MIN_N_BITS, MIN_ZSTD_LEVEL } from './defaults'
import { intVar, layoutsVar, loadBigfilesPrefix, loadNBits, loadTailBytes, loadWritePastCache, nBitsFromVar, type Layout } from './env'
import { parseYaml, whereParsingStopped } from './yaml'

type Env = Record<string, string | undefined>

/**
 * Points of a migration cycle where a test may have the process kill itself
 * (SIGKILL, no clean-up) to prove a rerun finishes the job.
 */
export const FAULT_POINTS = ['in-pack', 'after-pack', 'after-verify', 'before-commit', 'after-mark', 'mid-delete'] as const
export type FaultPoint = (typeof FAULT_POINTS)[number]

export interface MigrateEnv {
  /** Variables a config file's strings may name. */
  vars: Env
  /** `DES_TEST_FAULT`: where to SIGKILL ourselves (tests only). */
  fault?: FaultPoint
  /** `DES_DB_URL`: the database of `des stats` when neither `--db-url` nor `--config` names one (a URL on the command line shows its password in `ps`). */
  dbUrl?: string
}

/** Reads the migration environment (process.env by default). */
export function loadMigrateEnv(env: Env = process.env): MigrateEnv {
  const raw = env.DES_TEST_FAULT?.trim()
  if (raw && !(FAULT_POINTS as readonly string[]).includes(raw)) {
    throw new DesError('DES_CONFIG', `DES_TEST_FAULT=${JSON.stringify(raw)} is invalid: expected one of ${FAULT_POINTS.join(', ')}`)
  }
  return { vars: { ...env }, fault: (raw || undefined) as FaultPoint | undefined, dbUrl: env.DES_DB_URL?.trim() || undefined }
}

// The name is everything up to `:` or `}`, as the reference reads it: an
// environment may hold names a shell cannot (`db-password`, `app.dir` in a
// Kubernetes env), and a reference left unreplaced would be used as text.
const REF = /\$\{([^}:]*)(?:(:-?)([^}]*))?\}/g

/**
 * Replaces `${VAR}`, `${VAR:-default}` and `${VAR:default}` in one string
 * value. `:-` has the shell's meaning: the default applies when VAR is unset
 * or empty. `:` is the reference's form (its configs use it): the default
 * applies when VAR is unset; set to empty, VAR gives the empty string. A
 * `${VAR}` with no default and no value, and a `${` that no `}` closes, are
 * errors naming `where` (the config key), never quoting the value.
 */
export function substituteEnv(value: string, vars: Env, where: string): string {
  // A `${` that no `}` closes is refused, as the reference refuses it: taken as
  // text, a typo (`${DB_PASSWORD@host`) would be a wrong password or table name.
  if (value.replace(REF, '').includes('${')) {
    throw new DesError('DES_CONFIG', `${where}: a \${ has no closing } (an environment variable is written \${VAR})`)
  }
  return value.replace(REF, (_all, name: string, form: string | undefined, def: string | undefined) => {
    const v = vars[name]
    if (v !== undefined && (v !== '' || form === ':')) return v
    if (form !== undefined) return def ?? ''
    if (v === '') return ''
    throw new DesError('DES_CONFIG', `${where}: environment variable ${name} is not set (write \${${name}:-default} for a default)`)
  })
}

/** Applies `substituteEnv` to every string in a parsed JSON/YAML document. */
export function substituteTree(doc: unknown, vars: Env, where = ''): unknown {
  if (typeof doc === 'string') return substituteEnv(doc, vars, where || '(root)')
  if (Array.isArray(doc)) return doc.map((v, i) => substituteTree(v, vars, `${where}[${i}]`))
  if (doc !== null && typeof doc === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(doc)) out[k] = substituteTree(v, vars, where ? `${where}.${k}` : k)
    return out
  }
  return doc
}

export interface DatabaseConfig {
  url: string
  /** `table` or `schema.table`. */
  tableName: string
  uidColumn: string
  createdAtColumn: string
  fileLocationColumn: string
  /** null (`size_bytes_column: null` or `''`): no size column; each source's own size is taken, as the reference does. */
  sizeBytesColumn: string | null
  archivedColumn: string
}

export interface MigrationConfig {
  /** Rows with created_at older than now minus this many days are migrated. */
  archiveAgeDays: number
  batchSize: number
  deleteSourceFiles: boolean
}

export interface S3Output {
  kind: 's3'
  bucket: string
  /** '' or ending in '/'. */
  prefix: string
  region: string
  endpoint?: string
  forcePathStyle: boolean
}

export type OutputConfig = { kind: 'local'; dir: string } | S3Output

export interface S3SourceConfig {
  enabled: boolean
  region: string
  endpoint?: string
  maxRetries: number
  retryDelaySeconds: number
}

export interface PackerConfig {
  output: OutputConfig
  /** Where shards are written: `nested` (ours) or `flat` (the reference's); `packer.layout`, else DES_LAYOUT's first. */
  layout: Layout
  /**
   * What chose `layout` (`packer.layout`, `DES_LAYOUT`); undefined when it is
   * the default, nested, which is not written into a store of the original's
   * flat shards (src/store/flat-probe.ts).
   */
  layoutFrom?: string
  maxShardSize?: number
  nBits: number
  /**
   * Where `nBits` was set on purpose (`packer.n_bits of FILE`, else
   * `DES_N_BITS`); undefined when it is the default. A zones file routes
   * with its own n_bits, and one set on purpose that differs is refused.
   */
  nBitsFrom?: string
  codec: Codec
  level?: number
  bigFileThreshold?: number
  bigfilesPrefix?: string
  /** Suffix read that fetches a shard's footer and index together (DES_TAIL_BYTES). */
  tailBytes: number
  /** New local shards are written past the page cache (DES_WRITE_PAST_CACHE). */
  writePastCache: boolean
  s3Source: S3SourceConfig
}

export interface MigrateConfig {
  database: DatabaseConfig
  migration: MigrationConfig
  packer: PackerConfig
}

/**
 * What is wrong with a database URL, or undefined: a postgres:// or
 * postgresql:// URL (an SQLAlchemy `+driver` allowed) that parses, its port
 * a number the driver will use (pg takes a port it cannot read for 5432, a
 * database the URL did not name). Never quotes the URL: it holds a password.
 */
export function dbUrlProblem(url: string): string | undefined {
  const m = /^postgres(?:ql)?(?:\+[a-z0-9]+)?:\/\/([^/?#]*)/i.exec(url)
  if (!m) return 'expected a postgres:// or postgresql:// URL'
  // host[:port], after the credentials; an IPv6 host is in brackets. Empty: a socket (?host=/path).
  const hostPort = m[1].slice(m[1].lastIndexOf('@') + 1)
  const port = /^(?:\[[0-9a-f:.]*\]|[^:[\]]*)(?::(.*))?$/i.exec(hostPort)
  if (!port) return 'its host is not a host name, an address or [an IPv6 address]'
  if (port[1] !== undefined && !(/^\d{1,5}$/.test(port[1]) && Number(port[1]) >= 1 && Number(port[1]) <= 65535)) return 'its port is not a number from 1 to 65535 (or a character of the password such as # / ? is not percent-encoded)'
  return undefined
}

function fail(key: string, why: string): DesError {
  return new DesError('DES_CONFIG', `config ${key}: ${why}`)
}

type Obj = Record<string, unknown>

/** A section object (absent = empty); unknown keys are refused so typos surface. */
function section(parent: Obj, key: string, where: string, allowed: readonly string[]): Obj {
  const v = parent[key]
  const at = where ? `${where}.${key}` : key
  if (v === undefined || v === null) return {}
  if (typeof v !== 'object' || Array.isArray(v)) throw fail(at, 'expected a mapping')
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) throw fail(`${at}.${k}`, `unknown key (expected one of ${allowed.join(', ')})`)
  }
  return v as Obj
}

/**
 * Refuses keys of `o` given as empty or null (`n_bits: ${N_BITS}` with the
 * variable set to empty, `n_bits:` left blank). The original stops on them
 * (`int('')`, a table without a name); taken for the default they would be
 * a wrong n_bits, age or table, silently.
 */
function refuseEmpty(o: Obj, where: string, keys: readonly string[]): void {
  for (const key of keys) {
    if (key in o && (o[key] === '' || o[key] === null)) throw fail(`${where}.${key}`, 'is empty (leave the key out for its default)')
  }
}

function str(o: Obj, key: string, at: string, def?: string): string {
  const v = o[key]
  if (v === undefined || v === null || v === '') {
    if (def !== undefined) return def
    throw fail(at, 'is required')
  }
  if (typeof v !== 'string') throw fail(at, 'expected a string')
  return v
}

function optStr(o: Obj, key: string, at: string): string | undefined {
  const v = o[key]
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') throw fail(at, 'expected a string')
  return v
}

function num(o: Obj, key: string, at: string, def: number | undefined, min: number, max: number, integer: boolean): number | undefined {
  let v = o[key]
  if (v === undefined || v === null || v === '') return def
  if (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v)) v = Number(v)
  if (typeof v !== 'number' || !Number.isFinite(v)) throw fail(at, 'expected a number')
  if (integer && !Number.isInteger(v)) throw fail(at, 'expected a whole number')
  if (v < min || v > max) throw fail(at, `expected ${min}..${max}, got ${v}`)
  return v
}

function bool(o: Obj, key: string, at: string, def: boolean): boolean {
  const v = o[key]
  if (v === undefined || v === null || v === '') return def
  if (typeof v === 'boolean') return v
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase()
    if (['true', 'yes', 'on', '1'].includes(s)) return true
    if (['false', 'no', 'off', '0'].includes(s)) return false
  }
  throw fail(at, 'expected true or false')
}

/** An SQL identifier (or `schema.table` when `qualified`): any text but no NUL, at most 63 bytes a part. */
function ident(o: Obj, key: string, at: string, def: string | undefined, qualified = false): string {
  const v = str(o, key, at, def)
  const parts = qualified ? v.split('.') : [v]
  if (parts.length > 2) throw fail(at, 'expected `table` or `schema.table`')
  for (const p of parts) {
    if (p === '' || p.includes('\0') || Buffer.byteLength(p) > 63) throw fail(at, `${JSON.stringify(v)} is not a usable SQL name`)
  }
  return v
}

function endpoint(o: Obj, key: string, at: string): string | undefined {
  const v = optStr(o, key, at)
  if (v !== undefined && !isEndpointUrl(v)) throw fail(at, `${JSON.stringify(v)} is not an http(s) URL`)
  return v
}

function region(o: Obj, key: string, at: string): string | undefined {
  const v = optStr(o, key, at)
  if (v !== undefined && !isRegionName(v)) throw fail(at, `${JSON.stringify(v)}: ${REGION_EXPECTED}`)
  return v
}

const CODECS: readonly Codec[] = ['zstd', 'lz4', 'none']

/** Validates a parsed (already substituted) config document. */
export function parseMigrateConfig(doc: unknown, vars: Env = {}): MigrateConfig {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw fail('(root)', 'expected a mapping with database, migration, packer')
  const root = doc as Obj
  for (const k of Object.keys(root)) {
    if (!['database', 'migration', 'packer'].includes(k)) throw fail(k, 'unknown key (expected database, migration, packer)')
  }
  const defaultRegion = vars.AWS_REGION || vars.AWS_DEFAULT_REGION || DEFAULT_S3_REGION

  const db = section(root, 'database', '', ['url', 'table_name', 'uid_column', 'created_at_column', 'file_location_column', 'size_bytes_column', 'archived_column'])
  // size_bytes_column is not among them: empty, it means no size column, as in the original.
  refuseEmpty(db, 'database', ['table_name', 'uid_column', 'created_at_column', 'file_location_column', 'archived_column'])
  const url = str(db, 'url', 'database.url')
  const urlProblem = dbUrlProblem(url)
  if (urlProblem) throw fail('database.url', urlProblem)
  const database: DatabaseConfig = {
    url,
    tableName: ident(db, 'table_name', 'database.table_name', 'files', true),
    uidColumn: ident(db, 'uid_column', 'database.uid_column', 'uid'),
    createdAtColumn: ident(db, 'created_at_column', 'database.created_at_column', 'created_at'),
    fileLocationColumn: ident(db, 'file_location_column', 'database.file_location_column', 'file_location'),
    // Given as null or empty: no size column (the reference's way to switch size checks off).
    sizeBytesColumn: 'size_bytes_column' in db && (db.size_bytes_column === null || db.size_bytes_column === '') ? null : ident(db, 'size_bytes_column', 'database.size_bytes_column', 'size_bytes'),
    archivedColumn: ident(db, 'archived_column', 'database.archived_column', 'archived'),
  }

  const mig = section(root, 'migration', '', ['archive_age_days', 'batch_size', 'delete_source_files'])
  refuseEmpty(mig, 'migration', ['archive_age_days', 'batch_size'])
  const migration: MigrationConfig = {
    archiveAgeDays: num(mig, 'archive_age_days', 'migration.archive_age_days', 7, 0, 1e6, false)!,
    batchSize: num(mig, 'batch_size', 'migration.batch_size', 1000, 1, 1_000_000, true)!,
    deleteSourceFiles: bool(mig, 'delete_source_files', 'migration.delete_source_files', false),
  }

  const pk = section(root, 'packer', '', ['output_dir', 's3', 'layout', 'max_shard_size', 'n_bits', 'codec', 'level', 'big_file_threshold', 'bigfiles_prefix', 's3_source'])
  refuseEmpty(pk, 'packer', ['output_dir', 'max_shard_size', 'n_bits'])
  const outputDir = optStr(pk, 'output_dir', 'packer.output_dir')
  const s3 = section(pk, 's3', 'packer', ['bucket', 'prefix', 'region_name', 'endpoint_url', 'force_path_style'])
  const hasS3 = Object.keys(s3).length > 0
  if (outputDir !== undefined && hasS3) throw fail('packer', 'give output_dir or s3, not both')
  let output: OutputConfig
  if (hasS3) {
    const ep = endpoint(s3, 'endpoint_url', 'packer.s3.endpoint_url')
    output = {
      kind: 's3',
      bucket: str(s3, 'bucket', 'packer.s3.bucket'),
      prefix: normalisePrefix(optStr(s3, 'prefix', 'packer.s3.prefix')),
      region: region(s3, 'region_name', 'packer.s3.region_name') ?? defaultRegion,
      endpoint: ep,
      forcePathStyle: bool(s3, 'force_path_style', 'packer.s3.force_path_style', Boolean(ep)),
    }
  } else {
    // The reference's default when neither is given.
    output = { kind: 'local', dir: path.resolve(outputDir ?? './des_output') }
  }
  const layoutText = optStr(pk, 'layout', 'packer.layout')
  if (layoutText !== undefined && layoutText !== 'nested' && layoutText !== 'flat') throw fail('packer.layout', 'expected nested or flat')
  // Unset: where DES_LAYOUT says writers write (the reference's migrator wrote the flat layout).
  const layout: Layout = (layoutText as Layout | undefined) ?? layoutsVar(vars, 'DES_LAYOUT')[0]
  const codec = str(pk, 'codec', 'packer.codec', 'zstd').toLowerCase() as Codec
  if (!CODECS.includes(codec)) throw fail('packer.codec', `expected one of ${CODECS.join(', ')}`)
  const bigfilesPrefix = optStr(pk, 'bigfiles_prefix', 'packer.bigfiles_prefix')
  if (bigfilesPrefix !== undefined && !isFolderName(bigfilesPrefix)) throw fail('packer.bigfiles_prefix', FOLDER_NAME_EXPECTED)
  const src = section(pk, 's3_source', 'packer', ['enabled', 'region_name', 'endpoint_url', 'max_retries', 'retry_delay_seconds'])
  refuseEmpty(src, 'packer.s3_source', ['max_retries', 'retry_delay_seconds'])
  const packer: PackerConfig = {
    output,
    layout,
    layoutFrom: layoutText !== undefined ? 'packer.layout' : vars.DES_LAYOUT?.trim() ? 'DES_LAYOUT' : undefined,
    maxShardSize: num(pk, 'max_shard_size', 'packer.max_shard_size', DEFAULT_MAX_SHARD_SIZE, 1, Number.MAX_SAFE_INTEGER, true),
    // Unset keys take the variables every command reads (DES_N_BITS, DES_BIG_FILE_THRESHOLD_BYTES, DES_BIGFILES_PREFIX).
    nBits: num(pk, 'n_bits', 'packer.n_bits', loadNBits(vars), MIN_N_BITS, MAX_N_BITS, true)!,
    nBitsFrom: num(pk, 'n_bits', 'packer.n_bits', undefined, MIN_N_BITS, MAX_N_BITS, true) !== undefined ? 'packer.n_bits' : nBitsFromVar(vars),
    codec,
    level: num(pk, 'level', 'packer.level', undefined, MIN_ZSTD_LEVEL, MAX_ZSTD_LEVEL, true),
    bigFileThreshold:
      num(pk, 'big_file_threshold', 'packer.big_file_threshold', undefined, 0, Number.MAX_SAFE_INTEGER, true) ??
      (vars.DES_BIG_FILE_THRESHOLD_BYTES?.trim() ? intVar(vars, 'DES_BIG_FILE_THRESHOLD_BYTES', 0, 0, Number.MAX_SAFE_INTEGER) : undefined),
    bigfilesPrefix: bigfilesPrefix ?? loadBigfilesPrefix(vars),
    tailBytes: loadTailBytes(vars),
    writePastCache: loadWritePastCache(vars),
    s3Source: {
      enabled: bool(src, 'enabled', 'packer.s3_source.enabled', false),
      region: region(src, 'region_name', 'packer.s3_source.region_name') ?? defaultRegion,
      endpoint: endpoint(src, 'endpoint_url', 'packer.s3_source.endpoint_url'),
      maxRetries: num(src, 'max_retries', 'packer.s3_source.max_retries', 3, 0, 100, true)!,
      retryDelaySeconds: num(src, 'retry_delay_seconds', 'packer.s3_source.retry_delay_seconds', 2, 0, 3600, false)!,
    },
  }
  return { database, migration, packer }
}

/** Reads a `.json`, `.yaml` or `.yml` config file, substitutes `${VAR}`s, validates. */
export function loadMigrateConfig(file: string, vars: Env): MigrateConfig {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    // A config file that is not there is "not found" (exit 3), like every other missing file.
    const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'DES_NO_FILE' : 'DES_CONFIG'
    throw new DesError(code, `cannot read config ${file}: ${(err as Error).message}`)
  }
  let doc: unknown
  try {
    // YAML is a superset of JSON, but JSON.parse gives clearer errors for .json files.
    doc = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new DesError('DES_CONFIG', `config ${file} is not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'} ${whereParsingStopped(err, text)}`)
  }
  const config = parseMigrateConfig(substituteTree(doc, vars), vars)
  // Named with its file, for the zones file's refusal of another n_bits.
  if (config.packer.nBitsFrom === 'packer.n_bits') config.packer.nBitsFrom = `packer.n_bits of ${file}`
  return config
}
