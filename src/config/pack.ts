// Settings of `des pack` that come from the environment: the S3 endpoint and
// region of an `--s3-bucket` target and of s3:// sources (SPEC §6), which
// worker of several this is, and how much of the plan stays in memory.

import { DesError } from '../errors'
import { DEFAULT_MEMORY_ENTRIES } from './defaults'
import { normalisePrefix } from './checks'
import { backendVar, intVar, s3FromEnv, type S3Settings } from './env'

type Env = Record<string, string | undefined>

/**
 * S3 settings for a bucket named on the command line: endpoint, region and
 * path style from DES_S3_ENDPOINT_URL / DES_S3_REGION (validated as for the
 * server); the prefix from the command line, else DES_S3_PREFIX.
 */
export function s3TargetSettings(bucket: string, prefix: string | undefined, env: Env = process.env): S3Settings {
  const s3 = s3FromEnv({ ...env, DES_S3_BUCKET: bucket }, true)!
  return { ...s3, prefix: prefix === undefined ? s3.prefix : normalisePrefix(prefix) }
}

/**
 * The S3 store `des pack` writes, undefined when it is not S3: `--s3-bucket`,
 * or with neither `--output-dir` nor `--s3-bucket` and the s3 backend
 * (DES_BACKEND=s3, or DES_S3_BUCKET alone), DES_S3_BUCKET: the bucket `des
 * serve` reads with the same environment. The prefix is `--s3-prefix`, else
 * DES_S3_PREFIX.
 */
export function packS3Target(flags: { outputDir?: string; s3Bucket?: string; s3Prefix?: string }, env: Env = process.env): S3Settings | undefined {
  const fromEnv = flags.outputDir === undefined && backendVar(env) === 's3' ? env.DES_S3_BUCKET?.trim() : undefined
  const bucket = flags.s3Bucket ?? fromEnv
  return bucket ? s3TargetSettings(bucket, flags.s3Prefix, env) : undefined
}

/** S3 settings for reading s3:// sources (no bucket of its own). */
export function s3SourceSettings(env: Env = process.env): Omit<S3Settings, 'bucket' | 'prefix'> {
  const { region, endpoint, forcePathStyle } = s3FromEnv({ ...env, DES_S3_BUCKET: 'sources' }, true)!
  return { region, endpoint, forcePathStyle }
}

/** One of `count` packers sharing a manifest (see PackOptions.worker). */
export interface PackWorker {
  index: number
  count: number
}

/** Most workers one manifest is split between (`--workers`, DES_PACK_WORKERS). */
export const MAX_PACK_WORKERS = 65536

/**
 * Which worker this `des pack` is: `--worker I/N`, or `--worker I` with the
 * count from `--workers N` / DES_PACK_WORKERS; in a Kubernetes Indexed Job
 * the index comes from JOB_COMPLETION_INDEX. Undefined = pack every key.
 */
export function packWorker(flags: { worker?: string; workers?: number }, env: Env = process.env): PackWorker | undefined {
  const bad = (why: string) => new DesError('DES_BAD_ARG', why)
  if (flags.workers !== undefined && !(Number.isSafeInteger(flags.workers) && flags.workers >= 1 && flags.workers <= MAX_PACK_WORKERS)) {
    throw bad(`--workers must be a whole number 1..${MAX_PACK_WORKERS}, got ${flags.workers}`)
  }
  let count = flags.workers ?? (env.DES_PACK_WORKERS?.trim() ? intVar(env, 'DES_PACK_WORKERS', 1, 1, MAX_PACK_WORKERS) : undefined)
  let index: number | undefined
  if (flags.worker !== undefined) {
    const m = /^\s*(\d+)\s*(?:\/\s*(\d+)\s*)?$/.exec(flags.worker)
    if (!m) throw bad(`--worker: expected I/N, this worker's index I and the worker count N with 0 <= I < N (e.g. 0/4), got ${JSON.stringify(flags.worker)}`)
    index = Number(m[1])
    if (m[2] !== undefined) {
      const n = Number(m[2])
      if (count !== undefined && n !== count) throw bad(`--worker ${flags.worker} says ${n} workers, but --workers / DES_PACK_WORKERS says ${count}`)
      if (!(n >= 1 && n <= MAX_PACK_WORKERS)) throw bad(`--worker ${flags.worker}: the worker count must be 1..${MAX_PACK_WORKERS}`)
      count = n
    }
  } else if (env.JOB_COMPLETION_INDEX?.trim()) {
    index = intVar(env, 'JOB_COMPLETION_INDEX', 0, 0, MAX_PACK_WORKERS - 1)
    if (count === undefined) {
      throw new DesError('DES_CONFIG', `JOB_COMPLETION_INDEX=${index} is set (an Indexed Job) but not the worker count: set DES_PACK_WORKERS (or --workers) to the Job's completions`)
    }
  }
  if (count === undefined) {
    if (index !== undefined) throw bad(`--worker ${flags.worker}: give the worker count too (--worker I/N, --workers N or DES_PACK_WORKERS)`)
    return undefined
  }
  if (index === undefined) throw bad(`${count} workers, but not which one this is: give --worker I/N (or run in an Indexed Job, which sets JOB_COMPLETION_INDEX)`)
  if (index >= count) throw bad(`worker ${index} of ${count}: the index must be below the worker count (0..${count - 1})`)
  return { index, count }
}

/** Inputs `des pack` plans in memory before spilling the plan to temp files (DES_PACK_MEMORY_ENTRIES). */
export function packMemoryEntries(env: Env = process.env): number {
  return intVar(env, 'DES_PACK_MEMORY_ENTRIES', DEFAULT_MEMORY_ENTRIES, 0, 100_000_000)
}
