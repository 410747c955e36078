// The `des migrate` config file: every SPEC §10 key in JSON and YAML, `${VAR}`
// substitution, and errors that name the key. No database needed.

import test from 'ava'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { loadMigrateConfig, loadMigrateEnv, parseMigrateConfig, substituteEnv } from '../src/config/migrate'
import { normaliseDbUrl, pgTimestampToIso, quoteIdent, quoteTable } from '../src/migrate/db'
import { writeConfig } from './helpers/migrate'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-migcfg-'))

const everyKey = {
  database: {
    url: 'postgresql://u:${DB_PASSWORD}@db:5432/app',
    table_name: 'archive.source_files',
    uid_column: 'file_uid',
    created_at_column: 'created',
    file_location_column: 'path',
    size_bytes_column: 'bytes',
    archived_column: 'done',
  },
  migration: { archive_age_days: 30, batch_size: 500, delete_source_files: true },
  packer: {
    output_dir: '${OUT_DIR:-/data/des}',
    max_shard_size: 1073741824,
    n_bits: 10,
    codec: 'lz4',
    s3_source: { enabled: true, region_name: 'eu-west-1', endpoint_url: 'http://minio:9000', max_retries: 5, retry_delay_seconds: 2.5 },
  },
}

const expected = {
  database: {
    url: 'postgresql://u:s3cr:t@db:5432/app',
    tableName: 'archive.source_files',
    uidColumn: 'file_uid',
    createdAtColumn: 'created',
    fileLocationColumn: 'path',
    sizeBytesColumn: 'bytes',
    archivedColumn: 'done',
  },
  migration: { archiveAgeDays: 30, batchSize: 500, deleteSourceFiles: true },
  packer: {
    output: { kind: 'local', dir: '/data/des' },
    layout: 'nested',
    layoutFrom: undefined,
    maxShardSize: 1073741824,
    nBits: 10,
    codec: 'lz4',
    level: undefined,
    bigFileThreshold: undefined,
    bigfilesPrefix: '_bigFiles',
    tailBytes: 64 * 1024,
    writePastCache: true,
    s3Source: { enabled: true, region: 'eu-west-1', endpoint: 'http://minio:9000', maxRetries: 5, retryDelaySeconds: 2.5 },
  },
}

const vars = { DB_PASSWORD: 's3cr:t' }

/** `expected` read from `file`: its packer.n_bits is named with the file (for a zones file's refusal of another n_bits). */
function expectedFrom(file: string) {
  return { ...expected, packer: { ...expected.packer, nBitsFrom: `packer.n_bits of ${file}` } }
}

test('every SPEC §10 key is read from a JSON file', (t) => {
  const file = writeConfig(dir, everyKey, 'json', 'every')
  t.deepEqual(loadMigrateConfig(file, vars), expectedFrom(file))
})

test('every SPEC §10 key is read from a YAML file, the same as from JSON', (t) => {
  const file = writeConfig(dir, everyKey, 'yaml', 'every')
  t.deepEqual(loadMigrateConfig(file, vars), expectedFrom(file))
  const yml = path.join(dir, 'every.yml')
  fs.copyFileSync(path.join(dir, 'every.yaml'), yml)
  t.deepEqual(loadMigrateConfig(yml, vars), expectedFrom(yml))
})

test('defaults are the reference\'s: table files, SPEC column names, 7 days, batch 1000, no deletion, ./des_output, shards up to 1e9 bytes, n_bits 8, S3 sources off with 3 retries 2 s apart; zstd (ours)', (t) => {
  const least = parseMigrateConfig({ database: { url: 'postgres://x/y' } })
  t.is(least.database.tableName, 'files')
  t.deepEqual(least.packer.output, { kind: 'local', dir: path.resolve('./des_output') })
  t.is(least.packer.maxShardSize, 1_000_000_000)
  t.is(least.packer.layout, 'nested')
  const c = parseMigrateConfig({ database: { url: 'postgres://x/y', table_name: 'files' }, packer: { output_dir: 'rel/out' } })
  t.deepEqual(c.database, {
    url: 'postgres://x/y',
    tableName: 'files',
    uidColumn: 'uid',
    createdAtColumn: 'created_at',
    fileLocationColumn: 'file_location',
    sizeBytesColumn: 'size_bytes',
    archivedColumn: 'archived',
  })
  t.deepEqual(c.migration, { archiveAgeDays: 7, batchSize: 1000, deleteSourceFiles: false })
  t.deepEqual(c.packer.output, { kind: 'local', dir: path.resolve('rel/out') })
  t.is(c.packer.nBits, 8)
  t.is(c.packer.codec, 'zstd')
  t.is(c.packer.s3Source.enabled, false)
  t.is(c.packer.s3Source.maxRetries, 3)
  t.is(c.packer.s3Source.retryDelaySeconds, 2)
})

test('the reference\'s own example configs are accepted as they are (its keys, nulls, ${VAR:default})', (t) => {
  // The shape of the reference's examples/migration-config.yaml and its Kubernetes ConfigMap.
  const yaml = [
    'database:',
    '  url: postgresql+psycopg://des_migrator:${DB_PASSWORD}@postgres:5432/des',
    '  table_name: source_files',
    '  uid_column: uid',
    '  created_at_column: created_at',
    '  file_location_column: file_location',
    '  size_bytes_column: size_bytes',
    '  archived_column: archived',
    'migration:',
    '  archive_age_days: 7',
    '  batch_size: ${BATCH:100}',
    '  delete_source_files: false',
    'packer:',
    '  output_dir: ${OUT:./des_output}',
    '  max_shard_size: 1000000000',
    '  n_bits: 8',
    '  s3_source:',
    '    enabled: false',
    '    region_name: "us-east-1"',
    '    endpoint_url: null',
    '    max_retries: 3',
    '    retry_delay_seconds: 2',
  ].join('\n')
  const file = path.join(dir, 'reference.yaml')
  fs.writeFileSync(file, yaml)
  const c = loadMigrateConfig(file, { DB_PASSWORD: 'pw' })
  t.is(c.database.url, 'postgresql+psycopg://des_migrator:pw@postgres:5432/des')
  t.is(c.migration.batchSize, 100)
  t.deepEqual(c.packer.output, { kind: 'local', dir: path.resolve('./des_output') })
  t.is(c.packer.s3Source.endpoint, undefined)
  t.is(loadMigrateConfig(file, { DB_PASSWORD: 'pw', BATCH: '250', OUT: '/data/shards' }).migration.batchSize, 250)
})

test('size_bytes_column null or empty means no size column (sizes come from the sources), as in the reference', (t) => {
  for (const none of [null, '']) {
    t.is(parseMigrateConfig({ database: { url: 'postgres://x/y', size_bytes_column: none } }).database.sizeBytesColumn, null)
  }
  t.is(parseMigrateConfig({ database: { url: 'postgres://x/y' } }).database.sizeBytesColumn, 'size_bytes')
})

test('a key the original reads as a number or a name, given empty or null, is refused naming it: never the default n_bits, age or table', (t) => {
  const url = 'postgres://x/y'
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ database: { url }, packer: { n_bits: '' } }, 'packer.n_bits'],
    [{ database: { url }, packer: { n_bits: null } }, 'packer.n_bits'],
    [{ database: { url }, packer: { output_dir: '' } }, 'packer.output_dir'],
    [{ database: { url }, packer: { max_shard_size: '' } }, 'packer.max_shard_size'],
    [{ database: { url }, packer: { s3_source: { max_retries: '' } } }, 'packer.s3_source.max_retries'],
    [{ database: { url }, migration: { archive_age_days: '' } }, 'migration.archive_age_days'],
    [{ database: { url }, migration: { batch_size: null } }, 'migration.batch_size'],
    [{ database: { url, table_name: '' } }, 'database.table_name'],
    [{ database: { url, archived_column: null } }, 'database.archived_column'],
  ]
  for (const [doc, key] of cases) {
    const err = t.throws(() => parseMigrateConfig(doc, { DES_N_BITS: '10' }), undefined, key)
    t.is((err as { code?: string }).code, 'DES_CONFIG')
    t.is(err!.message, `config ${key}: is empty (leave the key out for its default)`)
  }
  // Through a variable set to empty, as a ConfigMap key left blank gives it.
  const file = writeConfig(dir, { database: { url, table_name: 'f' }, packer: { output_dir: '/x', n_bits: '${N_BITS}' } }, 'yaml', 'empty-var')
  t.regex(t.throws(() => loadMigrateConfig(file, { N_BITS: '' }))!.message, /packer\.n_bits: is empty/)
  // Left out, the defaults apply as before.
  t.is(parseMigrateConfig({ database: { url } }, {}).packer.nBits, 8)
})

test('packer.layout, else DES_LAYOUT, decides where the migrator writes', (t) => {
  const doc = { database: { url: 'postgres://x/y' } }
  t.is(parseMigrateConfig(doc, { DES_LAYOUT: 'flat' }).packer.layout, 'flat')
  t.is(parseMigrateConfig(doc, { DES_LAYOUT: 'nested,flat' }).packer.layout, 'nested')
  t.is(parseMigrateConfig({ ...doc, packer: { layout: 'flat' } }, {}).packer.layout, 'flat')
  t.regex(t.throws(() => parseMigrateConfig({ ...doc, packer: { layout: 'deep' } }))!.message, /packer\.layout: expected nested or flat/)
})

test('packer keys left out take DES_N_BITS, DES_BIG_FILE_THRESHOLD_BYTES and DES_BIGFILES_PREFIX, as every command does; keys given win', (t) => {
  const doc = { database: { url: 'postgres://x/y', table_name: 'files' }, packer: { output_dir: 'out' } }
  const vars = { DES_N_BITS: '11', DES_BIG_FILE_THRESHOLD_BYTES: '4096', DES_BIGFILES_PREFIX: '_blobs' }
  const c = parseMigrateConfig(doc, vars)
  t.is(c.packer.nBits, 11)
  t.is(c.packer.bigFileThreshold, 4096)
  t.is(c.packer.bigfilesPrefix, '_blobs')
  const given = parseMigrateConfig({ ...doc, packer: { output_dir: 'out', n_bits: 6, big_file_threshold: 10, bigfiles_prefix: '_big' } }, vars)
  t.deepEqual([given.packer.nBits, given.packer.bigFileThreshold, given.packer.bigfilesPrefix], [6, 10, '_big'])
  t.regex(t.throws(() => parseMigrateConfig(doc, { DES_N_BITS: '40' }))!.message, /DES_N_BITS/)
  // Where n_bits was set on purpose, or undefined when it is the default (a zones file then decides).
  t.is(c.packer.nBitsFrom, 'DES_N_BITS')
  t.is(given.packer.nBitsFrom, 'packer.n_bits')
  t.is(parseMigrateConfig(doc, {}).packer.nBitsFrom, undefined)
  t.is(parseMigrateConfig(doc, { DES_N_BITS: '' }).packer.nBitsFrom, undefined)
  // What chose the layout, or undefined for the default (not written beside the original's flat shards).
  t.is(parseMigrateConfig(doc, {}).packer.layoutFrom, undefined)
  t.is(parseMigrateConfig(doc, { DES_LAYOUT: ' ' }).packer.layoutFrom, undefined)
  t.is(parseMigrateConfig(doc, { DES_LAYOUT: 'nested,flat' }).packer.layoutFrom, 'DES_LAYOUT')
  t.is(parseMigrateConfig({ ...doc, packer: { output_dir: 'out', layout: 'nested' } }, { DES_LAYOUT: 'flat' }).packer.layoutFrom, 'packer.layout')
})

test('DES_WRITE_PAST_CACHE decides whether the migrator writes new local shards past the page cache (default yes); a bad value is refused', (t) => {
  const doc = { database: { url: 'postgres://x/y', table_name: 'files' }, packer: { output_dir: 'out' } }
  t.true(parseMigrateConfig(doc, {}).packer.writePastCache)
  t.false(parseMigrateConfig(doc, { DES_WRITE_PAST_CACHE: 'false' }).packer.writePastCache)
  t.true(parseMigrateConfig(doc, { DES_WRITE_PAST_CACHE: '1' }).packer.writePastCache)
  t.regex(t.throws(() => parseMigrateConfig(doc, { DES_WRITE_PAST_CACHE: 'sometimes' }))!.message, /DES_WRITE_PAST_CACHE/)
})

test('an S3 target: bucket, prefix (normalised), region_name, endpoint_url (path-style with an endpoint)', (t) => {
  const doc = {
    database: { url: 'postgres://x/y', table_name: 'files' },
    packer: { s3: { bucket: '${BUCKET}', prefix: 'des', region_name: 'eu-central-1', endpoint_url: 'http://127.0.0.1:9000' }, level: 9, big_file_threshold: 1024, bigfiles_prefix: '_big' },
  }
  const file = writeConfig(dir, doc, 'yaml', 's3')
  const c = loadMigrateConfig(file, { BUCKET: 'archive' })
  t.deepEqual(c.packer.output, { kind: 's3', bucket: 'archive', prefix: 'des/', region: 'eu-central-1', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true })
  t.is(c.packer.level, 9)
  t.is(c.packer.bigFileThreshold, 1024)
  t.is(c.packer.bigfilesPrefix, '_big')
  t.deepEqual(parseMigrateConfig({ ...doc, packer: { s3: { bucket: 'b' } } }, { AWS_REGION: 'ap-south-1' }).packer.output, {
    kind: 's3',
    bucket: 'b',
    prefix: '',
    region: 'ap-south-1',
    endpoint: undefined,
    forcePathStyle: false,
  })
})

test('${VAR}, ${VAR:-default} and the reference\'s ${VAR:default}: set, unset with default, empty with default, several in one string', (t) => {
  t.is(substituteEnv('a${X}b', { X: '1' }, 'k'), 'a1b')
  t.is(substituteEnv('${X:-dflt}', {}, 'k'), 'dflt')
  t.is(substituteEnv('${X:-dflt}', { X: '' }, 'k'), 'dflt')
  t.is(substituteEnv('${X:-}', {}, 'k'), '')
  t.is(substituteEnv('${A}:${B:-2}@${C}', { A: 'u', C: 'h' }, 'k'), 'u:2@h')
  t.is(substituteEnv('no vars, a $ sign', {}, 'k'), 'no vars, a $ sign')
  // The reference's form: the default when unset; set to empty, empty.
  t.is(substituteEnv('${X:dflt}', {}, 'k'), 'dflt')
  t.is(substituteEnv('${X:dflt}', { X: '' }, 'k'), '')
  t.is(substituteEnv('${X:dflt}', { X: 'v' }, 'k'), 'v')
  t.is(substituteEnv('${X:}', {}, 'k'), '')
  t.is(substituteEnv('postgresql://${U:app}:${P:-pw}@${H:localhost}:5432', { H: 'db' }, 'k'), 'postgresql://app:pw@db:5432')
})

test('a ${name} a shell could not name (db-password, app.dir: a Kubernetes env may hold them) is replaced as the reference replaces it, never kept as text', (t) => {
  const file = writeConfig(dir, { database: { url: 'postgres://u:${db-password}@h/d', table_name: 'f' }, packer: { output_dir: '${archive.dir}/store' } }, 'yaml', 'dashed')
  const config = loadMigrateConfig(file, { 'db-password': 'pw', 'archive.dir': '/srv/archive' })
  t.is(config.database.url, 'postgres://u:pw@h/d')
  t.deepEqual(config.packer.output, { kind: 'local', dir: '/srv/archive/store' })
  t.is(substituteEnv('${app-dir:-/tmp/x}', {}, 'k'), '/tmp/x')
  // Unset without a default: refused naming it, not a folder named `${archive.dir}`.
  const err = t.throws(() => loadMigrateConfig(file, { 'db-password': 'pw' }))
  t.is((err as { code?: string }).code, 'DES_CONFIG')
  t.regex(err!.message, /packer\.output_dir: environment variable archive\.dir is not set/)
})

test('an unset ${VAR} without a default is refused, naming the key and the variable', (t) => {
  const file = writeConfig(dir, { database: { url: 'postgres://u:${NOPE_PASSWORD}@h/d', table_name: 'f' }, packer: { output_dir: '/x' } }, 'yaml', 'unset')
  const err = t.throws(() => loadMigrateConfig(file, {}))
  t.is((err as { code?: string }).code, 'DES_CONFIG')
  t.regex(err!.message, /database\.url/)
  t.regex(err!.message, /NOPE_PASSWORD/)
})

test('a ${ that no } closes is refused as the reference refuses it, naming the key and not quoting the value (a password may be in it)', (t) => {
  for (const text of ['${TABLE', 'postgres://u:${DB_PASSWORD@h/d', '${A}x${', '${A:-1}${B']) {
    const err = t.throws(() => substituteEnv(text, { A: 'a', DB_PASSWORD: 'secret' }, 'database.url'), undefined, text)
    t.is((err as { code?: string }).code, 'DES_CONFIG')
    t.regex(err!.message, /^database\.url: a \$\{ has no closing \}/)
    t.false(err!.message.includes('DB_PASSWORD') || err!.message.includes('@h/d'))
  }
  // Closed ones, a lone $ and a } alone are still fine.
  t.is(substituteEnv('$${A}}{$', { A: 'a' }, 'k'), '$a}{$')
  const file = writeConfig(dir, { database: { url: 'postgres://u:p@h/d', table_name: '${TABLE' }, packer: { output_dir: '/x' } }, 'yaml', 'unclosed')
  const err = t.throws(() => loadMigrateConfig(file, { TABLE: 'files' }))
  t.is((err as { code?: string }).code, 'DES_CONFIG')
  t.regex(err!.message, /database\.table_name: a \$\{ has no closing \}/)
})

test('numbers and booleans may come from variables (as strings)', (t) => {
  const file = writeConfig(
    dir,
    {
      database: { url: 'postgres://x/y', table_name: 'files' },
      migration: { archive_age_days: '${AGE}', batch_size: '${BATCH:-250}', delete_source_files: '${DEL}' },
      packer: { output_dir: '/o', n_bits: '${BITS}' },
    },
    'json',
    'numvars',
  )
  const d = loadMigrateConfig(file, { AGE: '0.5', DEL: 'true', BITS: '12' })
  t.deepEqual(d.migration, { archiveAgeDays: 0.5, batchSize: 250, deleteSourceFiles: true })
  t.is(d.packer.nBits, 12)
})

const bad: Array<[string, unknown, RegExp]> = [
  ['unknown top-level key', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { output_dir: '/o' }, extra: 1 }, /config extra: unknown key/],
  ['a typo in a section', { database: { url: 'postgres://x/y', table_name: 'f' }, migration: { batchsize: 5 }, packer: { output_dir: '/o' } }, /migration\.batchsize: unknown key/],
  ['no url', { database: { table_name: 'f' }, packer: { output_dir: '/o' } }, /database\.url: is required/],
  ['not a postgres url', { database: { url: 'mysql://x/y', table_name: 'f' }, packer: { output_dir: '/o' } }, /database\.url/],
  ['a.b.c table', { database: { url: 'postgres://x/y', table_name: 'a.b.c' }, packer: { output_dir: '/o' } }, /database\.table_name/],
  ['a column name with NUL', { database: { url: 'postgres://x/y', table_name: 'f', uid_column: 'a\0b' }, packer: { output_dir: '/o' } }, /database\.uid_column/],
  ['batch_size 0', { database: { url: 'postgres://x/y', table_name: 'f' }, migration: { batch_size: 0 }, packer: { output_dir: '/o' } }, /migration\.batch_size: expected 1\.\./],
  ['batch_size 1.5', { database: { url: 'postgres://x/y', table_name: 'f' }, migration: { batch_size: 1.5 }, packer: { output_dir: '/o' } }, /migration\.batch_size: expected a whole number/],
  ['negative age', { database: { url: 'postgres://x/y', table_name: 'f' }, migration: { archive_age_days: -1 }, packer: { output_dir: '/o' } }, /migration\.archive_age_days/],
  ['delete "maybe"', { database: { url: 'postgres://x/y', table_name: 'f' }, migration: { delete_source_files: 'maybe' }, packer: { output_dir: '/o' } }, /migration\.delete_source_files: expected true or false/],
  ['both outputs', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { output_dir: '/o', s3: { bucket: 'b' } } }, /config packer: give output_dir or s3/],
  ['s3 without bucket', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { s3: { prefix: 'p' } } }, /packer\.s3\.bucket: is required/],
  ['bad endpoint', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { s3: { bucket: 'b', endpoint_url: 'minio:9000' } } }, /packer\.s3\.endpoint_url/],
  ['a region the S3 client refuses', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { s3: { bucket: 'b', region_name: 'eu west 1' } } }, /packer\.s3\.region_name: "eu west 1": expected a region name/],
  ['a source region the S3 client refuses', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { output_dir: '/o', s3_source: { enabled: true, region_name: '-us' } } }, /packer\.s3_source\.region_name/],
  ['n_bits 17', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { output_dir: '/o', n_bits: 17 } }, /packer\.n_bits: expected 4\.\.16/],
  ['codec brotli', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { output_dir: '/o', codec: 'brotli' } }, /packer\.codec/],
  ['max_shard_size text', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { output_dir: '/o', max_shard_size: 'big' } }, /packer\.max_shard_size: expected a number/],
  ['s3_source typo', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { output_dir: '/o', s3_source: { enable: true } } }, /packer\.s3_source\.enable: unknown key/],
  ['max_retries -1', { database: { url: 'postgres://x/y', table_name: 'f' }, packer: { output_dir: '/o', s3_source: { max_retries: -1 } } }, /packer\.s3_source\.max_retries/],
  ['a list at the root', [1, 2], /\(root\)/],
]
for (const [name, doc, re] of bad) {
  test(`a bad config is refused with the key named: ${name}`, (t) => {
    const err = t.throws(() => parseMigrateConfig(doc))
    t.is((err as { code?: string }).code, 'DES_CONFIG')
    t.regex(err!.message, re)
  })
}

test('a file that is not valid YAML or JSON is a DES_CONFIG error naming the file, a missing one DES_NO_FILE', (t) => {
  const y = path.join(dir, 'broken.yaml')
  fs.writeFileSync(y, 'database: [unclosed\n')
  t.regex(t.throws(() => loadMigrateConfig(y, {}))!.message, /broken\.yaml is not valid YAML/)
  const j = path.join(dir, 'broken.json')
  fs.writeFileSync(j, '{"database":')
  t.regex(t.throws(() => loadMigrateConfig(j, {}))!.message, /broken\.json is not valid JSON/)
  const absent = t.throws(() => loadMigrateConfig(path.join(dir, 'absent.yaml'), {}))!
  t.regex(absent.message, /cannot read config/)
  t.is((absent as { code?: string }).code, 'DES_NO_FILE', 'a missing file is "not found" (exit 3)')
})

test('a config that does not parse is named by line and column, never by its text (a database URL holds a password)', (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['leak.yaml', 'database:\n  url: postgres://des:S3cretPW@db:5432/des\n   table_name: x\n', /leak\.yaml is not valid YAML at line 2, column \d+/],
    ['leak.json', '{"database": {"url": "postgres://des:S3cretPW@db/des", x}}', /leak\.json is not valid JSON at line 1, column \d+$/],
    ['cut.json', '{"database": {"url": "postgres://des:S3cretPW@db/des"', /cut\.json is not valid JSON at line 1, column \d+$/],
  ]
  for (const [name, text, where] of cases) {
    const file = path.join(dir, name)
    fs.writeFileSync(file, text)
    const err = t.throws(() => loadMigrateConfig(file, {}))!
    t.regex(err.message, where, name)
    t.false(err.message.includes('S3cretPW'), `${name}: ${err.message}`)
  }
})

test('database.url: a port pg would not read (it would quietly connect to 5432) is refused, naming the key and not the password', (t) => {
  for (const url of ['postgres://des:S3cretPW@127.0.0.1:abc/d', 'postgres://des:S3cretPW@127.0.0.1:99999/d', 'postgres://des:S3cretPW@127.0.0.1:55432:99/d', 'postgres://des:S3c#retPW@db:5432/d']) {
    const err = t.throws(() => parseMigrateConfig({ database: { url } }))!
    t.regex(err.message, /database\.url: its port is not a number from 1 to 65535/, url)
    t.false(err.message.includes('S3c'), url)
  }
  for (const url of ['postgresql://u:pw@127.0.0.1:55432/d', 'postgresql:///d?host=/tmp/sock', 'postgresql://u:pw@/d?host=/tmp/sock', 'postgresql://u@[::1]:5432/d', 'postgresql+psycopg://u:pw@db/d']) {
    t.is(parseMigrateConfig({ database: { url } }).database.url, url)
  }
})

test('DES_TEST_FAULT names a known fault point or is refused', (t) => {
  t.is(loadMigrateEnv({ DES_TEST_FAULT: 'after-pack' }).fault, 'after-pack')
  t.is(loadMigrateEnv({}).fault, undefined)
  t.regex(t.throws(() => loadMigrateEnv({ DES_TEST_FAULT: 'sometime' }))!.message, /DES_TEST_FAULT/)
})

test('identifiers are quoted, quotes doubled; schema.table quoted per part', (t) => {
  t.is(quoteIdent('a"b'), '"a""b"')
  t.is(quoteTable('s.t'), '"s"."t"')
  t.is(quoteTable('files; DROP TABLE x'), '"files; DROP TABLE x"')
})

test('SQLAlchemy-style URLs of the original tool are accepted', (t) => {
  t.is(normaliseDbUrl('postgresql+psycopg://u:p@h/db'), 'postgresql://u:p@h/db')
  t.is(normaliseDbUrl('postgres://u:p@h/db'), 'postgres://u:p@h/db')
})

test("PostgreSQL's timestamp text becomes ISO UTC; infinity, BC and 5-digit years do not", (t) => {
  t.is(pgTimestampToIso('2024-01-02 03:04:05+00'), '2024-01-02T03:04:05Z')
  t.is(pgTimestampToIso('2024-01-02 03:04:05.123456+00'), '2024-01-02T03:04:05.123456Z')
  t.is(pgTimestampToIso('2024-01-02 23:30:00-02'), '2024-01-03T01:30:00Z')
  t.is(pgTimestampToIso('2024-01-02 03:04:05'), '2024-01-02T03:04:05Z')
  t.is(pgTimestampToIso('0050-06-01 00:00:00+00'), '0050-06-01T00:00:00Z')
  t.is(pgTimestampToIso('infinity'), null)
  t.is(pgTimestampToIso('-infinity'), null)
  t.is(pgTimestampToIso('0044-03-15 00:00:00+00 BC'), null)
  t.is(pgTimestampToIso('12024-01-01 00:00:00+00'), null)
  t.is(pgTimestampToIso(null), null)
})
