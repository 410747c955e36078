// `des stats` (alias des-stats): what a migration with this cutoff would move.

import type { Argv } from 'yargs'
import { writeOut } from '../output'

export function register(y: Argv): Argv {
  return y.command(
    'stats',
    'Count, bytes, oldest and newest of the rows a migration would move',
    (a) =>
      a
        .option('db-url', { type: 'string', demandOption: true, describe: 'postgresql://user:pass@host/db' })
        .option('table', { type: 'string', demandOption: true, describe: 'table or schema.table' })
        .option('cutoff', { type: 'string', demandOption: true, describe: 'ISO-8601: rows created before it' })
        .option('uid-column', { type: 'string', default: 'uid' })
        .option('created-at-column', { type: 'string', default: 'created_at' })
        .option('size-bytes-column', { type: 'string', default: 'size_bytes' })
        .option('file-location-column', { type: 'string', default: 'file_location' })
        .option('archived-column', { type: 'string', default: 'archived' })
        .option('json', { type: 'boolean', default: false, describe: 'one JSON object' }),
    async (argv) => {
      const { createKnex, SourceTable } = await import('../../migrate/db')
      const { formatStats, migrationStats } = await import('../../migrate/stats')
      const knex = createKnex(argv['db-url'], 1)
      try {
        const table = new SourceTable(knex, {
          tableName: argv.table,
          uidColumn: argv['uid-column'],
          createdAtColumn: argv['created-at-column'],
          fileLocationColumn: argv['file-location-column'],
          sizeBytesColumn: argv['size-bytes-column'],
          archivedColumn: argv['archived-column'],
        })
        const s = await migrationStats(table, argv.table, argv.cutoff)
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
