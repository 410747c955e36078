#!/usr/bin/env node
// A TCP proxy on 127.0.0.1 that holds every chunk for DELAY_MS each way: a
// local S3 (MinIO) that answers as far away as a region does.
//   node bench/latency-proxy.js LISTEN_PORT TARGET_PORT DELAY_MS
// Prints "ready <port>" once it listens. Chunks keep their order (equal delays).

'use strict'
const net = require('node:net')

const [listen, target, delay] = process.argv.slice(2).map(Number)
if (!(target > 0) || !(delay >= 0)) {
  console.error('usage: node bench/latency-proxy.js LISTEN_PORT TARGET_PORT DELAY_MS')
  process.exit(2)
}

/** Copies `from` to `to`, each chunk DELAY_MS later. */
function delayed(from, to) {
  from.on('data', (chunk) => setTimeout(() => to.writable && to.write(chunk), delay))
  from.on('end', () => setTimeout(() => to.end(), delay))
  from.on('error', () => to.destroy())
}

const server = net.createServer((client) => {
  const upstream = net.connect(target, '127.0.0.1')
  delayed(client, upstream)
  delayed(upstream, client)
})
server.listen(listen, '127.0.0.1', () => console.log(`ready ${server.address().port}`))
