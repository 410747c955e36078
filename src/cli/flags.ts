// What every command's flags share, checked once for all of them: a flag that
// holds one value given twice is refused by name (yargs would hand the
// command an array where it expects a string or a number).

import { DesError } from '../errors'

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
