// Signed requests in `des serve` as a user runs it (node bin/des.js; needs
// `npx tsc` first): DES_AUTHORIZED_KEYS_PATH read at start-up, the refusals
// and warnings of the original's auth settings, and nonces and rate windows
// shared by the workers of --workers 2.

import test from 'ava'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { loadServeConfig } from '../src/config/env'
import { runCli } from './helpers/cli'
import { startServe, type ServeProcess } from './helpers/serve-process'
import { makeKey, signedHeaders, type TestKey } from './helpers/ssh-keys'
import { payload, tempDir, writeStore } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'

async function sampleDir(): Promise<string> {
  const dir = tempDir('des-signed-cli')
  await writeStore(dir, [{ uid: 'doc-1', createdAt: DAY, data: payload(500, 1) }])
  return dir
}

function keysFile(dir: string, entries: Array<{ key: TestKey; extra?: string }>): string {
  const file = path.join(dir, 'authorized_keys.yaml')
  fs.writeFileSync(file, `authorized_keys:\n${entries.map((e) => `  - public_key: "${e.key.line}"\n    permissions: [read]\n${e.extra ?? ''}`).join('')}`)
  return file
}

/** One GET on a connection of its own (a new connection may land on another worker). */
function getOnNewConnection(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    })
    req.on('error', reject)
  })
}

/** The log lines `match` accepts, once there are `count` of them (log lines are written in batches, at least once a second). */
async function linesOnceThere(s: ServeProcess, match: (l: Record<string, any>) => boolean, count: number): Promise<Array<Record<string, any>>> {
  while (s.lines.filter(match).length < count) await new Promise((resolve) => s.child.stdout!.once('data', resolve))
  return s.lines.filter(match)
}

test('--workers 2: a nonce used on one worker is refused on the other, and a key’s hourly limit counts the requests of both', async (t) => {
  const dir = await sampleDir()
  const k = makeKey('ed25519')
  const limited = makeKey('p256')
  const file = keysFile(dir, [{ key: k }, { key: limited, extra: '    max_requests_per_hour: 3\n' }])
  const s = await startServe(['--workers', '2'], { DES_BASE_DIR: dir, DES_AUTHORIZED_KEYS_PATH: file }, 2)
  try {
    const url = `${s.url}/files/doc-1?created_at=${DAY}`
    // Fresh nonces, each on a new connection: served, and by both workers.
    for (let i = 0; i < 6; i++) t.is(await getOnNewConnection(url, signedHeaders(k, 'doc-1', DAY) as unknown as Record<string, string>), 200)
    const servedBy = new Set((await linesOnceThere(s, (l) => l.msg === 'request' && l.status === 200, 6)).map((l) => l.pid))
    t.is(servedBy.size, 2, 'both workers answered')
    // One request sent six times, each on a new connection: once served, then refused by whichever worker gets it.
    const once = signedHeaders(k, 'doc-1', DAY) as unknown as Record<string, string>
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) statuses.push(await getOnNewConnection(url, once))
    t.deepEqual(statuses, [200, 401, 401, 401, 401, 401])
    const replayRefusedBy = new Set((await linesOnceThere(s, (l) => /nonce was used/.test(String(l.msg)), 5)).map((l) => l.pid))
    t.is(replayRefusedBy.size, 2, 'both workers refused the replay')
    // Three requests an hour for `limited`, wherever they land.
    const limitedStatuses: number[] = []
    for (let i = 0; i < 5; i++) limitedStatuses.push(await getOnNewConnection(url, signedHeaders(limited, 'doc-1', DAY) as unknown as Record<string, string>))
    t.deepEqual(limitedStatuses, [200, 200, 200, 429, 429])
  } finally {
    t.is(await s.stop(), 0)
  }
})

test('SIGHUP re-reads the authorized keys file in every worker, as the original does; an invalid file keeps the keys in force', async (t) => {
  const dir = await sampleDir()
  const alice = makeKey('ed25519')
  const bob = makeKey('p256')
  const file = keysFile(dir, [{ key: alice }])
  const s = await startServe(['--workers', '2'], { DES_BASE_DIR: dir, DES_AUTHORIZED_KEYS_PATH: file }, 2)
  try {
    const url = `${s.url}/files/doc-1?created_at=${DAY}`
    const statusFor = (k: TestKey) => getOnNewConnection(url, signedHeaders(k, 'doc-1', DAY) as unknown as Record<string, string>)
    t.is(await statusFor(bob), 401)
    // Bob added, Alice revoked: the original's way to rotate keys, without a restart.
    keysFile(dir, [{ key: bob }])
    s.child.kill('SIGHUP')
    // Node's default for SIGHUP is to end the process: that is the failure to catch.
    const exited = s.exit.then((code) => Promise.reject(new Error(`des serve ended on SIGHUP (exit ${code})`)))
    await Promise.race([linesOnceThere(s, (l) => l.msg === 'authorized keys reloaded: 1', 2), exited])
    for (let i = 0; i < 4; i++) {
      t.is(await statusFor(bob), 200)
      t.is(await statusFor(alice), 401)
    }
    // A half-written file is not taken: Bob stays in.
    fs.writeFileSync(file, 'authorized_keys:\n  - public_key: "ssh-ed25519 AAAA"\n')
    s.child.kill('SIGHUP')
    const kept = await linesOnceThere(s, (l) => /^authorized keys not reloaded, the 1 in force are kept: .*entry #1/.test(String(l.msg)), 2)
    t.is(kept.length, 2)
    for (let i = 0; i < 4; i++) t.is(await statusFor(bob), 200)
    t.is(s.child.exitCode, null, 'still serving')
  } finally {
    t.is(await s.stop(), 0)
  }
})

test('DES_REQUIRE_AUTHENTICATION with only an authorized keys file starts, and serves signed requests only', async (t) => {
  const dir = await sampleDir()
  const k = makeKey('rsa')
  const s = await startServe(['--workers', '1'], { DES_BASE_DIR: dir, DES_REQUIRE_AUTHENTICATION: 'true', DES_AUTHORIZED_KEYS_PATH: keysFile(dir, [{ key: k }]) })
  try {
    const url = `${s.url}/files/doc-1?created_at=${DAY}`
    const r = await fetch(url)
    t.is(r.status, 401)
    t.is(((await r.json()) as { detail: string }).detail, 'Authentication required')
    t.is((await fetch(url, { headers: signedHeaders(k, 'doc-1', DAY) as unknown as Record<string, string> })).status, 200)
    t.is(s.lines.find((l) => /listening/.test(l.msg))?.authorizedKeys, 1)
  } finally {
    t.is(await s.stop(), 0)
  }
  t.notRegex(s.stderr(), /DES_AUTHORIZED_KEYS_PATH/, 'no warning about the file it reads')
})

test('start-up refusals (exit 2): a bad authorized keys file, named by entry and never quoting the key; DES_VAULT_ADDR while auth is required', async (t) => {
  const dir = await sampleDir()
  const k = makeKey('ed25519')
  const blob = k.line.split(' ')[1]
  const file = path.join(dir, 'bad.yaml')
  fs.writeFileSync(file, `authorized_keys:\n  - public_key: "${k.line}"\n    comment: ops\n    permissions: read\n`)
  const bad = await runCli(['serve', '--port', '0'], { env: { DES_BASE_DIR: dir, DES_AUTHORIZED_KEYS_PATH: file } })
  t.is(bad.code, 2)
  t.regex(bad.stderr, /authorized_keys entry #1 \(comment "ops"\): permissions must be a list of strings/)
  t.false(bad.stderr.includes(blob.slice(0, 20)))
  const missing = await runCli(['serve', '--port', '0'], { env: { DES_BASE_DIR: dir, DES_AUTHORIZED_KEYS_PATH: path.join(dir, 'nope.yaml') } })
  t.is(missing.code, 2)
  t.regex(missing.stderr, /DES_AUTHORIZED_KEYS_PATH=.*nope\.yaml/)
  const vault = await runCli(['serve', '--port', '0'], {
    env: { DES_BASE_DIR: dir, DES_REQUIRE_AUTHENTICATION: 'true', DES_VAULT_ADDR: 'https://vault.local', DES_AUTHORIZED_KEYS_PATH: keysFile(dir, [{ key: k }]) },
  })
  t.is(vault.code, 2)
  t.regex(vault.stderr, /DES_VAULT_ADDR is set: des serve cannot read authorized keys from OpenBao\/Vault/)
})

test('DES_VAULT_ADDR without DES_REQUIRE_AUTHENTICATION is a warning; so is an authorized keys file without keys', async (t) => {
  const dir = await sampleDir()
  const empty = path.join(dir, 'empty.yaml')
  fs.writeFileSync(empty, '')
  const s = await startServe(['--workers', '1'], { DES_BASE_DIR: dir, DES_VAULT_ADDR: 'https://vault.local', DES_AUTHORIZED_KEYS_PATH: empty })
  try {
    const k = makeKey('ed25519')
    const r = await fetch(`${s.url}/files/doc-1?created_at=${DAY}`, { headers: signedHeaders(k, 'doc-1', DAY) as unknown as Record<string, string> })
    t.is(r.status, 401)
    t.is((await fetch(`${s.url}/files/doc-1?created_at=${DAY}`)).status, 200)
  } finally {
    t.is(await s.stop(), 0)
  }
  t.regex(s.stderr(), /DES_VAULT_ADDR is set: des serve does not read authorized keys from OpenBao\/Vault; signed requests are checked against DES_AUTHORIZED_KEYS_PATH only/)
  t.regex(s.stderr(), /DES_AUTHORIZED_KEYS_PATH lists no keys: every signed request will be refused/)
})

test('loadServeConfig: DES_REQUIRE_AUTHENTICATION needs API keys or authorized keys; DES_AUTH_MAX_NONCES bounds the nonces', (t) => {
  const dir = tempDir('des-signed-cfg')
  const empty = path.join(dir, 'empty.yaml')
  fs.writeFileSync(empty, '')
  t.regex(t.throws(() => loadServeConfig({ DES_REQUIRE_AUTHENTICATION: 'true' }))!.message, /no key is configured.*DES_AUTHORIZED_KEYS_PATH.*DES_API_KEYS/)
  t.true(loadServeConfig({ DES_REQUIRE_AUTHENTICATION: 'true', DES_AUTHORIZED_KEYS_PATH: empty }).requireAuthentication)
  t.true(loadServeConfig({ DES_REQUIRE_AUTHENTICATION: 'true', DES_API_KEYS: 'reader-key-123' }).requireAuthentication)
  t.regex(t.throws(() => loadServeConfig({ DES_REQUIRE_AUTHENTICATION: 'true', DES_API_KEYS: 'reader-key-123', DES_VAULT_ADDR: 'http://v' }))!.message, /DES_VAULT_ADDR/)
  t.is(loadServeConfig({}).authorizedKeys, undefined)
  t.is(loadServeConfig({ DES_AUTHORIZED_KEYS_PATH: empty }).authorizedKeys?.size, 0)
  t.is(loadServeConfig({}).maxNonces, 500_000)
  t.is(loadServeConfig({ DES_AUTH_MAX_NONCES: '1000' }).maxNonces, 1000)
  t.throws(() => loadServeConfig({ DES_AUTH_MAX_NONCES: '0' }), { message: /DES_AUTH_MAX_NONCES/ })
})
