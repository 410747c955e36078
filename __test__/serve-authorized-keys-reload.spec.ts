// SIGHUP in the primary of `des serve --workers N`, against a cluster whose
// events the test orders.

import test from 'ava'
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { AuthorizedKey } from '../src/config/authorized-keys'
import { forwardHangupToWorkers, reloadAuthorizedKeysOnHangup, type HangupWorker } from '../src/serve/authorized-keys-reload'
import { silentLogger } from '../src/serve/log'
import { tempDir } from './helpers/store'

class FakeWorker implements HangupWorker {
  signals: string[] = []
  readonly process = { kill: (signal?: NodeJS.Signals) => this.signals.push(signal ?? 'SIGTERM') }
  constructor(readonly id: number) {}
}

class FakeCluster extends EventEmitter {
  workers: Record<string, FakeWorker> = {}
  fork(id: number): FakeWorker {
    return (this.workers[id] = new FakeWorker(id))
  }
}

test('SIGHUP reaches a worker only once it listens: one still starting (restarted after a crash) is not ended by it, and reloads when it listens', (t) => {
  const cluster = new FakeCluster()
  const signals = new EventEmitter()
  forwardHangupToWorkers({ cluster, signals })
  const serving = cluster.fork(1)
  cluster.emit('listening', serving)
  const restarted = cluster.fork(2)
  signals.emit('SIGHUP')
  t.deepEqual(serving.signals, ['SIGHUP'])
  t.deepEqual(restarted.signals, [], 'no handler yet: SIGHUP would end it before it listens')
  cluster.emit('listening', restarted)
  t.deepEqual(restarted.signals, ['SIGHUP'], 'it may have read the file before the change')
  cluster.emit('listening', restarted)
  t.deepEqual(restarted.signals, ['SIGHUP'], 'owed once')
  signals.emit('SIGHUP')
  t.deepEqual(serving.signals, ['SIGHUP', 'SIGHUP'])
  t.deepEqual(restarted.signals, ['SIGHUP', 'SIGHUP'])
})

test('a worker gone before it listens is owed nothing', (t) => {
  const cluster = new FakeCluster()
  const signals = new EventEmitter()
  forwardHangupToWorkers({ cluster, signals })
  const w = cluster.fork(1)
  signals.emit('SIGHUP')
  cluster.emit('exit', w)
  delete cluster.workers[1]
  t.deepEqual(w.signals, [])
})

test('a keys file empty at the reload (being rewritten) keeps the keys in force; an empty list revokes them', (t) => {
  const file = path.join(tempDir('des-keys-reload-'), 'keys.yaml')
  const keys = new Map<string, AuthorizedKey>([['alice', {} as AuthorizedKey]])
  const signals = new EventEmitter()
  reloadAuthorizedKeysOnHangup(keys, file, silentLogger, signals)
  fs.writeFileSync(file, '')
  signals.emit('SIGHUP')
  t.deepEqual([...keys.keys()], ['alice'], 'an empty file is not "no keys"')
  fs.writeFileSync(file, 'authorized_keys: []\n')
  signals.emit('SIGHUP')
  t.is(keys.size, 0)
})
