// The two kinds of store `des convert` works on: a local directory and an S3
// bucket (with its prefix). Each reads through its ByteSource, writes nested
// parts through the packer's target, and removes objects.

import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { DesError } from '../errors'
import type { WriterSettings } from '../pack/fill'
import { LocalTarget } from '../pack/local-target'
import { S3Target, s3Failure } from '../pack/s3-target'
import { LocalSource } from '../storage/local'
import { S3Source } from '../storage/s3'
import { s3ObjectKey } from '../storage/s3-key'
import { downloadTo, type ConvertStore } from './index'

/** A store in a local directory. */
export function localConvertStore(dir: string, settings: WriterSettings): ConvertStore {
  const source = new LocalSource(dir, { madeByWriting: true })
  return {
    source,
    sink: new LocalTarget(dir, settings),
    async remove(key) {
      const file = source.localPath(key)
      await fsp.rm(file, { force: true })
      // The flat layout's `_bigFiles` folder goes with its last BigFile.
      if (key.includes('/')) await fsp.rmdir(path.dirname(file)).catch(() => undefined)
    },
    async localCopy(key, size) {
      const file = source.localPath(key)
      const st = await fsp.stat(file).catch(() => null)
      if (!st?.isFile()) throw new DesError('DES_CORRUPT', `BigFile ${key} is missing`)
      if (st.size !== size) throw new DesError('DES_CORRUPT', `BigFile ${key} is ${st.size} bytes, its index entry says ${size}`)
      return file
    },
  }
}

/** A store in an S3 bucket under `prefix` ('' or ending in '/'). */
export function s3ConvertStore(client: S3Client, bucket: string, prefix: string, settings: WriterSettings, tmpDir?: string): ConvertStore {
  const source = new S3Source(client, { bucket, prefix }, 's3')
  return {
    source,
    sink: new S3Target(client, bucket, prefix, settings, {}, tmpDir),
    async remove(key) {
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: s3ObjectKey(prefix, key) }))
      } catch (err) {
        throw s3Failure(`remove s3://${bucket}/${s3ObjectKey(prefix, key)}`, err)
      }
    },
    localCopy: (key, size, dir) => downloadTo(source, key, size, dir),
  }
}
