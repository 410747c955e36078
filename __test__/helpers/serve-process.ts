// `des serve` as a user runs it (node bin/des.js; needs `npx tsc` first),
// started on a free port, its JSON log lines kept; stopped with SIGTERM.

import { spawn, type ChildProcess } from 'node:child_process'
import * as path from 'node:path'
import { ROOT } from './golden'

export interface ServeProcess {
  child: ChildProcess
  /** Where the first worker listens. */
  url: string
  port: number
  /** Every JSON log line so far. */
  lines: Array<Record<string, any>>
  /** Resolves with the first log line (already seen or still to come) whose msg matches. */
  lineMatching(msg: RegExp): Promise<Record<string, any>>
  exit: Promise<number | null>
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>
  /** What it wrote to stderr so far. */
  stderr(): string
}

/**
 * Starts `des serve --host 127.0.0.1 --port 0 …args` (log level info unless
 * `env` says) and resolves once `listeners` workers said where they listen.
 */
export function startServe(args: string[], env: NodeJS.ProcessEnv, listeners = 1): Promise<ServeProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/des.js'), 'serve', '--host', '127.0.0.1', '--port', '0', ...args], {
      env: { ...process.env, DEBUG: '', DES_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const lines: Array<Record<string, any>> = []
    const waiters: Array<{ msg: RegExp; resolve: (l: Record<string, any>) => void }> = []
    const lineMatching = (msg: RegExp) =>
      new Promise<Record<string, any>>((res) => {
        const seen = lines.find((l) => msg.test(String(l.msg)))
        if (seen) res(seen)
        else waiters.push({ msg, resolve: res })
      })
    let err = ''
    let pending = ''
    const ports: number[] = []
    const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    child.stderr!.on('data', (d) => (err += d))
    child.stdout!.on('data', (d: Buffer) => {
      pending += d.toString()
      const parts = pending.split('\n')
      pending = parts.pop()!
      for (const p of parts) {
        let l: Record<string, any>
        try {
          l = JSON.parse(p)
        } catch {
          continue // not a log line of ours
        }
        lines.push(l)
        for (const w of waiters.filter((w) => w.msg.test(String(l.msg)))) w.resolve(l)
        if (typeof l.port === 'number' && /listening/.test(String(l.msg))) ports.push(l.port)
      }
      if (ports.length >= listeners) {
        const stop = async () => {
          child.kill('SIGTERM')
          return exit
        }
        resolve({ child, url: `http://127.0.0.1:${ports[0]}`, port: ports[0], lines, lineMatching, exit, stop, stderr: () => err })
      }
    })
    void exit.then((code) => reject(new Error(`des serve exited (${code}) before listening: ${err}`)))
    setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`des serve did not start: ${err}`))
    }, 20_000).unref()
  })
}
