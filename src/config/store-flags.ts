// The store a command works on, from the environment with its command-line
// flags on top (`des verify --store --base-dir D --layout flat --n-bits 4`).
// A bad flag is refused by name, as a bad variable is.

import { DesError } from '../errors'
import { isNBits } from './checks'
import { MAX_N_BITS, MIN_N_BITS } from './defaults'
import { loadConfig, type Backend, type DesConfig } from './env'

type Env = Record<string, string | undefined>

/** Flags that override DES_BACKEND, DES_BASE_DIR, DES_LAYOUT, DES_N_BITS, DES_BIGFILES_PREFIX (same values, same checks). */
export interface StoreFlags {
  backend?: string
  baseDir?: string
  layout?: string
  nBits?: number
  bigfilesPrefix?: string
}

const BACKENDS: readonly Backend[] = ['local', 's3', 'multi_s3']

/** The flag that sets each variable, to name it when its value is refused. */
const FLAG_OF: Record<string, string> = {
  DES_BACKEND: '--backend',
  DES_BASE_DIR: '--base-dir',
  DES_LAYOUT: '--layout',
  DES_N_BITS: '--n-bits',
  DES_BIGFILES_PREFIX: '--bigfiles-prefix',
}

function badFlag(flag: string, value: unknown, why: string): DesError {
  return new DesError('DES_BAD_ARG', `${flag} ${JSON.stringify(value)}: ${why}`)
}

/**
 * The config of `loadConfig(env)` with the flags given winning over their
 * variables. `--base-dir` without `--backend` means the local backend.
 */
export function loadStoreConfig(flags: StoreFlags, env: Env = process.env): DesConfig {
  const over: Env = {}
  if (flags.backend !== undefined) {
    if (!BACKENDS.includes(flags.backend as Backend)) throw badFlag('--backend', flags.backend, `expected one of ${BACKENDS.join(', ')}`)
    over.DES_BACKEND = flags.backend
  }
  if (flags.baseDir !== undefined) {
    if (flags.baseDir.trim() === '') throw badFlag('--base-dir', flags.baseDir, 'expected a directory')
    over.DES_BASE_DIR = flags.baseDir
    over.DES_BACKEND ??= 'local'
    if (over.DES_BACKEND !== 'local') throw badFlag('--base-dir', flags.baseDir, `a base directory is for --backend local, not ${over.DES_BACKEND}`)
  }
  // Checked as DES_LAYOUT is (nested, flat, or the layouts readers try in order).
  if (flags.layout !== undefined) over.DES_LAYOUT = flags.layout
  if (flags.nBits !== undefined) {
    if (!isNBits(flags.nBits)) throw badFlag('--n-bits', flags.nBits, `expected a whole number ${MIN_N_BITS}..${MAX_N_BITS}`)
    over.DES_N_BITS = String(flags.nBits)
  }
  if (flags.bigfilesPrefix !== undefined) over.DES_BIGFILES_PREFIX = flags.bigfilesPrefix
  try {
    const config = loadConfig({ ...env, ...over })
    if (flags.nBits !== undefined) config.nBitsFrom = '--n-bits'
    return config
  } catch (err) {
    // A refused override is the flag's fault: say so by its name.
    const m = err instanceof DesError ? /^(DES_[A-Z_]+)=/.exec(err.message) : null
    const flag = m && m[1] in over ? FLAG_OF[m[1]] : undefined
    if (flag) throw new DesError('DES_BAD_ARG', (err as Error).message.replace(/^DES_[A-Z_]+=/, `${flag} `))
    throw err
  }
}
