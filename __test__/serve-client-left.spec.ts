// What des serve records for a response whose client leaves before its end
// (docs/OPERATIONS.md): error 499 in des_retrievals_total and on the log line,
// with the body bytes that went out (0 for a body sent in one write), whatever
// kind of response it was. Over every backend. Serial: the counters are
// process-wide.

import test from 'ava'
import * as http from 'node:http'
import { retrievalsTotal } from '../src/metrics'
import { createServer } from '../src/serve/server'
import { BACKENDS, openBackend, type BackendKind } from './helpers/backends'
import { captureLogs, type LogLine } from './helpers/logs'
import { closeServer, listenLocal, payload, tempDir, writeStore } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'
/** Larger than loopback socket buffers take at once, so a client that stops reading leaves most of it unsent. */
const SIZE = 16 << 20
const fileUrl = (uid: string) => `/files/${encodeURIComponent(uid)}?created_at=${encodeURIComponent(DAY)}`

async function retrievals(backend: string, status: string, code: string): Promise<number> {
  const m = await retrievalsTotal.get()
  return m.values.filter((v) => v.labels.backend === backend && v.labels.status === status && v.labels.code === code).reduce((s, v) => s + v.value, 0)
}

/** GETs `target`, takes the first chunk of the body, then closes the connection; resolves to the response's request id, status and Content-Length. */
function leaveAfterFirstChunk(base: string, target: string, headers: Record<string, string> = {}): Promise<{ id: string; status: number; length: number }> {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: target, headers, agent: false }, (res) => {
      res.once('data', () => {
        req.destroy()
        resolve({ id: res.headers['x-request-id'] as string, status: res.statusCode!, length: Number(res.headers['content-length']) })
      })
    })
    req.on('error', reject) // after the deliberate destroy the promise is settled already
    req.end()
  })
}

/** `streamed`: sent a slice at a time, so the bytes that went out are known; else one write, logged as 0 bytes cut short. */
const KINDS: Array<{ name: string; uid: string; status: number; streamed: boolean; headers?: Record<string, string> }> = [
  { name: 'an inline file', uid: 'inline', status: 200, streamed: false },
  { name: 'a range of an inline file', uid: 'inline', status: 206, streamed: false, headers: { Range: `bytes=1-${SIZE - 2}` } },
  { name: 'an inline zstd file sent as stored', uid: 'inline', status: 200, streamed: false, headers: { 'Accept-Encoding': 'zstd' } },
  { name: 'a BigFile', uid: 'big', status: 200, streamed: true },
  { name: 'a range of a BigFile', uid: 'big', status: 206, streamed: true, headers: { Range: `bytes=1-${SIZE - 2}` } },
]

for (const kind of BACKENDS) {
  for (const k of KINDS) {
    test.serial(`${kind}: ${k.name} whose client leaves mid-way counts and logs as 499 with the bytes that went out`, async (t) => {
      const dir = tempDir()
      // Random bytes do not compress: the zstd entry stays about SIZE bytes as stored.
      await writeStore(dir, [{ uid: 'inline', createdAt: DAY, data: payload(SIZE, 1) }], { writer: { codec: 'zstd', bigFileThreshold: 2 * SIZE } })
      await writeStore(dir, [{ uid: 'big', createdAt: DAY, data: payload(SIZE, 2) }], { writer: { bigFileThreshold: 1 << 20 }, append: true })
      const b = await openBackend(kind as BackendKind, dir)
      const logs = captureLogs('info')
      const server = createServer({ store: b.store(), logger: logs.logger, zstdPassthrough: true })
      const url = await listenLocal(server)
      try {
        const label = kind
        const left = await retrievals(label, 'error', '499')
        const answered = await retrievals(label, 'ok', String(k.status))
        const { id, status, length } = await leaveAfterFirstChunk(url, fileUrl(k.uid), k.headers)
        t.is(status, k.status)
        const line: LogLine = await logs.waitFor((l) => l.request_id === id)
        t.is(line.status, 499)
        // Not all went out (it left); streamed, some did (the client read a chunk): what the kernel took, to a slice.
        if (k.streamed) t.true(line.bytes > 0 && line.bytes < length, `${line.bytes} bytes logged of ${length}`)
        else t.is(line.bytes, 0, `${line.bytes} bytes logged of ${length}`)
        t.is(await retrievals(label, 'error', '499'), left + 1)
        t.is(await retrievals(label, 'ok', String(k.status)), answered)
      } finally {
        await closeServer(server)
      }
    })
  }
}
