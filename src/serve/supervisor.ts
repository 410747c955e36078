// The primary of `des serve --workers N`: forks the workers, restarts one
// that dies after it listened, stops them all on SIGTERM/SIGINT or when one
// cannot start, and exits once every worker is gone, with the code the
// first failure deserves. With authorized keys, it passes SIGHUP on (each
// worker re-reads the file).

import cluster from 'node:cluster'
import type { Logger } from './log'
import { flushLogs } from './log'

/** What a worker that cannot start tells the primary: why, and the exit code it deserves. */
export interface StartFailure {
  type: typeof START_FAILURE
  message: string
  exitCode: number
}
export const START_FAILURE = 'des:start-failure'

/** The parts of node:cluster the supervisor uses (a test hands in its own). */
export interface WorkerCluster {
  fork(): SupervisedWorker
  readonly workers?: Record<string, SupervisedWorker | undefined>
  on(event: 'message', listener: (worker: SupervisedWorker, message: unknown) => void): unknown
  on(event: 'exit', listener: (worker: SupervisedWorker, code: number | null, signal: string | null) => void): unknown
  on(event: 'disconnect', listener: (worker: SupervisedWorker) => void): unknown
}
export interface SupervisedWorker {
  readonly id: number
  readonly process: { kill(signal?: NodeJS.Signals): unknown }
  once(event: 'listening', listener: () => void): unknown
}

export interface SupervisorDeps {
  cluster: WorkerCluster
  /** Ends the primary (process.exit). */
  exit: (code: number) => void
  /** Where the one error line goes (stderr). */
  writeError: (line: string) => void
  /** Where SIGTERM/SIGINT come from (process). */
  signals: { on(signal: NodeJS.Signals, listener: () => void): unknown }
}

const processDeps = (): SupervisorDeps => ({
  cluster: cluster as unknown as WorkerCluster,
  exit: (code) => process.exit(code),
  writeError: (line) => process.stderr.write(line),
  signals: process,
})

/** Runs `workers` workers until they are all gone; see the file's head. `forwardHangup`: pass SIGHUP on to the workers. */
export function superviseWorkers(workers: number, logger: Logger, { forwardHangup = false } = {}, deps: SupervisorDeps = processDeps()): void {
  const { cluster } = deps
  let stopping = false
  // The first worker that cannot start (a bad --host, a port in use) says
  // why: the primary writes it once, however many workers fail alike, and
  // exits with its code. A worker that dies without saying: exit 1.
  let startFailure: StartFailure | undefined
  let failedExitCode: number | undefined
  const listening = new Set<number>()
  // Workers still starting when a SIGHUP came: they get it once they listen.
  const owedHangup = new Set<number>()
  const alive = () => Object.keys(cluster.workers ?? {}).length
  // A worker leaves cluster.workers only once it has both exited and
  // disconnected, in either order: the last of those events, whichever it
  // is, ends the primary. (Checked on exit alone, a worker that exited
  // before its channel closed left the primary to drain and end with 0.)
  const finishIfAllGone = () => {
    if (!stopping || alive() > 0) return
    logger.info('all workers stopped')
    flushLogs(logger)
    deps.exit(failedExitCode ?? 0)
  }
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    logger.info({ signal, workers }, 'shutting down workers')
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM')
    finishIfAllGone()
  }
  cluster.on('message', (_worker, message) => {
    const said = message as Partial<StartFailure> | undefined
    if (said?.type !== START_FAILURE || startFailure) return
    startFailure = said as StartFailure
    deps.writeError(`des: ${startFailure.message}\n`)
    failedExitCode = startFailure.exitCode
    stop('SIGTERM')
  })
  const fork = () => {
    const w = cluster.fork()
    w.once('listening', () => {
      listening.add(w.id)
      if (owedHangup.delete(w.id)) w.process.kill('SIGHUP')
    })
  }
  for (let i = 0; i < workers; i++) fork()
  cluster.on('exit', (worker, code, signal) => {
    owedHangup.delete(worker.id)
    if (stopping) return finishIfAllGone()
    if (!listening.has(worker.id)) {
      // A worker that never listened will not do better the next time (bad config, port taken).
      logger.fatal({ worker: worker.id, code, signal }, 'worker failed to start; stopping')
      failedExitCode ??= 1
      return stop('SIGTERM')
    }
    logger.error({ worker: worker.id, code, signal }, 'worker died, starting another')
    fork()
  })
  cluster.on('disconnect', finishIfAllGone)
  deps.signals.on('SIGTERM', () => stop('SIGTERM'))
  deps.signals.on('SIGINT', () => stop('SIGINT'))
  if (!forwardHangup) return
  // Only to a worker that listens: one still starting (a restart after a
  // crash) has no handler yet, so SIGHUP would end it, and a worker that
  // dies before listening stops them all. It may have read the file before
  // the change, so it gets the SIGHUP once it listens.
  deps.signals.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) {
      if (!w) continue
      if (listening.has(w.id)) w.process.kill('SIGHUP')
      else owedHangup.add(w.id)
    }
  })
}
