// How many CPUs this process may use: the machine's (os.availableParallelism,
// which honours CPU affinity) capped by a cgroup CPU quota, so `des serve` in
// a 1-CPU pod starts 1 worker, not one per core of the node it landed on.

import * as fs from 'node:fs'
import * as os from 'node:os'

/**
 * CPUs allowed by a cgroup v2 `cpu.max` text (`"<quota> <period>"`, or
 * `"max <period>"` for no limit), or undefined for no limit.
 */
export function parseCpuMax(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/)
  if (quota === undefined || quota === 'max' || !/^\d+$/.test(quota)) return undefined
  const p = period !== undefined && /^\d+$/.test(period) ? Number(period) : 100_000
  const q = Number(quota)
  return q > 0 && p > 0 ? q / p : undefined
}

/** The cgroup CPU quota in CPUs (v2 `cpu.max`, else v1 `cfs_quota_us / cfs_period_us`), or undefined when there is none. */
export function cgroupCpuQuota(read: (file: string) => string | undefined = readQuietly): number | undefined {
  const v2 = read('/sys/fs/cgroup/cpu.max')
  if (v2 !== undefined) return parseCpuMax(v2)
  const quota = read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')?.trim()
  const period = read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')?.trim()
  if (quota === undefined || period === undefined || !/^\d+$/.test(quota)) return undefined // v1 writes -1 for no limit
  return parseCpuMax(`${quota} ${period}`)
}

function readQuietly(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

/**
 * Whole CPUs this process may keep busy: the available parallelism, or the
 * cgroup quota rounded down when that is lower (1.5 CPUs: 1), at least 1.
 */
export function availableCpus(read: (file: string) => string | undefined = readQuietly, parallelism = os.availableParallelism()): number {
  const quota = cgroupCpuQuota(read)
  const cpus = quota === undefined ? parallelism : Math.min(parallelism, Math.floor(quota))
  return Math.max(1, cpus)
}
