// Settings of `des pack` that come from the environment: the S3 endpoint and
// region of an `--s3-bucket` target and of s3:// sources (SPEC §6).

import { normalisePrefix, s3FromEnv, type S3Settings } from './env'

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

/** S3 settings for reading s3:// sources (no bucket of its own). */
export function s3SourceSettings(env: Env = process.env): Omit<S3Settings, 'bucket' | 'prefix'> {
  const { region, endpoint, forcePathStyle } = s3FromEnv({ ...env, DES_S3_BUCKET: 'sources' }, true)!
  return { region, endpoint, forcePathStyle }
}
