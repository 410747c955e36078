// The progress bar of `des verify --store` on a terminal: bytes read against
// bytes listed so far (the listing runs ahead of the checks), objects, rate.

import { byteBar, formatBytes, formatRate } from '../progress'
import type { ScrubProgress } from './scrub'

export interface VerifyBar {
  onProgress(p: ScrubProgress): void
  /** Clears the bar's line, before a report line is written to the same terminal. */
  clearLine(): void
  stop(): void
}

/** A bar on `stream` when it is a terminal (or `force`), else null. */
export function verifyProgressBar(stream: NodeJS.WriteStream, force = false): VerifyBar | null {
  const started = performance.now()
  const bar = byteBar(stream, 'verifying [{bar}] {percentage}% | {checked}/{listed} objects | {done}/{all} | {rate}/s', { force })
  if (!bar) return null
  return {
    onProgress(p) {
      bar.update(p.bytes, p.listedBytes, {
        checked: p.checked,
        listed: `${p.listed}${p.listingDone ? '' : '+'}`,
        done: formatBytes(p.bytes),
        all: formatBytes(p.listedBytes),
        rate: formatRate(p.bytes, started),
      })
    },
    clearLine: () => bar.clearLine(),
    stop: () => bar.stop(),
  }
}
