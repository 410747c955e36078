// The alert rules (docs/prometheus-alerts.yml) evaluated by Prometheus's own
// rule engine: `promtool check rules` and `promtool test rules` over
// docs/prometheus-alerts.test.yml (installed by scripts/install-promtool.sh,
// which `npm test` runs). And the series those tests start from are the ones a
// real failing migrator exports: `des migrate --continuous --metrics-port`
// against a database that does not answer, scraped after its first cycle.

import test from 'ava'
import { execFile, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { ROOT } from './helpers/golden'
import { writeConfig } from './helpers/migrate'

const run = promisify(execFile)

/** promtool, installed (once) by the project's script. */
async function promtool(): Promise<string> {
  const { stdout } = await run('bash', [path.join(ROOT, 'scripts', 'install-promtool.sh')], { timeout: 600_000 })
  return stdout.trim().split('\n').pop()!
}

test('the alert rules load in Prometheus and their unit tests pass: a failing migrator pages, a first failure is seen', async (t) => {
  const bin = await promtool()
  const check = await run(bin, ['check', 'rules', path.join(ROOT, 'docs', 'prometheus-alerts.yml')])
  t.regex(check.stdout, /SUCCESS: \d+ rules found/)
  const unit = await run(bin, ['test', 'rules', path.join(ROOT, 'docs', 'prometheus-alerts.test.yml')])
  t.regex(unit.stdout, /SUCCESS/)
  // The unit tests are about the migration alerts that were broken.
  const cases = fs.readFileSync(path.join(ROOT, 'docs', 'prometheus-alerts.test.yml'), 'utf8')
  t.regex(cases, /alertname: DesMigrationFailingRepeatedly\n\s+exp_alerts:\n\s+- exp_labels/)
})

test('promtool fails the unit tests when the rule cannot fire (the rule as it was: `and` without ignoring(status))', async (t) => {
  const bin = await promtool()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-alerts-'))
  const rules = fs.readFileSync(path.join(ROOT, 'docs', 'prometheus-alerts.yml'), 'utf8')
  t.regex(rules, /and ignoring\(status\) increase/)
  fs.writeFileSync(path.join(dir, 'prometheus-alerts.yml'), rules.replace('and ignoring(status) increase', 'and increase'))
  fs.copyFileSync(path.join(ROOT, 'docs', 'prometheus-alerts.test.yml'), path.join(dir, 'prometheus-alerts.test.yml'))
  const err = await t.throwsAsync(run(bin, ['test', 'rules', path.join(dir, 'prometheus-alerts.test.yml')]))
  const e = err as { stdout?: string; stderr?: string }
  t.regex(`${e.stdout}${e.stderr}`, /FAILED[\s\S]*DesMigrationFailingRepeatedly/)
})

test('a migrator that has never succeeded exports des_migration_cycles_total for success at 0 beside its errors', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-alerts-'))
  const config = writeConfig(dir, { database: { url: 'postgres://des:des@127.0.0.1:1/des', table_name: 'files' }, packer: { output_dir: path.join(dir, 'out') } })
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'des.js'), 'migrate', '--config', config, '--continuous', '--interval', '3600', '--metrics-port', '0', '--json'], {
    env: { ...process.env, DEBUG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  try {
    // The port is on stderr, the first (failed) cycle's report on stdout: wait for both.
    const port = await new Promise<number>((resolve, reject) => {
      let err = ''
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString()
        const m = /metrics on port (\d+)/.exec(err)
        if (m) resolve(Number(m[1]))
      })
      void exit.then((code) => reject(new Error(`exited ${code}: ${err}`)))
    })
    const report = await new Promise<Record<string, unknown>>((resolve) => {
      let out = ''
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('\n')) resolve(JSON.parse(out.slice(0, out.indexOf('\n'))))
      })
    })
    t.is(report.status, 'error')
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    t.regex(text, /^des_migration_cycles_total\{status="failure"\} 1$/m)
    t.regex(text, /^des_migration_cycles_total\{status="success"\} 0$/m)
    t.regex(text, /^des_migration_cycles_total\{status="dry_run"\} 0$/m)
    t.regex(text, /^des_build_info\{version="[^"]+",commit="[^"]+",node="[^"]+"\} 1$/m)
  } finally {
    child.kill('SIGTERM')
    t.is(await exit, 0, 'a continuous migrator stopped by SIGTERM exits 0')
  }
})
