// A progress bar for `des pack` on a terminal (files, bytes, rate, ETA); nothing
// when stderr is a pipe or a file, so logs and --json output stay clean.

import { SingleBar } from 'cli-progress'

/** The `onProgress` argument of packFiles. */
export interface PackProgress {
  files: number
  bytes: number
  totalFiles: number
  totalBytes: number
}

/** Bytes as a short human string (KiB, MiB, GiB). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`
}

/** A bar on `stream` if it is a terminal, else null. Call `stop()` when done. */
export function progressBar(stream: NodeJS.WriteStream = process.stderr): { onProgress(p: PackProgress): void; stop(): void } | null {
  if (!stream.isTTY) return null
  const started = Date.now()
  const bar = new SingleBar({
    stream,
    format: 'packing [{bar}] {percentage}% | {files}/{totalFiles} files | {done}/{all} | {rate}/s | ETA {eta_formatted}',
    hideCursor: true,
    clearOnComplete: true,
    etaBuffer: 50,
  })
  let begun = false
  return {
    onProgress(p) {
      const payload = {
        files: p.files,
        totalFiles: p.totalFiles,
        done: formatBytes(p.bytes),
        all: formatBytes(p.totalBytes),
        rate: formatBytes(p.bytes / Math.max(0.001, (Date.now() - started) / 1000)),
      }
      if (!begun) {
        bar.start(Math.max(1, p.totalBytes), p.bytes, payload)
        begun = true
      } else bar.update(p.bytes, payload)
    },
    stop() {
      if (begun) bar.stop()
    },
  }
}
