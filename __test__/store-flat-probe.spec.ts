// Whether a store holds the original's flat shards, as des pack and des
// migrate ask before writing nested ones with no layout set: its root's
// names only, never a walk of the whole store.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import { LocalSource } from '../src/storage/local'
import { S3Source } from '../src/storage/s3'
import { firstFlatShardKey } from '../src/store/flat-probe'
import { freshBucket, testS3Client } from './helpers/services'
import { tempDir } from './helpers/store'

test('a flat shard at the root is found past 150 nested date folders that list before it (a store des convert has partly moved)', async (t) => {
  const store = tempDir('des-flat-probe-')
  for (let day = 1; day <= 150; day++) {
    const dateDir = path.join(store, `2023${String(100 + day).padStart(4, '0')}`)
    fs.mkdirSync(dateDir)
    fs.writeFileSync(path.join(dateDir, '01.des'), '')
  }
  fs.writeFileSync(path.join(store, '20240501_01_0000.des'), '')
  t.is(await firstFlatShardKey([new LocalSource(store)]), '20240501_01_0000.des')
})

test('a nested store, and a store folder not made yet, hold no flat shard', async (t) => {
  const store = tempDir('des-flat-probe-')
  fs.mkdirSync(path.join(store, '20240501'))
  fs.writeFileSync(path.join(store, '20240501', '01.des'), '')
  t.is(await firstFlatShardKey([new LocalSource(store)]), undefined)
  t.is(await firstFlatShardKey([new LocalSource(path.join(store, 'not-yet'))]), undefined)
})

test('S3: a flat shard at the root is found past 1,100 nested keys that list before it (more than a page)', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'des-flat-probe')
  const put = (key: string) => client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '' }))
  const nested: string[] = []
  for (let day = 1; day <= 110; day++) for (let hex = 0; hex < 10; hex++) nested.push(`archive/2023${String(100 + day).padStart(4, '0')}/0${hex}.des`)
  for (let i = 0; i < nested.length; i += 50) await Promise.all(nested.slice(i, i + 50).map(put))
  await put('archive/20240501_01_0000.des')
  t.is(await firstFlatShardKey([new S3Source(client, { bucket, prefix: 'archive/' })]), '20240501_01_0000.des')
  t.is(await firstFlatShardKey([new S3Source(client, { bucket, prefix: 'none/' })]), undefined)
})
