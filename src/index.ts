// The package's public API: shard routing, reading, writing and verifying,
// and the error codes. `des serve`, `des pack` and `des migrate` are the CLI
// (bin/des.js); their modules are not part of this API.

export { DesError, EXIT_CODES, classifyError, describe, errorCode, exitCode, httpMessage, httpStatus } from './errors'
export {
  locateShard,
  parseTimestamp,
  footerFromTail,
  verifyShardFile,
  payloadCeiling,
  setPayloadCeiling,
  ShardReader,
  ShardWriter,
  PayloadCache,
  type KeepIn,
  type EntryInfo,
  type ShardLocation,
  type ShardWriterOptions,
  type ShardWriteSummary,
  type PackFile,
  type AddFilesResult,
  type VerifyReport,
  type VerifyProblem,
  type PayloadCacheStats,
  type Codec,
} from './native'
