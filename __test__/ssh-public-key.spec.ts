// OpenSSH public keys read without node:crypto's help: the lines ssh-keygen
// writes for every key type the original verifies, and blobs that are refused.

import test from 'ava'
import { verify } from 'node:crypto'
import { parseSshPublicBlob, parseSshPublicKey, SshKeyError } from '../src/auth/ssh-public-key'
import { KEY_KINDS, makeKey, signText } from './helpers/ssh-keys'

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
const str = (b: Buffer | string) => Buffer.concat([u32(Buffer.byteLength(b)), Buffer.from(b)])
const line = (blob: Buffer, type = 'ssh-ed25519') => `${type} ${blob.toString('base64')}`

for (const kind of KEY_KINDS) {
  test(`a ${kind} line from ssh-keygen reads into a key that verifies the signature of its private key`, (t) => {
    const key = makeKey(kind)
    const parsed = parseSshPublicKey(key.line)
    t.is(parsed.type, key.line.split(' ')[0])
    // The canonical form is the line without its comment (re-encoding changes nothing in a well-formed key).
    t.is(parsed.canonical, key.line.split(' ').slice(0, 2).join(' '))
    t.regex(parsed.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/)
    const sig = signText(key, 'uid|2024-03-01T10:00:00Z|ts|nonce')
    t.true(verify(kind === 'ed25519' ? null : 'sha256', Buffer.from('uid|2024-03-01T10:00:00Z|ts|nonce'), parsed.key, sig))
    t.false(verify(kind === 'ed25519' ? null : 'sha256', Buffer.from('other|2024-03-01T10:00:00Z|ts|nonce'), parsed.key, sig))
  })
}

test('one key, whatever its comment, is one identity', (t) => {
  const key = makeKey('ed25519')
  const [type, blob] = key.line.split(' ')
  t.is(parseSshPublicKey(`${type} ${blob}`).canonical, parseSshPublicKey(`${type}\t${blob} alice@laptop`).canonical)
})

test('an RSA mpint with extra leading zeros is the same key as the minimal one (the original normalises it)', (t) => {
  const key = makeKey('rsa')
  const blob = Buffer.from(key.line.split(' ')[1], 'base64')
  // type (4+7), e (4+3), then n: insert one more zero byte in front of n.
  const at = 4 + 7 + 4 + 3
  const nLength = blob.readUInt32BE(at)
  const padded = Buffer.concat([blob.subarray(0, at), u32(nLength + 1), Buffer.from([0]), blob.subarray(at + 4)])
  t.is(parseSshPublicKey(line(padded, 'ssh-rsa')).canonical, parseSshPublicKey(key.line).canonical)
})

test('malformed keys are refused with a reason that does not quote them', (t) => {
  const ed = Buffer.from(makeKey('ed25519').line.split(' ')[1], 'base64')
  const ec = Buffer.from(makeKey('p256').line.split(' ')[1], 'base64')
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['trailing bytes', () => parseSshPublicBlob(Buffer.concat([ed, Buffer.from([0])])), /1 bytes after the key's fields/],
    ['a short Ed25519 key', () => parseSshPublicBlob(Buffer.concat([str('ssh-ed25519'), str(Buffer.alloc(31))])), /31 bytes, expected 32/],
    ['a length past the end', () => parseSshPublicBlob(Buffer.concat([str('ssh-ed25519'), u32(32), Buffer.alloc(8)])), /passes the key's end/],
    ['no length at all', () => parseSshPublicBlob(Buffer.alloc(2)), /truncated/],
    ['an unknown type', () => parseSshPublicBlob(Buffer.concat([str('ssh-dss'), str(Buffer.alloc(20))])), /unsupported key type/],
    ['a certificate cut short after its key', () => parseSshPublicBlob(Buffer.concat([str('ssh-ed25519-cert-v01@openssh.com'), str(Buffer.alloc(8)), str(Buffer.alloc(32))])), /certificate serial: truncated/],
    ['a certificate of an unknown type', () => parseSshPublicBlob(Buffer.concat([str('ssh-dss-cert-v01@openssh.com'), str(Buffer.alloc(8))])), /unsupported key type/],
    ['a line type that is not the blob type', () => parseSshPublicKey(line(ed, 'ssh-rsa')), /does not match/],
    ['a negative RSA modulus', () => parseSshPublicBlob(Buffer.concat([str('ssh-rsa'), str(Buffer.from([1, 0, 1])), str(Buffer.from([0x80, 1]))])), /negative/],
    ['a zero RSA exponent', () => parseSshPublicBlob(Buffer.concat([str('ssh-rsa'), str(Buffer.alloc(0)), str(Buffer.from([1]))])), /zero/],
    ['a curve name of another type', () => parseSshPublicBlob(Buffer.concat([str('ecdsa-sha2-nistp384'), ec.subarray(4 + 19)])), /curve name does not match/],
    ['a compressed EC point', () => parseSshPublicBlob(Buffer.concat([str('ecdsa-sha2-nistp256'), str('nistp256'), str(Buffer.concat([Buffer.from([2]), Buffer.alloc(32, 1)]))])), /uncompressed point/],
    ['an EC point off the curve', () => parseSshPublicBlob(Buffer.concat([str('ecdsa-sha2-nistp256'), str('nistp256'), str(Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 1)]))])), /not a usable EC key/],
    ['a line without a key', () => parseSshPublicKey('ssh-ed25519'), /not an OpenSSH public key line/],
    ['a key that is not base64', () => parseSshPublicKey('ssh-ed25519 AAAA*AAA'), /not valid base64/],
  ]
  for (const [what, parse, reason] of cases) {
    const err = t.throws(parse, { instanceOf: SshKeyError }, what)
    t.regex(err!.message, reason, what)
    t.false(err!.message.includes(ed.toString('base64').slice(0, 12)), what)
  }
})
