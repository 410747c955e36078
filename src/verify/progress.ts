// The progress bar of `des verify --store` on a terminal: bytes read against
// bytes listed so far (the listing runs ahead of the checks), objects, rate.

import { SingleBar } from 'cli-progress'
import { formatBytes } from '../pack/progress'
import type { ScrubProgress } from './scrub'

export interface VerifyBar {
  onProgress(p: ScrubProgress): void
  /** Clears the bar's line, before a report line is written to the same terminal. */
  clearLine(): void
  stop(): void
}

/** A bar on `stream` when it is a terminal (or `force`), else null. */
export function verifyProgressBar(stream: NodeJS.WriteStream, force = false): VerifyBar | null {
  if (!stream.isTTY && !force) return null
  const started = performance.now()
  const bar = new SingleBar({
    stream,
    format: 'verifying [{bar}] {percentage}% | {checked}/{listed} objects | {done}/{all} | {rate}/s',
    hideCursor: true,
    clearOnComplete: true,
    noTTYOutput: force && !stream.isTTY,
    notTTYSchedule: 1000,
  })
  let begun = false
  return {
    onProgress(p) {
      const payload = {
        checked: p.checked,
        listed: `${p.listed}${p.listingDone ? '' : '+'}`,
        done: formatBytes(p.bytes),
        all: formatBytes(p.listedBytes),
        rate: formatBytes(p.bytes / Math.max(0.001, (performance.now() - started) / 1000)),
      }
      const total = Math.max(1, p.listedBytes)
      if (!begun) {
        bar.start(total, p.bytes, payload)
        begun = true
      } else {
        bar.setTotal(total)
        bar.update(Math.min(p.bytes, total), payload)
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
