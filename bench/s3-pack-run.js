#!/usr/bin/env node
// One `des pack` of a manifest into a bucket, through a tree's dist/ (this
// one or an earlier commit's), counting every S3 request by command:
//   node bench/s3-pack-run.js TREE MANIFEST BUCKET PREFIX
// Prints one JSON line: seconds, files, shards and requests by command.
// The endpoint and credentials come from the environment (DES_S3_ENDPOINT_URL,
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).

'use strict'
const path = require('node:path')

// The SDK's notice that it will want node 22 (the CLI quiets it the same way).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
const [tree, manifest, bucket, prefix] = process.argv.slice(2)
if (!prefix) {
  console.error('usage: node bench/s3-pack-run.js TREE MANIFEST BUCKET PREFIX')
  process.exit(2)
}
const { S3Client } = require(path.join(tree, 'node_modules/@aws-sdk/client-s3'))
const { runPack } = require(path.join(tree, 'dist/pack'))
const { readManifestBatches } = require(path.join(tree, 'dist/pack/manifest'))

async function main() {
  const client = new S3Client({
    endpoint: process.env.DES_S3_ENDPOINT_URL,
    region: process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
  })
  const requests = {}
  client.middlewareStack.add(
    (next, context) => async (args) => {
      requests[context.commandName] = (requests[context.commandName] ?? 0) + 1
      return next(args)
    },
    { step: 'initialize', name: 'countRequests' },
  )
  const started = process.hrtime.bigint()
  const r = await runPack(readManifestBatches(manifest), { kind: 's3', bucket, prefix, client }, { nBits: 8 })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const total = Object.values(requests).reduce((s, n) => s + n, 0)
  console.log(JSON.stringify({ seconds, files: r.files, shards: r.shards.length, total, requests }))
}
main().catch((err) => {
  console.error(err)
  process.exit(1)
})
