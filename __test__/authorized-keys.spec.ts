// DES_AUTHORIZED_KEYS_PATH: the original's authorized keys file, read and
// validated at start-up as the original validates it.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { parseSshPublicKey } from '../src/auth/ssh-public-key'
import { authorizedKeysFromFile } from '../src/config/authorized-keys'
import { makeKey, type TestKey } from './helpers/ssh-keys'
import { tempDir } from './helpers/store'

const keyCache = new Map<string, TestKey>()
function key(name: string, kind: TestKey['kind'] = 'ed25519'): TestKey {
  let k = keyCache.get(name)
  if (!k) keyCache.set(name, (k = makeKey(kind)))
  return k
}

test('the authorized keys file is read as the original reads it, and refused naming the entry, never quoting a key', (t) => {
  const dir = tempDir('des-authkeys')
  const write = (name: string, text: string) => {
    const file = path.join(dir, name)
    fs.writeFileSync(file, text)
    return file
  }
  const k = key('file')
  const rsa = key('file-rsa', 'rsa')
  const blob = k.line.split(' ')[1]
  const good = write(
    'good.yaml',
    `authorized_keys:\n  - public_key: "${k.line}"\n    permissions: [read]\n    allowed_prefixes: ["a/"]\n    expires_at: "2026-01-01T00:00:00Z"\n    max_requests_per_hour: 10\n    comment: alice\n  - public_key: ${rsa.line}\n    permissions: [read, write]\n`,
  )
  const keys = authorizedKeysFromFile(good)
  t.is(keys.size, 2)
  const alice = keys.get(parseSshPublicKey(k.line).canonical)!
  t.deepEqual([alice.permissions, alice.allowedPrefixes, alice.expiresAtMs, alice.maxRequestsPerHour, alice.comment], [['read'], ['a/'], Date.parse('2026-01-01T00:00:00Z'), 10, 'alice'])
  t.is(authorizedKeysFromFile(write('empty.yaml', '')).size, 0)
  t.is(authorizedKeysFromFile(write('no-list.yaml', 'other: 1\n')).size, 0)

  const entry = (fields: string) => `authorized_keys:\n  - public_key: "${k.line}"\n    comment: bob\n${fields}`
  const refused: Array<[string, string, RegExp]> = [
    ['list.yaml', '- 1\n', /must be a mapping/],
    ['not-list.yaml', 'authorized_keys: {a: 1}\n', /authorized_keys must be a list/],
    ['scalar.yaml', 'authorized_keys: [1]\n', /entry #1: an entry must be a mapping/],
    ['no-key.yaml', 'authorized_keys:\n  - permissions: [read]\n', /entry #1: public_key must be a string/],
    ['bad-key.yaml', `authorized_keys:\n  - {comment: carol}\n  - public_key: "ssh-ed25519 ${blob.slice(0, -8)}AAAAAAAA"\n    comment: dave\n`, /entry #1 \(comment "carol"\): public_key must be a string/],
    ['bad-key2.yaml', `authorized_keys:\n  - public_key: "ssh-ed25519 ${Buffer.concat([Buffer.from(blob, 'base64'), Buffer.from([0])]).toString('base64')}"\n    comment: dave\n`, /entry #1 \(comment "dave"\): invalid public_key: 1 bytes after the key's fields/],
    ['dsa.yaml', `authorized_keys:\n  - public_key: "ssh-dss ${Buffer.from('\0\0\0\x07ssh-dss').toString('base64')}"\n`, /invalid public_key: unsupported key type/],
    ['perm.yaml', entry('    permissions: read\n'), /entry #1 \(comment "bob"\): permissions must be a list of strings/],
    ['allowed.yaml', entry('    allowed_prefixes: [1]\n'), /allowed_prefixes must be a list of strings/],
    ['excluded.yaml', entry('    excluded_prefixes: "a/"\n'), /excluded_prefixes must be a list of strings/],
    ['expires.yaml', entry('    expires_at: 12\n'), /expires_at must be a string/],
    ['expires2.yaml', entry('    expires_at: "next week"\n'), /expires_at "next week" is not an ISO-8601 timestamp/],
    ['max.yaml', entry('    max_requests_per_hour: "10"\n'), /max_requests_per_hour must be an integer/],
    ['max0.yaml', entry('    max_requests_per_hour: 0\n'), /max_requests_per_hour must be positive/],
    ['comment.yaml', `authorized_keys:\n  - public_key: "${k.line}"\n    comment: [1]\n`, /comment must be a string/],
    ['yaml.yaml', `authorized_keys:\n  - public_key: "${k.line}\n    permissions: [read\n`, /not valid YAML at line \d+, column \d+/],
  ]
  for (const [name, text, reason] of refused) {
    const err = t.throws(() => authorizedKeysFromFile(write(name, text)), undefined, name)!
    t.is((err as { code?: string }).code, 'DES_CONFIG', name)
    t.regex(err.message, reason, name)
    t.regex(err.message, new RegExp(`DES_AUTHORIZED_KEYS_PATH=.*${name}`), name)
    t.false(err.message.includes(blob.slice(0, 20)), name)
  }
})
