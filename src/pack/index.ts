// The packer's public face: inputs → shards, on local disk or S3 (SPEC §3–5,
// §9). The run is in run.ts (see its comment for the order of work and the
// guarantees), the types in types.ts.

export { packFiles, runPack } from './run'
export type { PackExtras, PackInput, PackOptions, PackResult, PackTarget, PackedShard, PackZone, KnownPart, S3Hooks, S3SourceOptions, WorkerSlice } from './types'
export { manifestEntriesHint, parseManifest, readManifest, readManifestBatches, type Manifest, type ManifestEntry } from './manifest'
export { formatBytes, progressBar } from './progress'
export { DEFAULT_MEMORY_ENTRIES } from './planner'
export { zonesPackTarget } from './zoned-target'
