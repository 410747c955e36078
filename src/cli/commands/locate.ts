// `des locate`: where a uid lives, one JSON object per answer, in the layout
// DES_LAYOUT (or --layout) names: nested `<UTC date>/<HEX>.des`, or the
// reference's flat `<date as written>_<HEX>_0000.des` (its first shard).

import type { Argv } from 'yargs'
import { loadLayout, loadNBits, type Layout } from '../../config/env'
import { locateIn } from '../../store/layout'
import { describe as describeError } from '../../errors'
import { DesError } from '../../errors'
import { writeOut } from '../output'
import { nBitsFlag } from '../flags'
import { pythonNumberText, topLevelMember } from '../../number-uid'
import { boundedLines, TOO_LONG } from '../lines'
import { MAX_UID_BYTES, uidBytesOverLimit } from '../../store/uid'

/** A `--stdin` line longer than this is answered with an error, not read: the longest uid (65535 bytes) fits, written with JSON escapes. */
export const MAX_LINE_BYTES = 1024 * 1024

function asJson(uid: string, createdAt: string, nBits: number, layout: Layout): string {
  // Routed, it would name a key; but no shard can hold it (des pack refuses it), so no key ever has it.
  const uidBytes = uidBytesOverLimit(uid)
  if (uidBytes !== undefined) throw new DesError('DES_BAD_ARG', `a uid of ${uidBytes} bytes is longer than the ${MAX_UID_BYTES} a shard can hold: no shard has it`)
  const loc = locateIn(layout, uid, createdAt, nBits)
  return JSON.stringify({
    uid: loc.uid,
    date_dir: loc.dateDir,
    shard_index: loc.shardIndex,
    shard_hex: loc.shardHex,
    object_key: loc.objectKey,
  })
}

/** One output line for one input line of `--stdin`; a bad line gives `{"error": ...}`. */
export function locateLine(line: string, defaultNBits: number, layout: Layout = 'nested'): string {
  try {
    const input = JSON.parse(line) as { uid?: unknown; created_at?: unknown; n_bits?: unknown }
    if (input === null || typeof input !== 'object') throw new DesError('DES_BAD_ARG', 'a line must be a JSON object')
    const { uid, created_at: createdAt } = input
    const nBits = input.n_bits ?? defaultNBits
    if (typeof uid !== 'string' && typeof uid !== 'number') throw new DesError('DES_BAD_ARG', 'uid must be a string or a number')
    if (typeof createdAt !== 'string') throw new DesError('DES_BAD_ARG', 'created_at must be an ISO-8601 string')
    if (typeof nBits !== 'number' || !Number.isInteger(nBits)) throw new DesError('DES_BAD_ARG', 'n_bits must be an integer')
    // A number as the original makes it text, from the line's own digits (JSON.parse loses 1.0 and digits past 2^53).
    const uidText = typeof uid === 'number' ? pythonNumberText(topLevelMember(line, 'uid') ?? String(uid)) : uid
    return asJson(uidText, createdAt, nBits, layout)
  } catch (err) {
    return JSON.stringify({ error: describeError(err) })
  }
}

export function register(y: Argv): Argv {
  return y.command(
    'locate [uid]',
    'Route a uid to its shard key (no database)',
    (a) =>
      a
        .positional('uid', { type: 'string', describe: 'the file uid' })
        .option('created-at', { type: 'string', describe: 'ISO-8601 creation time (no offset = UTC)' })
        .option('n-bits', { coerce: nBitsFlag, describe: 'routing bits, 4..16 (default DES_N_BITS, else 8)' })
        .option('layout', { choices: ['nested', 'flat'] as const, describe: 'the key in this layout (default DES_LAYOUT, else nested); flat dates a timestamp as written' })
        .option('stdin', { type: 'boolean', default: false, describe: 'read JSON lines {uid, created_at, n_bits}; one JSON answer per line' })
        .example('$0 locate invoice-17 --created-at 2024-03-02T09:15:00Z', 'the shard key of one file')
        .example('echo \'{"uid":"a","created_at":"2024-03-02T09:15:00Z"}\' | $0 locate --stdin', 'many at once, as JSON lines'),
    async (argv) => {
      const nBits = argv['n-bits'] ?? loadNBits()
      const layout = argv.layout ?? loadLayout()
      if (argv.stdin) {
        for await (const line of boundedLines(process.stdin, MAX_LINE_BYTES)) {
          if (line === TOO_LONG) {
            await writeOut(JSON.stringify({ error: describeError(new DesError('DES_BAD_ARG', `a line longer than ${MAX_LINE_BYTES} bytes`)) }) + '\n')
            continue
          }
          if (line.trim() === '') continue
          await writeOut(locateLine(line, nBits, layout) + '\n')
        }
        return
      }
      if (argv.uid === undefined) throw new DesError('DES_BAD_ARG', 'give a uid, or --stdin')
      if (argv['created-at'] === undefined) throw new DesError('DES_BAD_ARG', '--created-at is required')
      await writeOut(asJson(argv.uid, argv['created-at'], nBits, layout) + '\n')
    },
  )
}
