// The exit-code contract of every `des` command (docs/CLI.md), as a table:
// each command against an unreachable database, an unreachable S3, a missing
// file and a bad flag. Each row checks the exit code, that stdout holds only
// the command's own output (nothing, or JSON lines that parse), and that
// stderr holds one `des: ...` line plus, at most, JSON log lines (library and
// driver logs through the project's logger, never on stdout). The table in
// docs/CLI.md is read and must say the same codes. Needs `npx tsc` first, and
// the real PostgreSQL (`eval "$(bash scripts/services/up.sh)"`).

import test from 'ava'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { spawn } from 'node:child_process'
import * as net from 'node:net'
import { runCli, type CliResult } from './helpers/cli'
import { goldenShards, ROOT } from './helpers/golden'
import { freshTable, makeFiles, writeConfig } from './helpers/migrate'
import { pgTestUrl } from './helpers/services'
import { DesError, httpMessage, httpStatus } from '../src/errors'

/** Nothing listens on port 1 of the loopback: connections are refused at once. */
const DEAD_DB = 'postgres://des:des@127.0.0.1:1/des'
const DEAD_S3 = 'http://127.0.0.1:1'
const S3_ENV = { DES_S3_ENDPOINT_URL: DEAD_S3, AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', DES_S3_MAX_ATTEMPTS: '1' }

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'des-exit-'))
const missing = path.join(tmp, 'absent')
const shard = goldenShards()[0]

/** A manifest of one real file, for `des pack`. */
const manifest = path.join(tmp, 'manifest.json')
fs.writeFileSync(path.join(tmp, 'a.txt'), 'hello\n')
fs.writeFileSync(manifest, JSON.stringify([{ uid: 'a', created_at: '2024-01-01T00:00:00Z', source_path: path.join(tmp, 'a.txt') }]))

/** A migration config whose database does not answer. */
const deadDbConfig = writeConfig(tmp, { database: { url: DEAD_DB, table_name: 'files' }, packer: { output_dir: path.join(tmp, 'out') } }, 'yaml', 'dead-db')

type Case = 'unreachable database' | 'unreachable S3' | 'missing file' | 'bad flag'

interface Row {
  /** The command as docs/CLI.md's table names it. */
  command: string
  case: Case
  /** Which of several rows of one command and case this is (their test names must differ). */
  what?: string
  args: string[]
  env?: NodeJS.ProcessEnv
  code: number
  /** What stdout may hold: nothing, or JSON lines (every line parses). */
  stdout: 'nothing' | 'json'
  /** The error line says this. */
  says: RegExp
  /** Rows needing a table of their own in the real PostgreSQL. */
  setup?: () => Promise<{ args: string[]; cleanup(): Promise<void> }>
}

const ROWS: Row[] = [
  { command: 'des locate', case: 'bad flag', args: ['locate', '1', '--created-at', '2024-01-01T00:00:00Z', '--bogus'], code: 2, stdout: 'nothing', says: /Unknown argument: bogus/ },
  { command: 'des ls', case: 'missing file', args: ['ls', missing, '--json'], code: 3, stdout: 'nothing', says: /absent/ },
  { command: 'des ls', case: 'bad flag', args: ['ls', shard.file, '--bogus'], code: 2, stdout: 'nothing', says: /bogus/ },
  { command: 'des cat', case: 'missing file', args: ['cat', missing, 'x'], code: 3, stdout: 'nothing', says: /absent/ },
  { command: 'des cat', case: 'bad flag', args: ['cat', shard.file, 'x', '--bogus'], code: 2, stdout: 'nothing', says: /bogus/ },
  { command: 'des inspect', case: 'missing file', args: ['inspect', missing, '--json'], code: 3, stdout: 'nothing', says: /absent/ },
  { command: 'des inspect', case: 'bad flag', args: ['inspect', shard.file, '--bogus'], code: 2, stdout: 'nothing', says: /bogus/ },
  { command: 'des verify SHARD', case: 'missing file', args: ['verify', missing, '--json'], code: 3, stdout: 'nothing', says: /absent/ },
  { command: 'des verify SHARD', case: 'bad flag', args: ['verify', shard.file, '--bogus'], code: 2, stdout: 'nothing', says: /bogus/ },
  { command: 'des verify --store', case: 'unreachable S3', args: ['verify', '--store', '--json'], env: { ...S3_ENV, DES_BACKEND: 's3', DES_S3_BUCKET: 'b' }, code: 6, stdout: 'json', says: /unreachable/ },
  { command: 'des verify --store', case: 'missing file', args: ['verify', '--store', '--json', '--base-dir', missing], code: 6, stdout: 'json', says: /not reachable|does not exist/ },
  { command: 'des verify --store', case: 'bad flag', args: ['verify', '--store', '--layout', 'sideways'], code: 2, stdout: 'nothing', says: /layout/ },
  { command: 'des pack', case: 'unreachable S3', args: ['pack', '--input-json', manifest, '--s3-bucket', 'b', '--json'], env: S3_ENV, code: 6, stdout: 'json', says: /unreachable/ },
  { command: 'des pack', case: 'missing file', args: ['pack', '--input-json', missing, '--output-dir', path.join(tmp, 'p'), '--json'], code: 3, stdout: 'json', says: /cannot read manifest/ },
  { command: 'des pack', case: 'bad flag', args: ['pack', '--input-json', manifest, '--output-dir', path.join(tmp, 'p'), '--codec', 'brotli'], code: 2, stdout: 'nothing', says: /codec/ },
  // A value starting with a dash and a digit is the flag's value, refused as a worker: not "Unknown argument: 1" (yargs reading -1/3 as flags).
  { command: 'des pack', case: 'bad flag', what: '--worker -1/3', args: ['pack', '--input-json', manifest, '--output-dir', path.join(tmp, 'p'), '--worker', '-1/3'], code: 2, stdout: 'nothing', says: /^des: --worker: expected I\/N, .*with 0 <= I < N .*got "-1\/3"$/ },
  { command: 'des serve', case: 'missing file', args: ['serve', '--port', '0', '--base-dir', missing], code: 6, stdout: 'nothing', says: /base directory .*absent does not exist/ },
  { command: 'des serve', case: 'bad flag', args: ['serve', '--port', '0', '--n-bits', '40'], code: 2, stdout: 'nothing', says: /--n-bits/ },
  // A host it cannot listen on is the setting's fault, not storage unavailable: one process, and a primary with workers.
  { command: 'des serve', case: 'bad flag', what: '--host', args: ['serve', '--host', '999.1.1.1', '--port', '0', '--workers', '1', '--base-dir', tmp], code: 2, stdout: 'nothing', says: /cannot listen on 999\.1\.1\.1:0: .*\(--host or DES_HOST\)/ },
  { command: 'des serve', case: 'bad flag', what: 'DES_HOST, 2 workers', args: ['serve', '--port', '0', '--base-dir', tmp], env: { DES_HOST: 'nosuch.invalid', DES_WORKERS: '2' }, code: 2, stdout: 'json', says: /cannot listen on nosuch\.invalid:0: .*\(--host or DES_HOST\)/ },
  {
    command: 'des serve',
    case: 'bad flag',
    what: 'port in use, 2 workers',
    args: [],
    code: 2,
    stdout: 'json',
    says: /cannot listen on 127\.0\.0\.1:\d+: port \d+ is in use by another process \(--port or DES_PORT\)/,
    setup: async () => {
      const taken = net.createServer()
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
      const port = (taken.address() as net.AddressInfo).port
      return { args: ['serve', '--host', '127.0.0.1', '--port', String(port), '--workers', '2', '--base-dir', tmp], cleanup: () => new Promise<void>((resolve) => taken.close(() => resolve())) }
    },
  },
  { command: 'des migrate', case: 'unreachable database', args: ['migrate', '--config', deadDbConfig, '--json'], code: 6, stdout: 'json', says: /migration cycle failed: .*ECONNREFUSED/ },
  {
    command: 'des migrate',
    case: 'unreachable S3',
    args: [],
    env: S3_ENV,
    code: 6,
    stdout: 'json',
    says: /migration cycle failed: .*unreachable/,
    setup: async () => {
      const table = await freshTable('exit-s3')
      const rows = makeFiles(table.dir, 2)
      await table.insert(rows)
      const config = writeConfig(table.dir, {
        database: { url: pgTestUrl(), table_name: table.table },
        packer: { s3: { bucket: 'b', endpoint_url: DEAD_S3 }, n_bits: 4 },
      })
      return { args: ['migrate', '--config', config, '--json'], cleanup: () => table.close() }
    },
  },
  { command: 'des migrate', case: 'missing file', args: ['migrate', '--config', missing, '--json'], code: 3, stdout: 'json', says: /cannot read config/ },
  { command: 'des migrate', case: 'bad flag', args: ['migrate', '--config', deadDbConfig, '--interval', '0'], code: 2, stdout: 'nothing', says: /--interval/ },
  { command: 'des stats', case: 'unreachable database', args: ['stats', '--table', 'files', '--cutoff', '2024-01-01T00:00:00Z', '--json'], env: { DES_DB_URL: DEAD_DB }, code: 6, stdout: 'json', says: /ECONNREFUSED/ },
  { command: 'des stats', case: 'missing file', args: ['stats', '--config', missing, '--json'], code: 3, stdout: 'json', says: /cannot read config/ },
  { command: 'des stats', case: 'bad flag', args: ['stats', '--config', deadDbConfig, '--cutoff', 'yesterday'], code: 2, stdout: 'nothing', says: /--cutoff/ },
]

/** stdout holds only what the row allows; stderr only the error line and JSON log lines. */
function checkStreams(t: import('ava').ExecutionContext, row: Row, r: CliResult): void {
  const out = r.stdout.toString()
  if (row.stdout === 'nothing') t.is(out, '', 'nothing on stdout')
  else for (const line of out.split('\n').filter(Boolean)) t.notThrows(() => JSON.parse(line), `stdout line parses as JSON: ${line.slice(0, 120)}`)
  const lines = r.stderr.split('\n').filter(Boolean)
  const errors = lines.filter((l) => l.startsWith('des: '))
  t.is(errors.length, 1, `one error line on stderr:\n${r.stderr}`)
  t.regex(errors[0] ?? '', row.says)
  for (const l of lines.filter((x) => !x.startsWith('des: ') && !x.startsWith('des-migrate: '))) {
    t.notThrows(() => JSON.parse(l), `other stderr lines are the logger's JSON lines: ${l.slice(0, 120)}`)
  }
  t.notRegex(r.stderr.replace(/^\{.*\}$/gm, ''), /\n\s+at /, 'no stack outside log lines without --verbose')
}

for (const row of ROWS) {
  test(`${row.command}, ${row.case}${row.what ? ` (${row.what})` : ''}: exit ${row.code}`, async (t) => {
    const extra = row.setup ? await row.setup() : undefined
    try {
      const r = await runCli(extra?.args ?? row.args, { env: row.env })
      t.is(r.code, row.code, r.stderr)
      checkStreams(t, row, r)
      if (row.command === 'des migrate' && row.code === 6) {
        const report = JSON.parse(r.stdout.toString().trim().split('\n').pop()!)
        t.is(report.status, 'error')
        t.is(report.error_code, 'DES_UNAVAILABLE', 'the --json report says what failed')
      }
    } finally {
      await extra?.cleanup()
    }
  })
}

test('a file that cannot be read (a folder where a shard should be) is a storage error: exit 6 and HTTP 502, not "a bug"', async (t) => {
  const folder = fs.mkdtempSync(path.join(tmp, 'not-a-shard-'))
  const r = await runCli(['cat', folder, 'x'])
  t.is(r.code, 6, r.stderr)
  t.regex(r.stderr, /Is a directory/)
  const err = new DesError('DES_IO', 'read failed')
  t.is(httpStatus(err), 502)
  t.is(httpMessage(err), 'storage error', 'the body says nothing of the cause')
})

test('no AWS credentials is said as such, naming where they come from (exit 6: their endpoint may be down a moment), not "S3 is unreachable"', async (t) => {
  const noCredentials = { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_PROFILE: undefined, AWS_EC2_METADATA_DISABLED: 'true', DES_S3_ENDPOINT_URL: DEAD_S3 }
  for (const args of [
    ['pack', '--input-json', manifest, '--s3-bucket', 'b'],
    ['verify', '--store', '--backend', 's3'],
  ]) {
    const r = await runCli(args, { env: { ...noCredentials, DES_S3_BUCKET: 'b' } })
    t.is(r.code, 6, `${args[0]}: ${r.stderr}`)
    t.regex(r.stderr, /no AWS credentials could be loaded to sign S3 requests \(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or the pod's role/, args[0])
    t.notRegex(r.stderr, /unreachable/, args[0])
  }
})

test('knex\'s "Acquire connection error" goes to stderr as a JSON log line, not to stdout', async (t) => {
  const r = await runCli(['migrate', '--config', deadDbConfig, '--json'])
  t.notRegex(r.stdout.toString(), /Acquire connection/)
  const logged = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
  t.true(
    logged.some((l) => l.lib === 'knex' && /Acquire connection error/.test(l.msg)),
    r.stderr,
  )
  // DES_LOG_LEVEL applies to these lines too.
  const quiet = await runCli(['migrate', '--config', deadDbConfig, '--json'], { env: { DES_LOG_LEVEL: 'error' } })
  t.is(quiet.code, 6)
  t.false(quiet.stderr.split('\n').some((l) => l.startsWith('{')), quiet.stderr)
})

test('des alone prints the usage on stderr and exits 2; an unknown command exits 2', async (t) => {
  const r = await runCli([])
  t.is(r.code, 2)
  t.is(r.stdout.length, 0)
  t.regex(r.stderr, /Commands:[\s\S]*des serve[\s\S]*des migrate/)
  t.regex(r.stderr, /Exit codes: 0 ok/)
  const unknown = await runCli(['nosuch'])
  t.is(unknown.code, 2)
  t.regex(unknown.stderr, /nosuch/)
})

test('des serve against an unreachable S3 keeps running: /ready and files answer 503, SIGTERM exits 0', async (t) => {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/des.js'), 'serve', '--host', '127.0.0.1', '--port', '0', '--workers', '1'], {
    env: { ...process.env, ...S3_ENV, DES_BACKEND: 's3', DES_S3_BUCKET: 'b', DEBUG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const port = await new Promise<number>((resolve, reject) => {
    let buf = ''
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const m = /"port":(\d+)/.exec(buf)
      if (m) resolve(Number(m[1]))
    })
    void exit.then((code) => reject(new Error(`exited ${code} before listening`)))
  })
  try {
    t.is((await fetch(`http://127.0.0.1:${port}/health`)).status, 200)
    t.is((await fetch(`http://127.0.0.1:${port}/ready`)).status, 503)
    const r = await fetch(`http://127.0.0.1:${port}/files/a?created_at=2024-01-01T00:00:00Z`)
    t.is(r.status, 503)
    t.is((await r.json()).code, 'DES_UNAVAILABLE')
  } finally {
    child.kill('SIGTERM')
    t.is(await exit, 0)
  }
})

/** docs/CLI.md's contract table: `| \`des ls\` | — | — | 3 | 2 |` → cell per case. */
function documentedTable(): Map<string, Record<Case, string>> {
  const md = fs.readFileSync(path.join(ROOT, 'docs', 'CLI.md'), 'utf8')
  const section = md.slice(md.indexOf('## Exit codes by case'))
  const rows = new Map<string, Record<Case, string>>()
  for (const m of section.matchAll(/^\| `([^`]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$/gm)) {
    rows.set(m[1], { 'unreachable database': m[2].trim(), 'unreachable S3': m[3].trim(), 'missing file': m[4].trim(), 'bad flag': m[5].trim() })
  }
  return rows
}

test('docs/CLI.md documents the same exit code for every case the table above runs', (t) => {
  const doc = documentedTable()
  t.true(doc.size >= 9, `${doc.size} commands documented`)
  for (const row of ROWS) {
    const cell = doc.get(row.command)?.[row.case]
    t.truthy(cell, `${row.command} / ${row.case} is documented`)
    t.is(Number(/^\d/.exec(cell ?? '')?.[0]), row.code, `${row.command} / ${row.case}: ${cell}`)
  }
})

test('every command and option has a description in --help, and every command an example', async (t) => {
  const top = (await runCli(['--help'])).stdout.toString()
  const commands = [...top.matchAll(/^ {2}des (\w+)/gm)].map((m) => m[1])
  t.true(commands.length >= 9, top)
  for (const c of commands) {
    const help = (await runCli([c, '--help'])).stdout.toString()
    t.regex(help, /\nExamples:\n {2}\S/, `${c} --help has an example`)
    const options = help.slice(help.indexOf('Options:'), help.indexOf('Examples:'))
    for (const m of options.matchAll(/^ {2}(--[\w-]+)(.*)$/gm)) {
      t.not(m[2].replace(/\[[^\]]*\]/g, '').trim(), '', `des ${c} ${m[1]} has a description`)
    }
  }
})
