// The primary of `des serve --workers N` against a cluster whose events the
// test orders: a worker leaves cluster.workers only once it has both exited
// and disconnected, and its messages may be read after its exit.

import test from 'ava'
import { EventEmitter } from 'node:events'
import { silentLogger } from '../src/serve/log'
import { START_FAILURE, superviseWorkers, type StartFailure, type SupervisedWorker, type WorkerCluster } from '../src/serve/supervisor'

class FakeWorker extends EventEmitter implements SupervisedWorker {
  exited = false
  connected = true
  signals: string[] = []
  readonly process = { kill: (signal?: NodeJS.Signals) => this.signals.push(signal ?? 'SIGTERM') }
  constructor(readonly id: number) {
    super()
  }
}

/** node:cluster's bookkeeping: a worker is listed until it is both dead and disconnected. */
class FakeCluster extends EventEmitter implements WorkerCluster {
  workers: Record<string, FakeWorker> = {}
  private nextId = 1
  fork(): FakeWorker {
    const w = new FakeWorker(this.nextId++)
    this.workers[w.id] = w
    return w
  }
  exit(w: FakeWorker, code: number): void {
    w.exited = true
    if (!w.connected) delete this.workers[w.id]
    this.emit('exit', w, code, null)
  }
  disconnect(w: FakeWorker): void {
    w.connected = false
    if (w.exited) delete this.workers[w.id]
    this.emit('disconnect', w)
  }
  say(w: FakeWorker, message: unknown): void {
    this.emit('message', w, message)
  }
}

function start(workers: number, forwardHangup = false) {
  const cluster = new FakeCluster()
  const exits: number[] = []
  const errors: string[] = []
  const signals = new EventEmitter()
  superviseWorkers(workers, silentLogger, { forwardHangup }, { cluster, exit: (code) => exits.push(code), writeError: (l) => errors.push(l), signals })
  return { cluster, exits, errors, signals, w: Object.values(cluster.workers) }
}

const portTaken: StartFailure = { type: START_FAILURE, message: 'cannot listen on 127.0.0.1:8000: port 8000 is in use', exitCode: 2 }

test('workers that exit before their channels close: the primary ends with the failure\'s code once the last one disconnects', (t) => {
  const { cluster, exits, errors, w } = start(2)
  cluster.say(w[0], portTaken)
  cluster.exit(w[0], 2)
  cluster.exit(w[1], 2)
  t.deepEqual(exits, [], 'both are still listed: not over yet')
  cluster.disconnect(w[0])
  t.deepEqual(exits, [])
  cluster.disconnect(w[1])
  t.deepEqual(exits, [2])
  t.deepEqual(errors, [`des: ${portTaken.message}\n`], 'one line, however many workers fail alike')
})

test('a worker\'s reason read after its exit still gives the code and the line', (t) => {
  const { cluster, exits, errors, w } = start(2)
  cluster.exit(w[0], 2)
  t.deepEqual(w[1].signals, ['SIGTERM'], 'a worker that never listened stops the others')
  cluster.say(w[0], portTaken)
  cluster.disconnect(w[0])
  cluster.disconnect(w[1])
  cluster.exit(w[1], 0)
  t.deepEqual(exits, [2])
  t.is(errors.length, 1)
})

test('a worker that dies before listening without saying why: exit 1', (t) => {
  const { cluster, exits, errors, w } = start(2)
  cluster.disconnect(w[0])
  cluster.exit(w[0], 1)
  cluster.exit(w[1], 0)
  cluster.disconnect(w[1])
  t.deepEqual(exits, [1])
  t.deepEqual(errors, [])
})

test('a worker that dies after listening is replaced; SIGTERM stops them all and ends with 0', (t) => {
  const { cluster, exits, signals, w } = start(2)
  for (const x of w) x.emit('listening')
  cluster.disconnect(w[0])
  cluster.exit(w[0], 1)
  const workers = Object.values(cluster.workers)
  t.is(workers.length, 2, 'a new worker took its place')
  signals.emit('SIGTERM')
  for (const x of workers) t.deepEqual(x.signals, ['SIGTERM'])
  for (const x of workers) cluster.exit(x, 0)
  t.deepEqual(exits, [])
  for (const x of workers) cluster.disconnect(x)
  t.deepEqual(exits, [0])
})

test('SIGHUP reaches a worker only once it listens: one still starting (restarted after a crash) is not ended by it, and reloads when it listens', (t) => {
  const { cluster, exits, signals, w } = start(2, true)
  w[0].emit('listening')
  signals.emit('SIGHUP')
  t.deepEqual(w[0].signals, ['SIGHUP'])
  t.deepEqual(w[1].signals, [], 'no handler yet: SIGHUP would end it before it listens')
  w[1].emit('listening')
  t.deepEqual(w[1].signals, ['SIGHUP'], 'it may have read the file before the change')
  signals.emit('SIGHUP')
  t.deepEqual(w[0].signals, ['SIGHUP', 'SIGHUP'])
  t.deepEqual(w[1].signals, ['SIGHUP', 'SIGHUP'])
  // A worker restarted after a crash and gone again before it listens is sent nothing it was owed.
  cluster.disconnect(w[0])
  cluster.exit(w[0], 1)
  const restarted = Object.values(cluster.workers).find((x) => x.id > 2)!
  signals.emit('SIGHUP')
  t.deepEqual(restarted.signals, [])
  cluster.disconnect(restarted)
  cluster.exit(restarted, 1)
  t.deepEqual(restarted.signals, [])
  t.deepEqual(w[1].signals, ['SIGHUP', 'SIGHUP', 'SIGHUP', 'SIGTERM'], 'one that never listened stops the rest')
  cluster.disconnect(w[1])
  cluster.exit(w[1], 0)
  t.deepEqual(exits, [1])
})

test('without authorized keys, SIGHUP is not passed on', (t) => {
  const { signals, w } = start(1)
  w[0].emit('listening')
  signals.emit('SIGHUP')
  t.deepEqual(w[0].signals, [])
})
