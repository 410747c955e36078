// SIGHUP in a serving process: the authorized keys file read again (the
// primary's passing it on is in serve-supervisor.spec.ts).

import test from 'ava'
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { AuthorizedKey } from '../src/config/authorized-keys'
import { reloadAuthorizedKeysOnHangup } from '../src/serve/authorized-keys-reload'
import { silentLogger } from '../src/serve/log'
import { tempDir } from './helpers/store'

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
