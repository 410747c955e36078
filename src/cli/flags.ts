// What every command's flags share, checked once for all of them: a flag that
// holds one value given twice is refused by name (yargs would hand the
// command an array where it expects a string or a number), and a number flag
// is read from what was typed and refused echoing it.

import { DesError } from '../errors'
import { isNBits, isZstdLevel } from '../config/checks'
import { MAX_N_BITS, MAX_ZSTD_LEVEL, MIN_N_BITS, MIN_ZSTD_LEVEL } from '../config/defaults'

/** What yargs's `check` is given besides argv: the options the running command declared. */
export interface DeclaredOptions {
  key: Record<string, unknown>
  array: string[]
}

/** The refusal of a flag of one value given `times` times. */
export function repeatedFlag(flag: string, times: number): DesError {
  return new DesError('DES_BAD_ARG', `--${flag} was given ${times} times: it takes one value`)
}

/**
 * A yargs `check`: throws for the first declared flag, not of type array,
 * whose value came as an array (it was given more than once).
 */
export function refuseRepeatedFlags(argv: Record<string, unknown>, options: DeclaredOptions): true {
  const arrays = new Set(options.array)
  for (const flag of Object.keys(options.key)) {
    const value = argv[flag]
    if (Array.isArray(value) && !arrays.has(flag)) throw repeatedFlag(flag, value.length)
  }
  return true
}

/** A number as typed: yargs hands over one it could read as a number, else the text. */
function typedNumber(typed: unknown): number | undefined {
  if (typeof typed === 'number') return typed
  if (typeof typed === 'string' && /^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*$/.test(typed)) return Number(typed)
  return undefined
}

/**
 * A yargs `coerce` for a flag holding one number that `accepts` takes;
 * `expected` words what it takes ("a whole number 0..65535"). The flag is
 * declared without a type: a flag of type number hands over NaN for "abc",
 * and the refusal could not say what was typed.
 */
export function numberFlag(flag: string, expected: string, accepts: (n: number) => boolean): (typed: unknown) => number {
  return (typed) => {
    // Coercion runs before the checks: a repeated flag comes here as an array.
    if (Array.isArray(typed)) throw repeatedFlag(flag, typed.length)
    if (typeof typed === 'boolean') throw new DesError('DES_BAD_ARG', `--${flag} needs a value: ${expected}`)
    const n = typedNumber(typed)
    if (n === undefined || !accepts(n)) throw new DesError('DES_BAD_ARG', `--${flag} ${JSON.stringify(String(typed))}: expected ${expected}`)
    return n
  }
}

/** `numberFlag` for a whole number in min..max. */
export function wholeNumberFlag(flag: string, min: number, max: number): (typed: unknown) => number {
  return numberFlag(flag, `a whole number ${min}..${max}`, (n) => Number.isInteger(n) && n >= min && n <= max)
}

/** `--level` of the commands that write shards (pack, convert): checked as the packer and packer.level check it. */
export const zstdLevelFlag = numberFlag('level', `a zstd level ${MIN_ZSTD_LEVEL}..${MAX_ZSTD_LEVEL}`, isZstdLevel)

/** `--n-bits` of every command: checked as DES_N_BITS and packer.n_bits are. */
export const nBitsFlag = numberFlag('n-bits', `a whole number ${MIN_N_BITS}..${MAX_N_BITS}`, isNBits)
