// The real services the integration tests talk to, started by
// scripts/services/up.sh (which `npm test` runs first). No fakes here.

import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { randomBytes } from 'node:crypto'

export interface S3TestEnv {
  endpoint: string
  region: string
  /** Path of scripts/services/minio.sh, to stop and start the server in fault tests. */
  minioScript?: string
}

/** The S3-compatible server's settings; fails loudly when it was not started. */
export function s3TestEnv(): S3TestEnv {
  const endpoint = process.env.DES_TEST_S3_ENDPOINT
  if (!endpoint) throw new Error('DES_TEST_S3_ENDPOINT is not set: run the suite with `npm test` (it starts MinIO), or eval "$(scripts/services/up.sh)" first')
  return { endpoint, region: process.env.AWS_REGION ?? 'us-east-1', minioScript: process.env.DES_MINIO_SCRIPT }
}

/** A client for the test server. */
export function testS3Client(): S3Client {
  const env = s3TestEnv()
  return new S3Client({ endpoint: env.endpoint, region: env.region, forcePathStyle: true })
}

/** Creates a fresh bucket with a unique name for one test. */
export async function freshBucket(client: S3Client, label = 'des'): Promise<string> {
  const name = `${label}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 63)
  await client.send(new CreateBucketCommand({ Bucket: name }))
  return name
}

/** The PostgreSQL URL of the test server; fails loudly when it was not started. */
export function pgTestUrl(): string {
  const url = process.env.DES_TEST_PG_URL
  if (!url) throw new Error('DES_TEST_PG_URL is not set: run the suite with `npm test` (it starts PostgreSQL), or eval "$(scripts/services/up.sh)" first')
  return url
}
