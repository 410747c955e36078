// The logger of the commands other than `des serve`, and of the libraries
// under them (knex, pg): JSON lines on stderr, so that stdout carries only a
// command's own output (`--json` lines parse, `des cat` is the file's bytes).

import pino, { type Logger } from 'pino'
import { loadLogLevel } from './config/env'

let shared: Logger | undefined

/** The process's stderr logger (level `DES_LOG_LEVEL`), created on first use; writes synchronously, so nothing is lost on exit. */
export function stderrLogger(): Logger {
  shared ??= pino({ level: loadLogLevel(), base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: true }))
  return shared
}

/** What knex's `log` option takes: one function per level, each given a message or an object. */
export interface KnexLog {
  warn(message: unknown): void
  error(message: unknown): void
  debug(message: unknown): void
  deprecate(method: string, alternative: string): void
}

/** Stack lines (`    at …`), which knex writes into its messages: a command shows a stack only with --verbose. */
const STACK_LINES = /\n\s+at [^\n]*/g

function text(message: unknown): string {
  if (typeof message === 'string') return message.replace(STACK_LINES, '')
  if (message instanceof Error) return message.message
  try {
    return JSON.stringify(message)
  } catch {
    return String(message)
  }
}

/**
 * Knex's log through `logger` (knex's own default is `console.log`, which put
 * "Acquire connection error" and a stack on stdout, into `--json` output).
 */
export function knexLog(logger: Logger = stderrLogger()): KnexLog {
  const child = logger.child({ lib: 'knex' })
  return {
    warn: (m) => child.warn(text(m)),
    error: (m) => child.error(text(m)),
    debug: (m) => child.debug(text(m)),
    deprecate: (method, alternative) => child.warn(`${method} is deprecated, please use ${alternative}`),
  }
}
