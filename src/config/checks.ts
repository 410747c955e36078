// The checks more than one setting shares, written once. Each answers yes or
// no; the caller words the refusal, naming its variable, key or flag.

import { MAX_N_BITS, MAX_ZSTD_LEVEL, MIN_N_BITS, MIN_ZSTD_LEVEL } from './defaults'

/** An http(s) URL with a host (`DES_S3_ENDPOINT_URL`, `endpoint_url`). */
export function isEndpointUrl(text: string): boolean {
  return /^https?:\/\/[^\s/]+/.test(text)
}

/**
 * A region name the AWS SDK takes (`DES_S3_REGION`, `region_name`): a host
 * label, letters, digits and '-' not at either end. The SDK refuses any other
 * at a client's first request, which would read as a store that does not answer.
 */
export function isRegionName(text: string): boolean {
  return /^(?!.*-$)(?!-)[A-Za-z0-9-]{1,63}$/.test(text)
}

/** What a region refusal says. */
export const REGION_EXPECTED = 'expected a region name such as us-east-1 (letters, digits, -)'

/** One folder name: letters, digits, `. _ -`, not `.` or `..` (the BigFiles prefix). */
export function isFolderName(text: string): boolean {
  return /^[A-Za-z0-9._-]+$/.test(text) && text !== '.' && text !== '..'
}

/** What a folder-name refusal says. */
export const FOLDER_NAME_EXPECTED = 'expected one folder name (letters, digits, . _ -)'

/** A whole number of routing bits in range. */
export function isNBits(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_N_BITS && n <= MAX_N_BITS
}

/** A whole zstd level in range. */
export function isZstdLevel(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_ZSTD_LEVEL && n <= MAX_ZSTD_LEVEL
}

/**
 * An S3 key prefix as the original normalises it: '' stays '', any other
 * gets a trailing '/'; nothing else changes. A leading '/' is kept: on AWS
 * `/archive/x` is not `archive/x`, and the original's stores are at the first.
 */
export function normalisePrefix(prefix: string | undefined): string {
  const p = prefix ?? ''
  return p === '' || p.endsWith('/') ? p : `${p}/`
}
