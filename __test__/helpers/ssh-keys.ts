// Key pairs for signed-request tests: made by node:crypto, their OpenSSH
// public lines written by ssh-keygen (`ssh-keygen -y -f <private key>`),
// not by the code under test; requests signed as the original's clients sign them.

import { execFileSync } from 'node:child_process'
import { generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export type KeyKind = 'ed25519' | 'rsa' | 'p256' | 'p384' | 'p521'

export const KEY_KINDS: KeyKind[] = ['ed25519', 'rsa', 'p256', 'p384', 'p521']

export interface TestKey {
  kind: KeyKind
  privateKey: KeyObject
  /** The OpenSSH public key line as ssh-keygen writes it (`<type> <base64> [comment]`). */
  line: string
}

function sshString(b: Buffer | string): Buffer {
  const bytes = Buffer.from(b)
  const n = Buffer.alloc(4)
  n.writeUInt32BE(bytes.length)
  return Buffer.concat([n, bytes])
}

/**
 * An Ed25519 private key in OpenSSH's own file format (ssh-keygen reads no
 * PKCS#8 Ed25519 key): openssh-key-v1, unencrypted (PROTOCOL.key).
 */
function opensshEd25519(privateKey: KeyObject): string {
  const jwk = privateKey.export({ format: 'jwk' })
  const seed = Buffer.from(jwk.d!, 'base64url')
  const pub = Buffer.from(jwk.x!, 'base64url')
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)])
  const check = Buffer.alloc(8, 0x5a)
  let priv = Buffer.concat([check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString('test')])
  const pad: number[] = []
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i)
  priv = Buffer.concat([priv, Buffer.from(pad)])
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), Buffer.from([0, 0, 0, 1]), sshString(pubBlob), sshString(priv)])
  const b64 = body.toString('base64').replace(/(.{70})/g, '$1\n')
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64.trim()}\n-----END OPENSSH PRIVATE KEY-----\n`
}

/** A private key file ssh-keygen reads: OpenSSH format for Ed25519, PEM for RSA (PKCS#1) and EC (SEC 1). */
function privateKeyFile(kind: KeyKind, privateKey: KeyObject): string {
  if (kind === 'ed25519') return opensshEd25519(privateKey)
  return privateKey.export({ type: kind === 'rsa' ? 'pkcs1' : 'sec1', format: 'pem' }) as string
}

/** The public key line ssh-keygen derives from a private key file. */
export function sshKeygenPublicLine(file: string): string {
  return execFileSync('/usr/bin/ssh-keygen', ['-y', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim()
}

export function makeKey(kind: KeyKind): TestKey {
  const { privateKey } =
    kind === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : kind === 'rsa'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : generateKeyPairSync('ec', { namedCurve: { p256: 'P-256', p384: 'P-384', p521: 'P-521' }[kind] })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-key-'))
  const file = path.join(dir, 'id')
  fs.writeFileSync(file, privateKeyFile(kind, privateKey), { mode: 0o600 })
  try {
    return { kind, privateKey, line: sshKeygenPublicLine(file) }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** The signature the original's client makes: Ed25519, RSA PKCS#1 v1.5 + SHA-256, ECDSA + SHA-256 (DER). */
export function signText(key: TestKey, text: string): Buffer {
  return sign(key.kind === 'ed25519' ? null : 'sha256', Buffer.from(text, 'utf8'), key.privateKey)
}

export interface SignedHeaders {
  'X-DES-Public-Key': string
  'X-DES-Signature': string
  'X-DES-Timestamp': string
  'X-DES-Nonce': string
}

/** The four headers of a request for `uid` / `createdAt`, signed by `key` (timestamp now unless given). */
export function signedHeaders(key: TestKey, uid: string, createdAt: string, opts: { timestamp?: string; nonce?: string; signedUid?: string } = {}): SignedHeaders {
  const timestamp = opts.timestamp ?? new Date().toISOString()
  const nonce = opts.nonce ?? randomUUID()
  const signature = signText(key, `${opts.signedUid ?? uid}|${createdAt}|${timestamp}|${nonce}`)
  return {
    'X-DES-Public-Key': Buffer.from(key.line).toString('base64'),
    'X-DES-Signature': signature.toString('base64'),
    'X-DES-Timestamp': timestamp,
    'X-DES-Nonce': nonce,
  }
}

/**
 * The OpenSSH certificate line (`<type>-cert-v01@openssh.com <base64>`) of
 * `user`'s key, signed by `ca` with `ssh-keygen -s`.
 */
export function certificateLine(user: TestKey, ca: TestKey): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-cert-'))
  try {
    const caFile = path.join(dir, 'ca')
    fs.writeFileSync(caFile, privateKeyFile(ca.kind, ca.privateKey), { mode: 0o600 })
    const userPub = path.join(dir, 'user.pub')
    fs.writeFileSync(userPub, `${user.line}\n`)
    execFileSync('/usr/bin/ssh-keygen', ['-q', '-s', caFile, '-I', 'test-id', '-n', 'alice', '-V', '+52w', userPub], { stdio: ['ignore', 'pipe', 'pipe'] })
    return fs.readFileSync(path.join(dir, 'user-cert.pub'), 'utf8').trim()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
