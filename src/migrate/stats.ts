// `des stats`: what a migration with this cutoff would move.

import { parseTimestamp } from '../native'
import { DesError } from '../errors'
import type { SourceTable } from './db'
import { formatBytes } from '../progress'

export interface MigrationStats {
  table: string
  cutoff: string
  /** Unarchived rows created before the cutoff. */
  count: number
  totalBytes: number
  /** created_at of the oldest and newest of them (ISO, UTC), null when none. */
  oldest: string | null
  newest: string | null
}

/** Counts, bytes, oldest and newest of the unarchived rows created before `cutoff` (ISO-8601; no offset = UTC). */
export async function migrationStats(table: SourceTable, tableName: string, cutoff: string): Promise<MigrationStats> {
  let seconds: number
  try {
    seconds = parseTimestamp(cutoff)
  } catch (err) {
    throw new DesError('DES_BAD_ARG', `--cutoff ${JSON.stringify(cutoff)}: ${(err as Error).message}`)
  }
  const iso = new Date(seconds * 1000).toISOString()
  // Sub-second precision of the cutoff is kept by handing PostgreSQL the text itself when it has an offset.
  const exact = /(Z|[+-]\d{2}(:?\d{2})?)$/i.test(cutoff.trim()) ? cutoff.trim() : iso
  const s = await table.pendingStats({ iso: exact })
  return { table: tableName, cutoff: iso, ...s }
}

/** The text form of `des stats`. */
export function formatStats(s: MigrationStats): string {
  return [
    `table:       ${s.table}`,
    `cutoff:      ${s.cutoff}`,
    `files:       ${s.count}`,
    `total bytes: ${s.totalBytes} (${formatBytes(s.totalBytes)})`,
    `oldest:      ${s.oldest ?? '-'}`,
    `newest:      ${s.newest ?? '-'}`,
  ].join('\n')
}
