// `des serve`: the HTTP retriever (SPEC §7), configured by the SPEC §6 environment.

import type { Argv } from 'yargs'
import { loadConfig, loadServeConfig } from '../../config/env'
import { DesError } from '../../errors'

export function register(y: Argv): Argv {
  return y.command(
    'serve',
    'Serve files over HTTP: GET /files/<uid>?created_at=<ISO-8601>, /health, /ready, /metrics',
    (a) =>
      a
        .option('host', { type: 'string', describe: 'address to listen on (DES_HOST, default 0.0.0.0)' })
        .option('port', { type: 'number', describe: 'port (DES_PORT, default 8000; 0 = any free port)' })
        .option('workers', { type: 'number', describe: 'worker processes sharing the port (DES_WORKERS, default 1)' }),
    async (argv) => {
      const config = loadConfig()
      const serveConfig = loadServeConfig()
      if (argv.host !== undefined) serveConfig.host = argv.host
      if (argv.port !== undefined) {
        if (!Number.isInteger(argv.port) || argv.port < 0 || argv.port > 65535) throw new DesError('DES_BAD_ARG', `--port ${argv.port}: expected 0..65535`)
        serveConfig.port = argv.port
      }
      if (argv.workers !== undefined) {
        if (!Number.isInteger(argv.workers) || argv.workers < 1 || argv.workers > 256) throw new DesError('DES_BAD_ARG', `--workers ${argv.workers}: expected 1..256`)
        serveConfig.workers = argv.workers
      }
      const { serve } = await import('../../serve/server')
      await serve({ config, serve: serveConfig })
    },
  )
}
