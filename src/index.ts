// The package's public API.

export { DesError, errorCode, httpStatus, exitCode } from './errors'
export {
  locateShard,
  parseTimestamp,
  footerFromTail,
  ShardReader,
  ShardWriter,
  type EntryInfo,
  type ShardLocation,
  type ShardWriterOptions,
  type ShardWriteSummary,
  type PackFile,
  type VerifyReport,
  type Codec,
} from './native'
