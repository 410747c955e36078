// `des stats` (alias des-stats): what a migration with this cutoff would move.

import type { Argv } from 'yargs'
import { loadMigrateEnv } from '../../config/migrate'
import { DesError } from '../../errors'
import { writeOut } from '../output'

const COLUMNS = [
  ['uid-column', 'uidColumn', 'uid'],
  ['created-at-column', 'createdAtColumn', 'created_at'],
  ['file-location-column', 'fileLocationColumn', 'file_location'],
  ['size-bytes-column', 'sizeBytesColumn', 'size_bytes'],
  ['archived-column', 'archivedColumn', 'archived'],
] as const

export function register(y: Argv): Argv {
  return y.command(
    'stats',
    'Count, bytes, oldest and newest of the rows a migration would move',
    (a) =>
      a
        .option('config', { type: 'string', describe: "a des migrate config file: its database URL, table, columns, and (without --cutoff) its archive_age_days" })
        .option('db-url', { type: 'string', describe: 'postgresql://user:pass@host/db (default: the config file, else DES_DB_URL; a password here shows in ps)' })
        .option('table', { type: 'string', describe: 'table or schema.table (default: the config file)' })
        .option('cutoff', { type: 'string', describe: 'ISO-8601: rows created before it (default with --config: now minus migration.archive_age_days)' })
        .option('uid-column', { type: 'string', describe: 'uid column (default uid, or the config file)' })
        .option('created-at-column', { type: 'string', describe: 'created_at column (default created_at, or the config file)' })
        .option('size-bytes-column', { type: 'string', describe: "size column (default size_bytes, or the config file); '' = no size column, total bytes 0 (as in the original)" })
        .option('file-location-column', { type: 'string', describe: 'file location column (default file_location, or the config file)' })
        .option('archived-column', { type: 'string', describe: 'archived flag column (default archived, or the config file)' })
        .option('json', { type: 'boolean', default: false, describe: 'one JSON object on stdout' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'accepted as the original des-stats accepts it: stats only ever read, so it changes nothing' })
        .example('DES_DB_URL=postgres://des:secret@db/des $0 stats --table source_files --cutoff 2024-01-01T00:00:00Z', 'the database URL from the environment')
        .example('$0 stats --config migration.yaml --json', 'what the next migration cycle of this config would find'),
    async (argv) => {
      const env = loadMigrateEnv()
      let fromConfig: import('../../config/migrate').MigrateConfig | undefined
      if (argv.config !== undefined) {
        const { loadMigrateConfig } = await import('../../config/migrate')
        fromConfig = loadMigrateConfig(argv.config, env.vars)
      }
      const url = argv['db-url'] ?? fromConfig?.database.url ?? env.dbUrl
      if (url === undefined) throw new DesError('DES_BAD_ARG', 'no database: give --config FILE, set DES_DB_URL, or --db-url')
      const { dbUrlProblem } = await import('../../config/migrate')
      const urlProblem = dbUrlProblem(url)
      if (urlProblem) throw new DesError('DES_BAD_ARG', `the database URL: ${urlProblem}`)
      const tableName = argv.table ?? fromConfig?.database.tableName
      if (tableName === undefined) throw new DesError('DES_BAD_ARG', '--table is required (or --config FILE)')
      let cutoff = argv.cutoff
      if (cutoff === undefined) {
        if (!fromConfig) throw new DesError('DES_BAD_ARG', '--cutoff is required (or --config FILE, whose archive_age_days sets it)')
        cutoff = new Date(Date.now() - fromConfig.migration.archiveAgeDays * 86_400_000).toISOString()
      }
      const columns = Object.fromEntries(COLUMNS.map(([flag, key, def]) => [key, (argv[flag] as string | undefined) ?? fromConfig?.database[key] ?? def])) as Record<
        (typeof COLUMNS)[number][1],
        string
      >
      // No size column: `--size-bytes-column ''` (the original's switch), or a config file without one.
      const sizeBytesColumn = argv['size-bytes-column'] === '' || (argv['size-bytes-column'] === undefined && fromConfig?.database.sizeBytesColumn === null) ? null : columns.sizeBytesColumn
      const { createKnex, SourceTable } = await import('../../migrate/db')
      const { formatStats, migrationStats } = await import('../../migrate/stats')
      const knex = createKnex(url, 1)
      try {
        const table = new SourceTable(knex, { tableName, ...columns, sizeBytesColumn })
        const s = await migrationStats(table, tableName, cutoff)
        const text = argv.json
          ? JSON.stringify({ table: s.table, cutoff: s.cutoff, count: s.count, total_bytes: s.totalBytes, oldest: s.oldest, newest: s.newest })
          : formatStats(s)
        await writeOut(text + '\n')
      } finally {
        await knex.destroy()
      }
    },
  )
}
