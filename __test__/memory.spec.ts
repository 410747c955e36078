// The payload-cache size des serve picks when none is configured: from the
// cgroup memory limit (containers) or the machine's RAM, shared by workers.

import test from 'ava'
import { loadConfig } from '../src/config/env'
import { autoPayloadCacheBytes, MAX_AUTO_PAYLOAD_CACHE, memoryLimitBytes, parseCgroupLimit } from '../src/config/memory'

const GiB = 1024 ** 3

test('cgroup limit files: a number is a limit; "max" and v1\'s near-2^63 mean none', (t) => {
  t.is(parseCgroupLimit('1073741824\n'), GiB)
  t.is(parseCgroupLimit('max\n'), undefined)
  t.is(parseCgroupLimit('9223372036854771712\n'), undefined)
  t.is(parseCgroupLimit(''), undefined)
})

test('the memory limit is the cgroup limit (v2 first, then v1) when below RAM, else RAM', (t) => {
  const files = (m: Record<string, string>) => (f: string) => m[f]
  t.is(memoryLimitBytes(files({ '/sys/fs/cgroup/memory.max': '1073741824' }), 16 * GiB), GiB)
  t.is(memoryLimitBytes(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': String(2 * GiB) }), 16 * GiB), 2 * GiB)
  t.is(memoryLimitBytes(files({ '/sys/fs/cgroup/memory.max': 'max', '/sys/fs/cgroup/memory/memory.limit_in_bytes': '1' }), 16 * GiB), 16 * GiB)
  t.is(memoryLimitBytes(files({ '/sys/fs/cgroup/memory.max': String(64 * GiB) }), 16 * GiB), 16 * GiB)
  t.is(memoryLimitBytes(files({}), 8 * GiB), 8 * GiB)
})

test('the automatic payload cache: an eighth of the memory limit shared by the workers, at most 1 GiB each', (t) => {
  t.is(autoPayloadCacheBytes(1, GiB), GiB / 8) // a 1 GiB container: 128 MiB
  t.is(autoPayloadCacheBytes(2, GiB), GiB / 16)
  t.is(autoPayloadCacheBytes(1, 24 * GiB), MAX_AUTO_PAYLOAD_CACHE)
  t.is(autoPayloadCacheBytes(4, 24 * GiB), (24 * GiB) / 8 / 4)
})

test('DES_PAYLOAD_CACHE_BYTES: unset or "auto" leaves the size to des serve; a number is kept; anything else is refused', (t) => {
  t.is(loadConfig({}).payloadCacheBytes, undefined)
  t.is(loadConfig({ DES_PAYLOAD_CACHE_BYTES: 'auto' }).payloadCacheBytes, undefined)
  t.is(loadConfig({ DES_PAYLOAD_CACHE_BYTES: '0' }).payloadCacheBytes, 0)
  t.is(loadConfig({ DES_PAYLOAD_CACHE_BYTES: '1048576' }).payloadCacheBytes, 1048576)
  t.throws(() => loadConfig({ DES_PAYLOAD_CACHE_BYTES: 'lots' }), { message: /DES_PAYLOAD_CACHE_BYTES="lots" is invalid/ })
})

test('DES_SHARD_RECHECK_MS: unset leaves the per-backend default; a bad value is refused by name', (t) => {
  t.is(loadConfig({}).shardRecheckMs, undefined)
  t.is(loadConfig({ DES_SHARD_RECHECK_MS: '0' }).shardRecheckMs, 0)
  t.throws(() => loadConfig({ DES_SHARD_RECHECK_MS: 'soon' }), { message: /DES_SHARD_RECHECK_MS="soon" is invalid/ })
  t.throws(() => loadConfig({ DES_SHARD_RECHECK_MS: '-5' }), { message: /DES_SHARD_RECHECK_MS/ })
})
