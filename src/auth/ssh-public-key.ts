// OpenSSH public keys (RFC 4253 §6.6 wire format, RFC 5656 for ECDSA, RFC
// 8709 for Ed25519) read into node:crypto KeyObjects. Node reads no OpenSSH
// key format, so the blob's fields are parsed here and handed over as a JWK.
//
// Only the key types the original DES verifies: ssh-ed25519, ssh-rsa and
// ecdsa-sha2-nistp256/384/521, and OpenSSH certificates of them
// (`<type>-cert-v01@openssh.com`), read as the key they certify, as the
// original's reader (`load_ssh_public_key`) reads them: neither the CA's
// signature nor the validity is looked at, by it or here. A key's identity
// is its type and its canonical blob (the fields re-encoded, the comment
// dropped), as the original compares keys after `public_bytes(OpenSSH)`.

import { createHash, createPublicKey, type KeyObject } from 'node:crypto'

export type SshKeyType = 'ssh-ed25519' | 'ssh-rsa' | 'ecdsa-sha2-nistp256' | 'ecdsa-sha2-nistp384' | 'ecdsa-sha2-nistp521'

/** A parsed public key. */
export interface SshPublicKey {
  type: SshKeyType
  /** `<type> <base64 of the canonical blob>`: the key without its comment, as the original normalises it. */
  canonical: string
  /** `SHA256:<base64>` of `canonical`, as the original's log lines name a key (not ssh-keygen -l's hash of the blob). */
  fingerprint: string
  key: KeyObject
}

/** Why a public key cannot be read (never quoting it). */
export class SshKeyError extends Error {}

/** The ECDSA curves: SSH name, JWK name, bytes of one coordinate. */
const CURVES: Record<string, { curve: string; crv: string; size: number }> = {
  'ecdsa-sha2-nistp256': { curve: 'nistp256', crv: 'P-256', size: 32 },
  'ecdsa-sha2-nistp384': { curve: 'nistp384', crv: 'P-384', size: 48 },
  'ecdsa-sha2-nistp521': { curve: 'nistp521', crv: 'P-521', size: 66 },
}

/** Reads length-prefixed fields off a blob, refusing any length past its end. */
class WireReader {
  private at = 0
  constructor(private readonly bytes: Buffer) {}

  /** An SSH `string`: uint32 length, then that many bytes. */
  string(what: string): Buffer {
    if (this.bytes.length - this.at < 4) throw new SshKeyError(`${what}: truncated (no length)`)
    const length = this.bytes.readUInt32BE(this.at)
    this.at += 4
    if (length > this.bytes.length - this.at) throw new SshKeyError(`${what}: length ${length} passes the key's end`)
    const value = this.bytes.subarray(this.at, this.at + length)
    this.at += length
    return value
  }

  /** An SSH `mpint`, which must not be negative (as the original's reader says): its magnitude without leading zeros. */
  positiveMpint(what: string): Buffer {
    const raw = this.string(what)
    if (raw.length > 0 && raw[0] & 0x80) throw new SshKeyError(`${what}: negative`)
    let start = 0
    while (start < raw.length && raw[start] === 0) start++
    if (start === raw.length) throw new SshKeyError(`${what}: zero`)
    return raw.subarray(start)
  }

  /** An SSH `uint64` (skipped: only its presence matters). */
  uint64(what: string): void {
    if (this.bytes.length - this.at < 8) throw new SshKeyError(`${what}: truncated`)
    this.at += 8
  }

  /** An SSH `uint32` (skipped). */
  uint32(what: string): void {
    if (this.bytes.length - this.at < 4) throw new SshKeyError(`${what}: truncated`)
    this.at += 4
  }

  /** Refuses bytes after the last field. */
  end(): void {
    if (this.at !== this.bytes.length) throw new SshKeyError(`${this.bytes.length - this.at} bytes after the key's fields`)
  }
}

function sshString(value: Buffer | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'latin1') : value
  const length = Buffer.alloc(4)
  length.writeUInt32BE(bytes.length)
  return Buffer.concat([length, bytes])
}

/** An mpint from a magnitude without leading zeros (a zero byte first when the top bit is set). */
function sshMpint(magnitude: Buffer): Buffer {
  return sshString(magnitude[0] & 0x80 ? Buffer.concat([Buffer.alloc(1), magnitude]) : magnitude)
}

const b64url = (b: Buffer) => b.toString('base64url')

function jwkKey(jwk: Record<string, string>): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' })
  } catch (err) {
    // OpenSSL's reason (a point not on the curve, a modulus too small), never the key.
    throw new SshKeyError(`not a usable ${jwk.kty} key: ${(err as Error).message}`)
  }
}

const CERT_SUFFIX = '-cert-v01@openssh.com'

/** The fields of a key of `type` off `r`: the KeyObject and the fields re-encoded. */
function readKeyFields(r: WireReader, type: string): { key: KeyObject; fields: Buffer[] } {
  if (type === 'ssh-ed25519') {
    const point = r.string('Ed25519 key')
    if (point.length !== 32) throw new SshKeyError(`Ed25519 key: ${point.length} bytes, expected 32`)
    return { key: jwkKey({ kty: 'OKP', crv: 'Ed25519', x: b64url(point) }), fields: [sshString(point)] }
  }
  if (type === 'ssh-rsa') {
    const e = r.positiveMpint('RSA exponent')
    const n = r.positiveMpint('RSA modulus')
    return { key: jwkKey({ kty: 'RSA', e: b64url(e), n: b64url(n) }), fields: [sshMpint(e), sshMpint(n)] }
  }
  if (type in CURVES) {
    const { curve, crv, size } = CURVES[type]
    const name = r.string('curve name').toString('latin1')
    if (name !== curve) throw new SshKeyError(`curve name does not match the key type ${type}`)
    const point = r.string('EC point')
    // OpenSSH writes uncompressed points only (0x04, x, y); so does the original's reader.
    if (point.length !== 1 + 2 * size || point[0] !== 4) throw new SshKeyError(`EC point: expected ${1 + 2 * size} bytes of an uncompressed point`)
    return { key: jwkKey({ kty: 'EC', crv, x: b64url(point.subarray(1, 1 + size)), y: b64url(point.subarray(1 + size)) }), fields: [sshString(name), sshString(point)] }
  }
  throw new SshKeyError('unsupported key type (expected ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521, or a certificate of one)')
}

/** The rest of a certificate after its key (PROTOCOL.certkeys): read through, so that it is whole, and not used. */
function skipCertificateFields(r: WireReader): void {
  r.uint64('certificate serial')
  r.uint32('certificate type')
  for (const what of ['key id', 'principals']) r.string(`certificate ${what}`)
  r.uint64('certificate valid after')
  r.uint64('certificate valid before')
  for (const what of ['critical options', 'extensions', 'reserved', 'signature key', 'signature']) r.string(`certificate ${what}`)
}

/**
 * A key from its wire blob (`string type`, then the type's fields; a
 * certificate's nonce, key fields and the rest of it); `expectedType` from
 * the line, when there is one.
 */
export function parseSshPublicBlob(blob: Buffer, expectedType?: string): SshPublicKey {
  const r = new WireReader(blob)
  const blobType = r.string('key type').toString('latin1')
  if (expectedType !== undefined && blobType !== expectedType) throw new SshKeyError('the key type before the key does not match the type inside it')
  const certificate = blobType.endsWith(CERT_SUFFIX)
  const type = certificate ? blobType.slice(0, -CERT_SUFFIX.length) : blobType
  if (certificate) r.string('certificate nonce')
  const { key, fields } = readKeyFields(r, type)
  if (certificate) skipCertificateFields(r)
  r.end()
  // A certificate is known by the key it certifies, as the original knows it.
  const canonical = `${type} ${Buffer.concat([sshString(type), ...fields]).toString('base64')}`
  return { type: type as SshKeyType, canonical, fingerprint: fingerprintOf(canonical), key }
}

/** `SHA256:` and the unpadded base64 of the sha256 of `canonical`, as the original computes it. */
function fingerprintOf(canonical: string): string {
  return `SHA256:${createHash('sha256').update(canonical, 'latin1').digest('base64').replace(/=+$/, '')}`
}

/** Strict base64 (the alphabet, whole groups of four, padding only at the end), or undefined. */
export function strictBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined
  return Buffer.from(text, 'base64')
}

/**
 * A key from an OpenSSH public key line, `<type> <base64 blob> [comment]`
 * (as in `id_ed25519.pub` and authorized_keys files, without options).
 */
export function parseSshPublicKey(line: string): SshPublicKey {
  const m = /^(\S+)[ \t]+(\S+)/.exec(line)
  if (!m) throw new SshKeyError('not an OpenSSH public key line ("<type> <base64> [comment]")')
  const blob = strictBase64(m[2])
  if (!blob) throw new SshKeyError('the key is not valid base64')
  return parseSshPublicBlob(blob, m[1])
}
