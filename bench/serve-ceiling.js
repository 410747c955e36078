// The ceiling for any Node server in bench/serve.sh: node:http (WORKERS
// processes via node:cluster) answering GET /<uid> from the raw files held in
// memory — no routing, no index, no decode, no disk.
//
//   node bench/serve-ceiling.js RAW_DIR PORT [WORKERS]
const cluster = require('node:cluster')
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')

const [raw, port, workers = '2'] = process.argv.slice(2)
if (cluster.isPrimary && Number(workers) > 1) {
  for (let i = 0; i < Number(workers); i++) cluster.fork()
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM')
    process.exit(0)
  })
} else {
  const files = new Map()
  for (const name of fs.readdirSync(raw)) files.set('/' + name, fs.readFileSync(path.join(raw, name)))
  http
    .createServer((req, res) => {
      const body = files.get(req.url)
      if (!body) {
        res.writeHead(404, ['Content-Length', '0'])
        return res.end()
      }
      res.writeHead(200, ['Content-Type', 'application/octet-stream', 'Content-Length', String(body.length)])
      res.end(body)
    })
    .listen(Number(port), '127.0.0.1')
  process.on('SIGTERM', () => process.exit(0))
}
