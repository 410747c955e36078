// An S3 client of the SDK pointed at an in-process HTTP server a test
// writes (one that answers as a particular S3 server would): listening on
// 127.0.0.1, closed with the test.

import type { ExecutionContext } from 'ava'
import type * as http from 'node:http'
import type { S3Client } from '@aws-sdk/client-s3'
import { createS3Client } from '../../src/storage/s3-client'
import { closeServer, listenLocal } from './store'

export async function clientOf(t: Pick<ExecutionContext, 'teardown'>, server: http.Server): Promise<S3Client> {
  const endpoint = await listenLocal(server)
  t.teardown(() => closeServer(server))
  // Any credentials: such a server checks no signature.
  process.env.AWS_ACCESS_KEY_ID ||= 'x'
  process.env.AWS_SECRET_ACCESS_KEY ||= 'y'
  const client = createS3Client({ region: 'us-east-1', endpoint, forcePathStyle: true }, { maxAttempts: 1 })
  t.teardown(() => client.destroy())
  return client
}
