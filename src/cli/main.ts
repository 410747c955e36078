// The `des` command line: one clear line on stderr and a non-zero exit on
// failure; the stack only with --verbose or DEBUG set.

import yargs, { type Argv } from 'yargs'
import { describe, exitCode } from '../errors'
import { commands } from './commands'
import { quietAwsSdkNodeWarning } from '../config/env'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { version } = require('../../package.json') as { version: string }

function showStack(argv: string[]): boolean {
  return argv.includes('--verbose') || Boolean(process.env.DEBUG)
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
    .fail((msg, err) => {
      throw err ?? Object.assign(new Error(msg), { code: 'DES_BAD_ARG' })
    })
    .help()
  for (const c of commands) y = c.register(y)
  try {
    await y.parseAsync()
    return 0
  } catch (err) {
    process.stderr.write(`${scriptName}: ${describe(err)}\n`)
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
      process.exitCode = code
    },
    (err) => {
      process.stderr.write(`des: ${describe(err)}\n`)
      process.exitCode = 1
    },
  )
}
