// docs/ checked against the code: CONFIGURATION.md lists every variable and
// config key the code reads (and nothing else); the dashboard, the alert rules
// and OPERATIONS.md name only metrics (and labels) the registry exports.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as YAML from 'yaml'
import { parser } from '@prometheus-io/lezer-promql'
import { ROOT } from './helpers/golden'
import { envNamesReadByCode } from './helpers/deploy'
import { registry } from '../src/metrics'
import { parseMigrateConfig } from '../src/config/migrate'
import { locateShard } from '../src/native'

// The modules that register metrics at import time, so the registry is complete.
import '../src/serve/app'
import '../src/migrate/run'
import '../src/pack/sources'
import '../src/store/index-cache'
import '../src/storage/s3'

const docs = (f: string) => fs.readFileSync(path.join(ROOT, 'docs', f), 'utf8')

/** First-column names of the markdown tables: `| \`NAME\` | ...`. */
function tableNames(md: string): string[] {
  return [...md.matchAll(/^\|\s*`([^`]+)`/gm)].map((m) => m[1])
}

test('CONFIGURATION.md has a row for every DES_ variable src/config/ reads, and no row for one it does not', (t) => {
  const read = envNamesReadByCode()
  t.true(read.length >= 20, `found ${read.length} names in src/config/`)
  const rows = tableNames(docs('CONFIGURATION.md')).filter((n) => n.startsWith('DES_'))
  t.deepEqual(read.filter((n) => !rows.includes(n)), [], 'read by the code but not documented')
  t.deepEqual(rows.filter((n) => !read.includes(n)), [], 'documented but not read by the code')
  t.is(new Set(rows).size, rows.length, 'no variable documented twice')
})

/** The keys a section of the migration config accepts, from the parser's own refusal of an unknown key. */
function acceptedKeys(doc: Record<string, unknown>): string[] {
  try {
    parseMigrateConfig(doc, {})
  } catch (err) {
    const m = /expected(?: one of)? ([a-z0-9_, ]+)\)/.exec((err as Error).message)
    if (m) return m[1].split(',').map((s) => s.trim())
    throw err
  }
  throw new Error(`an unknown key was accepted in ${JSON.stringify(doc)}`)
}

test('CONFIGURATION.md lists every key the migration config accepts, and only those', (t) => {
  const bogus = { __bogus__: 1 }
  const base = { database: { url: 'postgres://u@h/d', table_name: 't' }, packer: { output_dir: '/tmp/x' } }
  const sections: Record<string, Record<string, unknown>> = {
    '': bogus,
    database: { ...base, database: { ...base.database, ...bogus } },
    migration: { ...base, migration: bogus },
    packer: { ...base, packer: { ...base.packer, ...bogus } },
    'packer.s3': { database: base.database, packer: { s3: { bucket: 'b', ...bogus } } },
    'packer.s3_source': { ...base, packer: { ...base.packer, s3_source: bogus } },
  }
  const keys: string[] = []
  for (const [section, doc] of Object.entries(sections)) {
    for (const k of acceptedKeys(doc)) keys.push(section ? `${section}.${k}` : k)
  }
  const leaves = keys.filter((k) => !keys.some((other) => other.startsWith(`${k}.`)) && !['database', 'migration', 'packer'].includes(k))
  t.true(leaves.length >= 25, `${leaves.length} keys`)
  const rows = tableNames(docs('CONFIGURATION.md')).filter((n) => /^(database|migration|packer)\./.test(n))
  t.deepEqual(leaves.filter((k) => !rows.includes(k)).sort(), [], 'accepted but not documented')
  t.deepEqual(rows.filter((k) => !leaves.includes(k)).sort(), [], 'documented but not accepted')
})

/** Every exported series name (histograms: _bucket, _sum, _count) with its label names. */
async function exported(): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>()
  for (const m of await registry.getMetricsAsJSON()) {
    const metric = registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] }
    const labels = new Set<string>(metric?.labelNames ?? [])
    for (const v of m.values as Array<{ labels?: Record<string, unknown> }>) for (const l of Object.keys(v.labels ?? {})) labels.add(l)
    if (m.type === 'histogram') {
      out.set(`${m.name}_bucket`, new Set([...labels, 'le']))
      out.set(`${m.name}_sum`, labels)
      out.set(`${m.name}_count`, labels)
    } else if (m.type === 'summary') {
      out.set(m.name, new Set([...labels, 'quantile']))
      out.set(`${m.name}_sum`, labels)
      out.set(`${m.name}_count`, labels)
    } else {
      out.set(m.name, labels)
    }
  }
  return out
}

/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = new Set(['job', 'instance', 'namespace', 'pod', 'service', 'container', 'endpoint'])

interface Selector {
  metric: string
  labels: string[]
}

/** Parses a PromQL expression (Grafana variables replaced) and returns its selectors; throws on a syntax error. */
function selectors(expr: string): Selector[] {
  const text = expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m').replace(/\$\{?(\w+)\}?/g, 'grafana_var')
  const tree = parser.parse(text)
  const out: Selector[] = []
  const errors: string[] = []
  tree.iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(`at ${node.from}: ${JSON.stringify(text.slice(Math.max(0, node.from - 20), node.to + 20))}`)
      if (node.type.name === 'VectorSelector') {
        const id = node.node.getChild('Identifier')
        const metric = id ? text.slice(id.from, id.to) : ''
        const labels: string[] = []
        const matchers = node.node.getChild('LabelMatchers')
        if (matchers) {
          matchers.toTree().iterate({
            enter: (n) => {
              if (n.type.name === 'LabelName') labels.push(text.slice(matchers.from + n.from, matchers.from + n.to))
            },
          })
        }
        out.push({ metric, labels })
      }
    },
  })
  if (errors.length) throw new Error(`PromQL syntax error in ${JSON.stringify(expr)}: ${errors.join('; ')}`)
  return out
}

async function checkExpressions(t: import('ava').ExecutionContext, where: string, exprs: string[]): Promise<Set<string>> {
  const known = await exported()
  const used = new Set<string>()
  t.true(exprs.length > 0, `${where} has expressions`)
  for (const expr of exprs) {
    let sels: Selector[] = []
    t.notThrows(() => (sels = selectors(expr)), `${where}: parses`)
    t.true(sels.length > 0, `${where}: ${expr} names a metric`)
    for (const s of sels) {
      used.add(s.metric)
      const labels = known.get(s.metric)
      if (!labels) {
        t.fail(`${where}: ${s.metric} is not exported by the code (in ${expr})`)
        continue
      }
      for (const l of s.labels) if (!labels.has(l) && !TARGET_LABELS.has(l)) t.fail(`${where}: ${s.metric} has no label ${l} (has ${[...labels].join(', ') || 'none'})`)
    }
  }
  return used
}

function collectExprs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) collectExprs(n, out)
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === 'expr' && typeof v === 'string') out.push(v)
      else collectExprs(v, out)
    }
  }
  return out
}

test('every metric and label the Grafana dashboard queries is one the code exports', async (t) => {
  const dash = JSON.parse(docs('grafana-dashboard.json'))
  const used = await checkExpressions(t, 'grafana-dashboard.json', collectExprs(dash.panels))
  for (const m of ['des_retrievals_total', 'des_retrieval_seconds_bucket', 'des_index_cache_total', 'des_migration_pending_files', 'des_migration_cycles_total']) {
    t.true(used.has(m), `the dashboard shows ${m}`)
  }
  const ids = dash.panels.map((p: { id: number }) => p.id)
  t.is(new Set(ids).size, ids.length, 'panel ids are unique')
})

test('every metric and label the Prometheus alert rules use is one the code exports, and they cover errors, latency, cache and migration', async (t) => {
  const rules = YAML.parse(docs('prometheus-alerts.yml'))
  const all = rules.groups.flatMap((g: { rules: Array<{ alert: string; expr: string; annotations?: { summary?: string } }> }) => g.rules)
  for (const r of all) {
    t.regex(r.alert, /^Des[A-Za-z0-9]+$/)
    t.truthy(r.annotations?.summary, `${r.alert} has a summary`)
  }
  const used = await checkExpressions(t, 'prometheus-alerts.yml', all.map((r: { expr: string }) => r.expr))
  for (const m of ['des_retrievals_total', 'des_retrieval_seconds_bucket', 'des_index_cache_total', 'des_migration_pending_files', 'des_migration_cycles_total']) {
    t.true(used.has(m), `an alert watches ${m}`)
  }
})

test('OPERATIONS.md explains every des_ metric the code exports, and no other', async (t) => {
  const known = [...(await registry.getMetricsAsJSON())].map((m) => m.name).filter((n) => n.startsWith('des_'))
  t.true(known.length >= 13)
  const rows = tableNames(docs('OPERATIONS.md')).filter((n) => n.startsWith('des_'))
  t.deepEqual(known.filter((n) => !rows.includes(n)), [], 'exported but not explained')
  t.deepEqual(rows.filter((n) => !known.includes(n)), [], 'explained but not exported')
})

test('docs link to each other and to the other engineers\' docs that exist', (t) => {
  for (const f of ['GETTING_STARTED.md', 'CONFIGURATION.md', 'OPERATIONS.md', 'RELEASING.md']) {
    const md = docs(f)
    for (const m of md.matchAll(/\]\(([A-Z_]+\.md)\)/g)) t.true(fs.existsSync(path.join(ROOT, 'docs', m[1])), `${f} links to docs/${m[1]}, which exists`)
  }
})

test('the shard keys the README and docs show for a locateShard call are the ones it returns', (t) => {
  const pages = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
  let shown = 0
  for (const page of pages) {
    const text = fs.readFileSync(path.join(ROOT, page), 'utf8')
    for (const m of text.matchAll(/locateShard\('([^']+)',\s*'([^']+)'\)[^\n]*objectKey: '([^']+)'/g)) {
      t.is(locateShard(m[1], m[2]).objectKey, m[3], `${page}: locateShard('${m[1]}', '${m[2]}')`)
      shown++
    }
  }
  t.true(shown >= 1, 'the README shows at least one')
})

test('every import in src/ goes to a module on the same or a lower floor of ARCHITECTURE.md\'s table, and every module has a floor', (t) => {
  // The floors: `| N | `src/a/`, `src/b.ts` | ... |` rows, folders or files.
  const floors: Array<{ floor: number; path: string }> = []
  for (const m of docs('ARCHITECTURE.md').matchAll(/^\| (\d+) \| ([^|]+) \|/gm)) {
    for (const p of m[2].matchAll(/`(src\/[^`]+)`/g)) floors.push({ floor: Number(m[1]), path: p[1] })
  }
  t.true(floors.length >= 10, `${floors.length} paths with a floor`)
  const floorOf = (file: string) => floors.find((f) => (f.path.endsWith('/') ? file.startsWith(f.path) : file === f.path))?.floor
  const files = (fs.readdirSync(path.join(ROOT, 'src'), { recursive: true }) as string[]).map((f) => `src/${f}`).filter((f) => f.endsWith('.ts'))
  const wrong: string[] = []
  for (const file of files) {
    const from = floorOf(file)
    if (from === undefined) {
      wrong.push(`${file} has no floor`)
      continue
    }
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8')
    // Type-only imports say nothing of what runs first; the addon (../index) is below every floor.
    for (const m of text.matchAll(/^import (?!type )[^;]*?from '(\.[^']+)'/gm)) {
      let target = path.posix.normalize(path.posix.join(path.posix.dirname(file), m[1]))
      if (!target.startsWith('src/')) continue
      target = fs.existsSync(path.join(ROOT, `${target}.ts`)) ? `${target}.ts` : `${target}/index.ts`
      const to = floorOf(target)
      if (to === undefined || to > from) wrong.push(`${file} (floor ${from}) imports ${target} (floor ${to})`)
    }
  }
  t.deepEqual(wrong, [])
})
