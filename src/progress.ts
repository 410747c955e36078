// Progress on a terminal for the long commands (des pack, des verify --store,
// des convert): one bar over bytes, started at the first report; nothing when
// the stream is not a terminal, so logs and --json output stay clean.

import type { SingleBar as Bar } from 'cli-progress'

/** Bytes as a short human string (KiB, MiB, GiB). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  // A rate is a fraction of a byte too: whole bytes only.
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`
}

/** Bytes per second since `startedMs` (performance.now()), as a short string. */
export function formatRate(bytes: number, startedMs: number): string {
  return formatBytes(bytes / Math.max(0.001, (performance.now() - startedMs) / 1000))
}

/** A bar over bytes: `update` as work is done (the total may grow), `stop` at the end. */
export interface ByteBar {
  update(bytes: number, totalBytes: number, payload: Record<string, unknown>): void
  /** Clears the bar's line, before a report line is written to the same terminal. */
  clearLine(): void
  stop(): void
}

/**
 * A bar on `stream` with cli-progress's `format` when the stream is a
 * terminal (or with `force`, a line a second), else null.
 */
export function byteBar(stream: NodeJS.WriteStream, format: string, opts: { force?: boolean } = {}): ByteBar | null {
  if (!stream.isTTY && !opts.force) return null
  // Loaded only for a bar: it is ~7 ms of every run's start otherwise (logs, --json, --no-progress).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { SingleBar } = require('cli-progress') as { SingleBar: typeof Bar }
  const bar = new SingleBar({
    stream,
    format,
    hideCursor: true,
    clearOnComplete: true,
    etaBuffer: 50,
    noTTYOutput: Boolean(opts.force) && !stream.isTTY,
    notTTYSchedule: 1000,
  })
  let begun = false
  return {
    update(bytes, totalBytes, payload) {
      const total = Math.max(1, totalBytes)
      if (!begun) {
        bar.start(total, Math.min(bytes, total), payload)
        begun = true
      } else {
        bar.setTotal(total)
        bar.update(Math.min(bytes, total), payload)
      }
    },
    clearLine() {
      if (begun && stream.isTTY) stream.write('\r\x1b[K')
    },
    stop() {
      if (begun) bar.stop()
    },
  }
}
