// The AWS SDK, loaded on first use: a run over local files and a local store
// never needs it, and loading it costs ~80 ms of every command's start.

import type * as Sdk from '@aws-sdk/client-s3'

let sdk: typeof Sdk | undefined

export function s3Sdk(): typeof Sdk {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  sdk ??= require('@aws-sdk/client-s3') as typeof Sdk
  return sdk
}
