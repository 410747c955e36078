// How much memory this process may use, and the payload-cache size des serve
// picks from it when DES_PAYLOAD_CACHE_BYTES is not set. In a container the
// cgroup limit counts, not the host's RAM (os.totalmem() reports the host).

import * as fs from 'node:fs'
import * as os from 'node:os'

/** cgroup v2, then v1: where a container's memory limit is written. */
const LIMIT_FILES = ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']

/** At most this much per process, however large the machine. */
export const MAX_AUTO_PAYLOAD_CACHE = 1024 * 1024 * 1024

/** Share of the memory limit the payload caches of all workers may take together. */
export const AUTO_PAYLOAD_CACHE_SHARE = 1 / 8

/**
 * A cgroup memory limit from the text of its file, or undefined for "no
 * limit" ("max" in v2; v1 writes a number near 2^63).
 */
export function parseCgroupLimit(text: string): number | undefined {
  const t = text.trim()
  if (!/^\d+$/.test(t)) return undefined
  const n = Number(t)
  return n > 0 && n < 2 ** 60 ? n : undefined
}

/** The memory this process may use: the cgroup limit when there is one below the machine's RAM, else the RAM. */
export function memoryLimitBytes(read: (file: string) => string | undefined = readQuietly, totalMem = os.totalmem()): number {
  for (const file of LIMIT_FILES) {
    const text = read(file)
    if (text === undefined) continue
    const limit = parseCgroupLimit(text)
    return limit === undefined ? totalMem : Math.min(limit, totalMem)
  }
  return totalMem
}

function readQuietly(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

/**
 * The payload-cache size of each worker when none is configured: an eighth of
 * the memory limit shared by the workers, at most 1 GiB each. Memory is only
 * taken as files are read.
 */
export function autoPayloadCacheBytes(workers: number, memoryBytes = memoryLimitBytes()): number {
  const share = Math.floor((memoryBytes * AUTO_PAYLOAD_CACHE_SHARE) / Math.max(1, workers))
  return Math.min(MAX_AUTO_PAYLOAD_CACHE, share)
}
