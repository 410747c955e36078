// The progress bar of `des pack` on a terminal: files, bytes, rate, ETA.

import { byteBar, formatBytes, formatRate } from '../progress'

export { formatBytes }

/** The `onProgress` argument of packFiles. */
export interface PackProgress {
  files: number
  bytes: number
  totalFiles: number
  totalBytes: number
}

/** A bar on `stream` if it is a terminal, else null. Call `stop()` when done. */
export function progressBar(stream: NodeJS.WriteStream = process.stderr): { onProgress(p: PackProgress): void; stop(): void } | null {
  const started = performance.now()
  const bar = byteBar(stream, 'packing [{bar}] {percentage}% | {files}/{totalFiles} files | {done}/{all} | {rate}/s | ETA {eta_formatted}')
  if (!bar) return null
  return {
    onProgress(p) {
      bar.update(p.bytes, p.totalBytes, {
        files: p.files,
        totalFiles: p.totalFiles,
        done: formatBytes(p.bytes),
        all: formatBytes(p.totalBytes),
        rate: formatRate(p.bytes, started),
      })
    },
    stop: () => bar.stop(),
  }
}
