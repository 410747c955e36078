// `des ls | cat | inspect`: look inside one shard file (`des verify` is in verify.ts).

import type { Argv } from 'yargs'
import { ShardReader, type EntryInfo } from '../../native'
import { loadBigfilesPrefix } from '../../config/env'
import { DesError } from '../../errors'
import { writeOut } from '../output'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { pipeline } from 'node:stream/promises'

/**
 * A BigFile to stdout as it is read, never whole in memory: its size checked
 * before the first byte, its sha256 as it streams (the last chunk held back,
 * so a file that fails never comes out whole).
 */
async function catBigfile(file: string, size: number, sha256: string, what: string): Promise<void> {
  let st: fs.Stats
  try {
    st = await fs.promises.stat(file)
  } catch (err) {
    throw new DesError((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'DES_CORRUPT' : 'DES_IO', `${what}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`)
  }
  // A folder, a device or a FIFO is no BigFile: never read (a FIFO would wait for a writer, a device never end).
  if (!st.isFile()) throw new DesError('DES_CORRUPT', `${what} is not a regular file`)
  if (st.size !== size) throw new DesError('DES_CORRUPT', `${what} is ${st.size} bytes, the index says ${size}`)
  // Loaded here: every command's start would pay for the store otherwise.
  const { BigfileCheck } = await import('../../store/store')
  await pipeline(fs.createReadStream(file), new BigfileCheck(size, sha256, what), process.stdout, { end: false })
}

/** A uid for a tab-separated line: as it is, unless a control character (a tab, a newline) would forge a column or a line; then quoted as JSON. */
function plainUid(uid: string): string {
  return /[\x00-\x1f\x7f]/.test(uid) ? JSON.stringify(uid) : uid
}

const PAGE = 10_000

async function* allEntries(reader: ShardReader): AsyncGenerator<EntryInfo> {
  for (let start = 0; start < reader.entryCount; start += PAGE) {
    for (const e of reader.entries(start, PAGE)) yield e
  }
}

/** The `ls --json` form of an entry. */
export function entryJson(e: EntryInfo): Record<string, unknown> {
  return {
    uid: e.uid,
    size: e.size,
    codec: e.codec ?? null,
    is_bigfile: e.isBigfile,
    stored_size: e.storedSize,
    ...(e.sha256 ? { sha256: e.sha256 } : {}),
    meta: JSON.parse(e.meta),
  }
}

/** Sizes and codecs of a whole shard. */
export async function shardStats(path: string, reader: ShardReader): Promise<Record<string, unknown>> {
  let size = 0
  let stored = 0
  let bigfiles = 0
  let bigfileBytes = 0
  const codecs: Record<string, number> = {}
  for await (const e of allEntries(reader)) {
    if (e.isBigfile) {
      bigfiles++
      bigfileBytes += e.size
      continue
    }
    size += e.size
    stored += e.storedSize
    codecs[e.codec ?? 'none'] = (codecs[e.codec ?? 'none'] ?? 0) + 1
  }
  return {
    path,
    version: reader.version,
    entries: reader.entryCount,
    file_size: reader.fileSize,
    index_size: reader.indexSize,
    data_end: reader.dataEnd,
    inline_bytes: size,
    stored_bytes: stored,
    compression_ratio: stored > 0 ? Number((size / stored).toFixed(3)) : null,
    codecs,
    bigfiles,
    bigfile_bytes: bigfileBytes,
  }
}

export function register(y: Argv): Argv {
  return y
    .command(
      'ls <shard>',
      'List the entries of a shard',
      (a) =>
        a
          .positional('shard', { type: 'string', demandOption: true, describe: 'a local shard file (.des)' })
          .option('json', { type: 'boolean', default: false, describe: 'one JSON object per line' })
          .example('$0 ls /data/des/20240302/5C.des --json', 'every entry of one shard as JSON lines'),
      async (argv) => {
        const reader = await ShardReader.open(argv.shard)
        for await (const e of allEntries(reader)) {
          const line = argv.json
            ? JSON.stringify(entryJson(e))
            : `${plainUid(e.uid)}\t${e.size}\t${e.isBigfile ? 'bigfile' : e.codec}\t${e.storedSize}`
          await writeOut(line + '\n')
        }
      },
    )
    .command(
      'cat <shard> <uid>',
      "Write a file's bytes to stdout",
      (a) =>
        a
          .positional('shard', { type: 'string', demandOption: true, describe: 'a local shard file (.des)' })
          .positional('uid', { type: 'string', demandOption: true, describe: 'the uid of the file' })
          .option('bigfiles-prefix', { type: 'string', describe: "BigFile folder next to the shard's date folder (default DES_BIGFILES_PREFIX, else _bigFiles)" })
          .example('$0 cat /data/des/20240302/5C.des invoice-17 > invoice-17.json', "one file's bytes"),
      async (argv) => {
        const bigfilesPrefix = argv['bigfiles-prefix'] ?? loadBigfilesPrefix()
        const reader = await ShardReader.open(argv.shard)
        const entry = reader.entry(argv.uid)
        if (entry === null) throw new DesError('DES_NOT_FOUND', `not found: uid ${JSON.stringify(argv.uid)} is not in ${argv.shard}`)
        if (!entry.isBigfile) return writeOut(await reader.read(argv.uid, bigfilesPrefix))
        await catBigfile(path.join(path.dirname(argv.shard), bigfilesPrefix, entry.sha256!), entry.size, entry.sha256!, `BigFile of uid ${JSON.stringify(argv.uid)}`)
      },
    )
    .command(
      'inspect <shard>',
      'Show version, entry count, sizes, compression ratio and codecs',
      (a) =>
        a
          .positional('shard', { type: 'string', demandOption: true, describe: 'a local shard file (.des)' })
          .option('json', { type: 'boolean', default: false, describe: 'one JSON object' })
          .example('$0 inspect /data/des/20240302/5C.des', 'version, entries, index size, compression ratio, codecs'),
      async (argv) => {
        const reader = await ShardReader.open(argv.shard)
        const stats = await shardStats(argv.shard, reader)
        if (argv.json) return writeOut(JSON.stringify(stats) + '\n')
        const lines = Object.entries(stats).map(([k, v]) => `${k.padEnd(18)} ${typeof v === 'object' ? JSON.stringify(v) : v}`)
        await writeOut(lines.join('\n') + '\n')
      },
    )
}
