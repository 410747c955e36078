// Runs the built `des` command as a user would.

import { spawn } from 'node:child_process'
import * as path from 'node:path'
import { ROOT } from './golden'

export interface CliResult {
  code: number
  stdout: Buffer
  stderr: string
}

/** Runs `bin/<bin>` with args (and optional stdin); resolves when it exits. */
export function runCli(args: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv; bin?: string; cwd?: string; killAfterMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', opts.bin ?? 'des.js'), ...args], {
      env: { ...process.env, DEBUG: '', ...opts.env },
      cwd: opts.cwd ?? ROOT,
    })
    // A bound on a run that should end (one that hangs is killed: code -1), never a wait for something to happen.
    const watchdog = opts.killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs)
    child.on('close', () => clearTimeout(watchdog))
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }))
    child.stdin.end(opts.stdin ?? '')
  })
}
