// The `des` command line: one clear line on stderr and a non-zero exit on
// failure; the stack only with --verbose or DEBUG set.

import yargs, { type Argv } from 'yargs'
import { DesError, describe, exitCode } from '../errors'
import { commands } from './commands'
import { loadMaxPayloadBytes, quietAwsSdkNodeWarning } from '../config/env'
import { setPayloadCeiling } from '../native'
import { refuseRepeatedFlags, type DeclaredOptions } from './flags'
import { oneLine } from './output'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { version } = require('../../package.json') as { version: string }

function showStack(argv: string[]): boolean {
  return argv.includes('--verbose') || Boolean(process.env.DEBUG)
}

type UsageInternals = { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } }

/**
 * yargs renders a command's whole help text as it starts the command's
 * handler, to have it at hand should the handler ask for it (ours never do):
 * ~15 ms at the start of every run, on the thread everything then waits for.
 * An internal of yargs 17, so only replaced where it is found.
 */
function skipHelpCache(y: Argv): void {
  const usage = (y as unknown as UsageInternals).getInternalMethods?.().getUsageInstance?.()
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => undefined
}

/** Runs the CLI with `argv` (without node and script). Resolves to the exit code. */
export async function main(argv: string[], scriptName = 'des'): Promise<number> {
  let y: Argv = yargs(argv)
    .scriptName(scriptName)
    .version(version)
    .option('verbose', { type: 'boolean', default: false, describe: 'show stack traces on errors' })
    .strict()
    .demandCommand(1, 'name a command (see --help)')
    .recommendCommands()
    .epilogue('Exit codes: 0 ok, 1 internal error, 2 bad argument or configuration, 3 not found, 4 corrupt data, 5 conflict, 6 storage or database unavailable (docs/CLI.md).')
    .fail((msg, err) => {
      // What a flag's coerce throws (src/cli/flags.ts) comes back as a YError
      // that keeps only the message: a refusal of what was typed, as is each
      // YError its parser raises.
      if (err?.name === 'YError') throw new DesError('DES_BAD_ARG', err.message, { cause: err })
      // yargs writes some refusals on several lines ("Invalid values:\n  Argument: ..."): one line here.
      throw err ?? Object.assign(new Error(msg.replace(/\s*\n\s*/g, ' ')), { code: 'DES_BAD_ARG' })
    })
    .help()
    // yargs 17 hands a check the running command's options (getOptions()), not the aliases @types/yargs names.
    .check((argv, options) => refuseRepeatedFlags(argv, options as unknown as DeclaredOptions))
    // Process-wide in the addon: every command's reads (cat, verify, migrate...) take the configured ceiling.
    .middleware(() => setPayloadCeiling(loadMaxPayloadBytes()))
  for (const c of commands) y = c.register(y)
  // `des` alone: the usage, on stderr (stdout carries only a command's output), and the bad-argument exit.
  if (!argv.some((a) => !a.startsWith('-')) && !argv.some((a) => ['--help', '-h', '--version'].includes(a))) {
    process.stderr.write(`${await y.getHelp()}\n\n${scriptName}: name a command (see above, or ${scriptName} <command> --help)\n`)
    return exitCode(new DesError('DES_BAD_ARG', 'no command'))
  }
  skipHelpCache(y)
  try {
    await y.parseAsync()
    return 0
  } catch (err) {
    // One line, whatever a path or key the error names holds (a migrate cycle's error names a row's location).
    process.stderr.write(`${scriptName}: ${oneLine(describe(err))}\n`)
    if (showStack(argv) && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n')
    return exitCode(err)
  }
}

/** Entry point of the bin scripts. */
export function run(argv: string[], scriptName?: string): void {
  quietAwsSdkNodeWarning()
  // `des ls big.des | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    throw err
  })
  main(argv, scriptName).then(
    (code) => {
      // A command reports failure by throwing; a non-zero code it set itself is kept, never overwritten by 0.
      if (code !== 0 || !process.exitCode) process.exitCode = code
      // A failed command is over once it has said why: a connection it left
      // waiting (a database that accepts and never answers) must not keep
      // the process alive. Its output is flushed first.
      if (code !== 0) process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
    },
    (err) => {
      process.stderr.write(`des: ${describe(err)}\n`)
      process.exitCode = 1
    },
  )
}
