// What `des migrate` takes from the environment: the variables that config
// files may name (`${VAR}`, `${VAR:-default}`) and the test-only fault switch.
// Like env.ts, the only place that reads process.env for migration.

import { DesError } from '../errors'

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

const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-?)([^}]*))?\}/g

/**
 * Replaces `${VAR}`, `${VAR:-default}` and `${VAR:default}` in one string
 * value. `:-` has the shell's meaning: the default applies when VAR is unset
 * or empty. `:` is the reference's form (its configs use it): the default
 * applies when VAR is unset; set to empty, VAR gives the empty string. A
 * `${VAR}` with no default and no value is an error naming `where` (the
 * config key) and the variable.
 */
export function substituteEnv(value: string, vars: Env, where: string): string {
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
