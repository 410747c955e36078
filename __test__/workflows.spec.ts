// The GitHub Actions workflows, checked statically (no runner here): CI runs
// the README's test command on every push and pull request on each supported
// Node.js, and a release publishes nothing before its advisory check passes.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as YAML from 'yaml'
import { ROOT } from './helpers/golden'

const workflow = (name: string) => YAML.parse(fs.readFileSync(path.join(ROOT, '.github', 'workflows', name), 'utf8'))
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))

test('CI runs .ci/run (the README\'s test command) on every push and pull request, on Node 20, 22 and 24', (t) => {
  const ci = workflow('ci.yml')
  t.true('push' in ci.on && 'pull_request' in ci.on)
  t.falsy(ci.on.push?.branches, 'every branch')
  const job = ci.jobs.test
  t.deepEqual(job.strategy.matrix.node, ['20', '22', '24'])
  t.is(job.steps.find((s: { uses?: string }) => s.uses?.startsWith('actions/setup-node'))?.with['node-version'], '${{ matrix.node }}')
  t.true(
    job.steps.some((s: { run?: string }) => /\bbash \.ci\/run$/.test(s.run ?? '')),
    'a step runs .ci/run',
  )
  t.regex(fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8'), /^npm test$/m)
  t.is(pkg.scripts.test, 'bash scripts/test.sh')
  t.regex(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'), /CI runs exactly this command \(`\.ci\/run`\)/)
  const engines = /^>=(\d+)$/.exec(pkg.engines.node)
  t.is(engines?.[1], job.strategy.matrix.node[0], 'the oldest Node tested is the oldest package.json accepts')
})

test('a release audits npm and Rust dependencies and publishes nothing before that passes', (t) => {
  const rel = workflow('release.yml')
  const audit = rel.jobs.audit
  const runs = audit.steps.map((s: { run?: string }) => s.run ?? '').join('\n')
  t.regex(runs, /npm audit --omit=dev/)
  t.regex(runs, /cargo audit/)
  for (const job of ['publish', 'image']) t.true([rel.jobs[job].needs].flat().includes('audit'), `${job} waits for the audit`)
  t.deepEqual(rel.jobs.test.strategy.matrix.node, ['20', '22', '24'])
  const releasing = fs.readFileSync(path.join(ROOT, 'docs', 'RELEASING.md'), 'utf8')
  t.regex(releasing, /## Security advisories[\s\S]*cargo audit[\s\S]*cannot be reached/)
})
