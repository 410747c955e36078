// Dependencies that accept a connection and never answer (a half-dead host,
// a wrong port): the commands fail as unavailable (exit 6) and exit, never
// hang. Each run has a bound (killAfterMs): a run that hangs is killed and
// fails its test.

import test from 'ava'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import { httpStatus, type DesError } from '../src/errors'
import { S3Source } from '../src/storage/s3'
import { createS3Client } from '../src/storage/s3-client'
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { runCli } from './helpers/cli'
import { makeCorpus, tempDir } from './helpers/pack'

/** A TCP server on 127.0.0.1 that accepts every connection and says nothing. */
async function silentServer(t: import('ava').ExecutionContext): Promise<number> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  return (server.address() as net.AddressInfo).port
}

test('des pack to an S3 endpoint that never answers fails as unavailable (exit 6) after its retries', async (t) => {
  const port = await silentServer(t)
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: 'a.txt', size: 100 }])
  const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--s3-bucket', 'nowhere', '--no-progress'], {
    env: { DES_S3_ENDPOINT_URL: `http://127.0.0.1:${port}`, DES_S3_REQUEST_TIMEOUT_MS: '300', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', AWS_REGION: 'us-east-1', DES_BACKEND: '', DES_S3_BUCKET: '' },
    killAfterMs: 60_000,
  })
  t.is(r.code, 6, r.stderr)
  t.notRegex(r.stderr, /\n\s+at /)
})

test('des migrate against a database that never answers fails as unavailable (exit 6) and exits, with no stack and no password', async (t) => {
  const port = await silentServer(t)
  const dir = tempDir()
  const config = path.join(dir, 'migrate.json')
  fs.writeFileSync(config, JSON.stringify({ database: { url: `postgresql://u:secret-pw@127.0.0.1:${port}/db`, table_name: 't' }, migration: { archive_age_days: 1 }, packer: { output_dir: path.join(dir, 'out') } }))
  const r = await runCli(['migrate', '--config', config], { env: { DES_DB_URL: '' }, killAfterMs: 90_000 })
  t.is(r.code, 6, r.stderr)
  t.regex(r.stderr, /migration cycle failed/)
  t.notRegex(r.stderr, /\n\s+at |\\n\s+at /)
  t.notRegex(r.stderr, /secret-pw/)
})

/** An S3 client on an HTTP server of the test's own, answering every request with `answer` (no signature is checked). */
async function clientOn(t: import('ava').ExecutionContext, answer: http.RequestListener, opts: { requestTimeoutMs: number; pacedByReaders?: boolean }): Promise<S3Client> {
  const sockets = new Set<net.Socket>()
  const server = http.createServer(answer)
  server.on('connection', (s) => sockets.add(s))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  process.env.AWS_ACCESS_KEY_ID ||= 'x'
  process.env.AWS_SECRET_ACCESS_KEY ||= 'y'
  const endpoint = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const client = createS3Client({ region: 'us-east-1', endpoint, forcePathStyle: true }, { maxAttempts: 1, connectionTimeoutMs: 1000, ...opts })
  t.teardown(() => {
    client.destroy()
    for (const s of sockets) s.destroy()
    server.close()
  })
  return client
}

/** An S3 source as des serve reads one (its bodies paced by its readers), on a server of the test's own. */
async function sourceOn(t: import('ava').ExecutionContext, answer: http.RequestListener, requestTimeoutMs = 5000): Promise<S3Source> {
  return new S3Source(await clientOn(t, answer, { requestTimeoutMs, pacedByReaders: true }), { bucket: 'b', prefix: '' })
}

async function drain(body: AsyncIterable<unknown>): Promise<void> {
  for await (const _chunk of body) void _chunk
}

test('an S3 object whose connection drops mid-body fails as unavailable, a BigFile stream too (a 503, not an internal error)', async (t) => {
  const source = await sourceOn(t, (req, res) => {
    res.writeHead(200, { 'Content-Length': '1000', 'Content-Range': 'bytes 0-999/1000', ETag: '"v1"' })
    res.write(Buffer.alloc(10), () => req.socket.destroy())
  })
  const read = await t.throwsAsync(source.getRange('k', 0, 1000, 'payload'))
  t.is((read as DesError).code, 'DES_UNAVAILABLE', read?.message)
  const { body } = await source.stream('k')
  const streamed = await t.throwsAsync(drain(body))
  t.is((streamed as DesError).code, 'DES_UNAVAILABLE', streamed?.message)
  t.is(httpStatus(streamed), 503)
})

test('an S3 object whose body stops mid-way fails as unavailable after DES_S3_REQUEST_TIMEOUT_MS of silence, never hangs', async (t) => {
  // Headers and 10 bytes of 1000, then nothing: the SDK's request timeout is over once the headers are in.
  const source = await sourceOn(
    t,
    (_req, res) => {
      res.writeHead(200, { 'Content-Length': '1000', 'Content-Range': 'bytes 0-999/1000', ETag: '"v1"' })
      res.write(Buffer.alloc(10))
    },
    300,
  )
  // A payload read (the body read whole) and a BigFile stream (read as it comes).
  const read = await t.throwsAsync(source.getRange('k', 0, 1000, 'payload'))
  t.is((read as DesError).code, 'DES_UNAVAILABLE', read?.message)
  t.regex(String(read?.message), /timed out/)
  const { body } = await source.stream('k')
  const streamed = await t.throwsAsync(drain(body))
  t.is((streamed as DesError).code, 'DES_UNAVAILABLE', streamed?.message)
})

test('a BigFile stream whose reader stops taking bytes for longer than the S3 timeout is not cut: S3 is not waited on then', async (t) => {
  const data = Buffer.alloc(8 << 20, 7)
  const source = await sourceOn(
    t,
    (_req, res) => {
      res.writeHead(200, { 'Content-Length': String(data.length), ETag: '"v1"' })
      res.end(data)
    },
    200,
  )
  const { body } = await source.stream('k')
  let got = 0
  let paused = false
  for await (const chunk of body) {
    got += (chunk as Buffer).length
    if (!paused) {
      // A slow client: nothing taken for several times the timeout, while S3 has long sent what the buffers hold.
      paused = true
      await new Promise((r) => setTimeout(r, 1000))
    }
  }
  t.is(got, data.length)
})

test('an upload that keeps moving is never cut, however long it takes: the timeout is the connection\'s idle time (a client for des serve\'s reads would cut it)', async (t) => {
  const body = Buffer.alloc(64 << 20, 3)
  // S3 on a slow link: it takes the body a chunk every 4 ms (about 4 s in all,
  // twice the timeout), and answers once it has all of it.
  const slowS3: http.RequestListener = (req, res) => {
    let got = 0
    req.on('data', (chunk: Buffer) => {
      got += chunk.length
      req.pause()
      setTimeout(() => req.resume(), 4)
    })
    req.on('end', () => {
      res.writeHead(got === body.length ? 200 : 400, { ETag: '"e"', 'Content-Length': '0' })
      res.end()
    })
  }
  const uploads = await clientOn(t, slowS3, { requestTimeoutMs: 2000 })
  const put = await uploads.send(new PutObjectCommand({ Bucket: 'b', Key: 'k', Body: body }))
  t.is(put.ETag, '"e"')
  // The SDK's own requestTimeout runs from the request's start to its answer: the same upload is cut.
  const reads = await clientOn(t, slowS3, { requestTimeoutMs: 2000, pacedByReaders: true })
  const cut = await t.throwsAsync(reads.send(new PutObjectCommand({ Bucket: 'b', Key: 'k', Body: body })))
  t.regex(String(cut?.message), /requestTimeout/)
})
