// `des serve` as a user runs it (node bin/des.js; needs `npx tsc` first),
// started on a free port and stopped with SIGTERM.

import { spawn, type ChildProcess } from 'node:child_process'
import * as path from 'node:path'
import { ROOT } from './golden'

export interface ServeProcess {
  child: ChildProcess
  url: string
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>
}

/** Starts `des serve --port 0 …` and resolves once its log line says where it listens. */
export function startServe(args: string[], env: NodeJS.ProcessEnv): Promise<ServeProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/des.js'), 'serve', '--host', '127.0.0.1', '--port', '0', '--workers', '1', ...args], {
      env: { ...process.env, DEBUG: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let err = ''
    let pending = ''
    const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    child.stderr!.on('data', (d) => (err += d))
    child.stdout!.on('data', (d: Buffer) => {
      pending += d.toString()
      const lines = pending.split('\n')
      pending = lines.pop()!
      for (const line of lines) {
        let l: { port?: unknown; msg?: unknown }
        try {
          l = JSON.parse(line)
        } catch {
          continue
        }
        if (typeof l.port === 'number' && /listening/.test(String(l.msg))) {
          resolve({
            child,
            url: `http://127.0.0.1:${l.port}`,
            stop: async () => {
              child.kill('SIGTERM')
              return exit
            },
          })
        }
      }
    })
    void exit.then((code) => reject(new Error(`des serve exited (${code}) before listening: ${err}`)))
  })
}
