// `des serve`: the HTTP retriever (SPEC §7), configured by the SPEC §6
// environment; the store flags win over their variables (src/config/store-flags.ts).

import type { Argv } from 'yargs'
import { backendNotices, loadServeConfig, originalAuthNotices, originalDeletionNotices, originalRetentionNotices } from '../../config/env'
import { nBitsFlag, wholeNumberFlag } from '../flags'

export function register(y: Argv): Argv {
  return y.command(
    'serve',
    'Serve files over HTTP: GET /files/<uid>?created_at=<ISO-8601>, /health, /ready, /metrics',
    (a) =>
      a
        .option('host', { type: 'string', describe: 'address to listen on (DES_HOST, default 0.0.0.0)' })
        .option('port', { coerce: wholeNumberFlag('port', 0, 65535), describe: 'port (DES_PORT, default 8000; 0 = any free port)' })
        .option('workers', { coerce: wholeNumberFlag('workers', 1, 256), describe: 'worker processes sharing the port (DES_WORKERS, default: the CPUs this process may use, cgroup quota included)' })
        .option('backend', { choices: ['local', 's3', 'multi_s3'] as const, describe: 'where the shards are (DES_BACKEND; default s3 when DES_S3_BUCKET is set, else local)' })
        .option('base-dir', { type: 'string', describe: 'the local store to serve (DES_BASE_DIR; implies --backend local); must exist' })
        .option('layout', { choices: ['nested', 'flat', 'nested,flat', 'flat,nested'] as const, describe: 'shard names: nested <date>/<HEX>.des, flat <date>_<HEX>_<NNNN>.des (the original\'s), or both in the order to look (DES_LAYOUT, default nested)' })
        .option('n-bits', { coerce: nBitsFlag, describe: 'routing bits 4..16, as the store was written (DES_N_BITS, default 8; with multi_s3 the zones file\'s n_bits, and another is refused)' })
        .example('$0 serve --base-dir /data/des --port 8000', 'serve a local store')
        .example('DES_BACKEND=s3 DES_S3_BUCKET=my-bucket DES_S3_PREFIX=des/ $0 serve --workers 2', 'serve an S3 store with two worker processes'),
    async (argv) => {
      const { loadStoreConfig } = await import('../../config/store-flags')
      const config = loadStoreConfig({ backend: argv.backend, baseDir: argv['base-dir'], layout: argv.layout, nBits: argv['n-bits'] })
      const serveConfig = loadServeConfig()
      for (const notice of originalAuthNotices(process.env, serveConfig.authorizedKeys)) process.emitWarning(notice, { code: 'DES_ORIGINAL_AUTH' })
      for (const notice of originalRetentionNotices()) process.emitWarning(notice, { code: 'DES_ORIGINAL_RETENTION' })
      for (const notice of originalDeletionNotices()) process.emitWarning(notice, { code: 'DES_ORIGINAL_DELETION' })
      if (argv['base-dir'] === undefined && argv.backend === undefined) for (const notice of backendNotices()) process.emitWarning(notice, { code: 'DES_ORIGINAL_BACKEND' })
      if (argv.host !== undefined) serveConfig.host = argv.host
      if (argv.port !== undefined) serveConfig.port = argv.port
      if (argv.workers !== undefined) serveConfig.workers = argv.workers
      const { serve } = await import('../../serve/server')
      await serve({ config, serve: serveConfig })
    },
  )
}
