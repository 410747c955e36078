// k8s/: every kustomization renders alike with the newest kustomize, with the
// kustomize that `kubectl apply -k` bundles (5.5, both built by
// scripts/install-kustomize.sh from the Go module proxy) and with `kubectl
// kustomize` where kubectl is installed; every object validates against the
// Kubernetes schemas offline (kubernetes-models); images, ports, probe paths,
// commands, environment names and mounts match what the code reads; the
// documented image override changes every image; the store (S3 bucket,
// prefix, region; n_bits) is set once, in des-config, and a changed value
// reaches every workload; nothing is a fixed-name Job.

import test from 'ava'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as YAML from 'yaml'
import { ROOT, readJson } from './helpers/golden'
import { cliProblems, envNamesReadByCode, flagValue, substitutedNames } from './helpers/deploy'
import { loadConfig, loadServeConfig } from '../src/config/env'
import { parseMigrateConfig, substituteTree } from '../src/config/migrate'
import { packS3Target, packWorker } from '../src/config/pack'

type Obj = Record<string, any>

/** Every kustomization under k8s/ (components are rendered through the overlays that use them). */
function kustomizations(): string[] {
  const out: string[] = []
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, 'k8s', dir), { withFileTypes: true })) {
      const rel = dir ? `${dir}/${e.name}` : e.name
      if (e.isDirectory()) walk(rel)
      else if (e.name === 'kustomization.yaml' && YAML.parse(fs.readFileSync(path.join(ROOT, 'k8s', rel), 'utf8')).kind === 'Kustomization') out.push(dir)
    }
  }
  walk('')
  return out.sort()
}

const RENDERS = ['base', 'overlays/s3'] as const
const rendered = new Map<string, Obj[]>()
const version = readJson(path.join(ROOT, 'package.json')).version as string
/** The kustomize binaries: the newest, and the one kubectl 1.32 bundles (5.5.0). */
const kustomize: Record<string, string> = {}

function installKustomize(versionWanted?: string): string {
  const env = { ...process.env, ...(versionWanted ? { DES_KUSTOMIZE_VERSION: versionWanted } : {}) }
  const out = execFileSync('bash', [path.join(ROOT, 'scripts', 'install-kustomize.sh')], { encoding: 'utf8', timeout: 900_000, env, stdio: ['ignore', 'pipe', 'inherit'] })
  return out.trim().split('\n').pop()!
}

function parse(yaml: string): Obj[] {
  return YAML.parseAllDocuments(yaml)
    .map((d) => d.toJSON() as Obj)
    .filter(Boolean)
}

function kubectlPath(): string | undefined {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' })
    return 'kubectl'
  } catch {
    return undefined
  }
}

test.before('kustomize is installed (scripts/install-kustomize.sh) and renders every kustomization', (t) => {
  kustomize.newest = installKustomize()
  kustomize['v5.5.0'] = installKustomize('v5.5.0')
  for (const dir of RENDERS) rendered.set(dir, parse(execFileSync(kustomize.newest, ['build', path.join(ROOT, 'k8s', dir)], { encoding: 'utf8', timeout: 60_000 })))
  t.pass()
})

test('every kustomization renders the same objects with the newest kustomize, with kubectl\'s bundled kustomize 5.5, and with kubectl kustomize', (t) => {
  const dirs = kustomizations()
  t.deepEqual([...RENDERS].sort(), dirs, 'the tests below cover every kustomization')
  const kubectl = kubectlPath()
  for (const dir of dirs) {
    const want = parse(execFileSync(kustomize.newest, ['build', path.join(ROOT, 'k8s', dir)], { encoding: 'utf8' }))
    t.deepEqual(parse(execFileSync(kustomize['v5.5.0'], ['build', path.join(ROOT, 'k8s', dir)], { encoding: 'utf8' })), want, `${dir}: kustomize 5.5.0`)
    if (kubectl) t.deepEqual(parse(execFileSync(kubectl, ['kustomize', path.join(ROOT, 'k8s', dir)], { encoding: 'utf8' })), want, `${dir}: kubectl kustomize`)
  }
  if (!kubectl) t.log('kubectl is not installed here: rendered with kustomize 5.5.0, the version it bundles')
})

test('the image override GETTING_STARTED documents, run in an overlay, changes every container\'s image', (t) => {
  const guide = fs.readFileSync(path.join(ROOT, 'docs', 'GETTING_STARTED.md'), 'utf8')
  const line = /^kustomize edit set image (\S+=\S+)/m.exec(guide)
  t.truthy(line, 'GETTING_STARTED shows `kustomize edit set image`')
  const [, newImage] = line![1].split('=')
  const tree = fs.mkdtempSync(path.join(os.tmpdir(), 'des-k8s-'))
  fs.cpSync(path.join(ROOT, 'k8s'), path.join(tree, 'k8s'), { recursive: true })
  for (const parent of RENDERS) {
    const overlay = path.join(tree, 'k8s', 'overlays', `mine-${parent.replace('/', '-')}`)
    fs.mkdirSync(overlay, { recursive: true })
    fs.writeFileSync(path.join(overlay, 'kustomization.yaml'), `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../${parent}\n`)
    execFileSync(kustomize.newest, ['edit', 'set', 'image', line![1]], { cwd: overlay })
    for (const bin of [kustomize.newest, kustomize['v5.5.0']]) {
      const images = podSpecs(parse(execFileSync(bin, ['build', overlay], { encoding: 'utf8' }))).flatMap(({ spec }) => [...spec.containers, ...(spec.initContainers ?? [])].map((c: Obj) => c.image))
      t.true(images.length >= 5, `${parent}: ${images.length} containers`)
      t.deepEqual([...new Set(images)], [newImage], `${parent} (${path.basename(bin)}): every image is the override`)
    }
  }
})

test('no fixed-name Job: everything re-applies after an image bump; one-off runs are made from the CronJobs', (t) => {
  for (const dir of RENDERS) {
    const objs = rendered.get(dir)!
    t.deepEqual(
      objs.filter((o) => o.kind === 'Job').map((o) => o.metadata.name),
      [],
      `${dir}: a Job's pod template is immutable, so \`kubectl apply\` of a changed one fails`,
    )
    for (const cron of objs.filter((o) => o.kind === 'CronJob')) t.truthy(cron.spec.jobTemplate.spec.ttlSecondsAfterFinished ?? cron.spec.successfulJobsHistoryLimit, `${dir}: ${cron.metadata.name} cleans up its Jobs`)
  }
  const cron = fs.readFileSync(path.join(ROOT, 'k8s', 'base', 'packer-cronjob.yaml'), 'utf8')
  t.regex(cron, /kubectl create job --from=cronjob\/des-packer /, 'the CronJob says how to pack once')
  const guide = fs.readFileSync(path.join(ROOT, 'docs', 'GETTING_STARTED.md'), 'utf8')
  t.regex(guide, /kubectl create job --from=cronjob\/des-packer /)
})

/** The model class of an object's apiVersion/kind, from kubernetes-models (ESM: dynamic import). */
async function modelOf(obj: Obj): Promise<new (data: Obj) => { validate(): void }> {
  const [group, ver] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion]
  const spec =
    group === 'monitoring.coreos.com'
      ? `@kubernetes-models/prometheus-operator/${group}/${ver}/${obj.kind}`
      : group === ''
        ? `kubernetes-models/${ver}/${obj.kind}`
        : `kubernetes-models/${group}/${ver}/${obj.kind}`
  const mod = await import(spec)
  return mod[obj.kind]
}

function podSpecs(objs: Obj[]): Array<{ owner: string; spec: Obj; meta: Obj }> {
  const out: Array<{ owner: string; spec: Obj; meta: Obj }> = []
  for (const o of objs) {
    const tpl = o.kind === 'CronJob' ? o.spec.jobTemplate.spec.template : ['Deployment', 'Job'].includes(o.kind) ? o.spec.template : undefined
    if (tpl) out.push({ owner: `${o.kind}/${o.metadata.name}`, spec: tpl.spec, meta: tpl.metadata ?? {} })
  }
  return out
}

function find(objs: Obj[], kind: string, name: string): Obj {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name)
  if (!o) throw new Error(`no ${kind}/${name} in the render`)
  return o
}

function configMapData(objs: Obj[], name: string): Record<string, string> {
  return find(objs, 'ConfigMap', name).data ?? {}
}

/** Is `p` on a mount of this container (and writable, when `write`)? */
function mountFor(container: Obj, p: string): Obj | undefined {
  return (container.volumeMounts ?? [])
    .filter((m: Obj) => p === m.mountPath || p.startsWith(m.mountPath.replace(/\/?$/, '/')))
    .sort((a: Obj, b: Obj) => b.mountPath.length - a.mountPath.length)[0]
}

/** What a Secret would hold, for a variable a container takes from one. */
const SECRET_VALUES: Record<string, string> = { DES_DB_URL: 'postgres://u:p@db:5432/des' }

/** A container's environment: its ConfigMaps (envFrom), then its env (a Secret's value from SECRET_VALUES). */
function containerEnv(objs: Obj[], c: Obj): Record<string, string> {
  const env: Record<string, string> = {}
  for (const ref of c.envFrom ?? []) if (ref.configMapRef) Object.assign(env, configMapData(objs, ref.configMapRef.name))
  for (const e of c.env ?? []) env[e.name] = e.value ?? (e.valueFrom?.secretKeyRef ? (SECRET_VALUES[e.name] ?? `<secret ${e.name}>`) : `<from ${JSON.stringify(e.valueFrom)}>`)
  return env
}

/** The migration config a `des migrate` container reads: its file from the mounted ConfigMap, its ${VAR}s from the container's environment. */
function migrateConfigOf(objs: Obj[], spec: Obj, c: Obj) {
  const file = flagValue(c.args, '--config')!
  const m = mountFor(c, file)!
  const vol = spec.volumes.find((v: Obj) => v.name === m.name)
  const text = configMapData(objs, vol.configMap.name)[path.relative(m.mountPath, file)]
  const env = containerEnv(objs, c)
  return { text, config: parseMigrateConfig(substituteTree(YAML.parse(text), env), env) }
}

/**
 * The store each DES container reads or writes, as the code decides it from
 * the container's args and environment: where (s3://bucket/prefix and its
 * region, or local), and the routing bits.
 */
function storeOf(objs: Obj[], spec: Obj, c: Obj): { where: string; region?: string; nBits: number } {
  const env = containerEnv(objs, c)
  const cmd = c.args[2]
  const nBitsFlag = flagValue(c.args, '--n-bits')
  const s3Where = (s3: { bucket: string; prefix: string; region: string }) => ({ where: `s3://${s3.bucket}/${s3.prefix}`, region: s3.region })
  if (cmd === 'serve' || cmd === 'verify') {
    const cfg = loadConfig(env)
    return { ...(cfg.backend === 's3' ? s3Where(cfg.s3!) : { where: `${cfg.backend}:${cfg.baseDir}` }), nBits: nBitsFlag ? Number(nBitsFlag) : cfg.nBits }
  }
  if (cmd === 'pack') {
    const outputDir = flagValue(c.args, '--output-dir')
    const s3 = packS3Target({ outputDir, s3Bucket: flagValue(c.args, '--s3-bucket'), s3Prefix: flagValue(c.args, '--s3-prefix') }, env)
    return { ...(s3 ? s3Where(s3) : { where: `local:${outputDir}` }), nBits: nBitsFlag ? Number(nBitsFlag) : loadConfig(env).nBits }
  }
  if (cmd === 'migrate') {
    const { output, nBits } = migrateConfigOf(objs, spec, c).config.packer
    return { ...(output.kind === 's3' ? s3Where(output) : { where: `local:${output.dir}` }), nBits }
  }
  throw new Error(`no store known for des ${cmd}`)
}

/** A temp copy of k8s/ to edit and render. */
function k8sCopy(): string {
  const tree = fs.mkdtempSync(path.join(os.tmpdir(), 'des-k8s-'))
  fs.cpSync(path.join(ROOT, 'k8s'), path.join(tree, 'k8s'), { recursive: true })
  return path.join(tree, 'k8s')
}

/** Sets `NAME=value` of a configMapGenerator literal in a kustomization file; returns the value it had. */
function setLiteral(file: string, name: string, value: string): string {
  const text = fs.readFileSync(file, 'utf8')
  const m = new RegExp(`^(\\s*- ${name}=)(.*)$`, 'm').exec(text)
  if (!m) throw new Error(`${file} sets no ${name}`)
  fs.writeFileSync(file, text.replace(m[0], `${m[1]}${value}`))
  return m[2].trim()
}

for (const dir of RENDERS) {
  test(`k8s/${dir}: every rendered object validates against the Kubernetes schemas`, async (t) => {
    const objs = rendered.get(dir)!
    t.true(objs.length >= 10, `${objs.length} objects`)
    for (const obj of objs) {
      const Model = await modelOf(obj)
      t.notThrows(() => new Model(obj).validate(), `${obj.kind}/${obj.metadata?.name}`)
    }
    const kinds = new Set(objs.map((o) => o.kind))
    for (const k of ['Deployment', 'Service', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'CronJob', 'ConfigMap', 'ServiceAccount']) t.true(kinds.has(k), `has a ${k}`)
  })

  test(`k8s/${dir}: the retriever listens, is probed and scraped where des serve answers (port 8000, /ready, /health, /metrics)`, (t) => {
    const objs = rendered.get(dir)!
    const port = loadServeConfig({}).port
    t.is(port, 8000, 'des serve listens on 8000 by default')
    const app = fs.readFileSync(path.join(ROOT, 'src', 'serve', 'app.ts'), 'utf8')
    for (const route of ['/health', '/ready', '/metrics']) t.regex(app, new RegExp(`\\[\\s*'${route}',`), `src/serve/app.ts serves ${route}`)

    const dep = find(objs, 'Deployment', 'des-http')
    const pod = dep.spec.template
    const c = pod.spec.containers[0]
    t.deepEqual(cliProblems(c.args), [], 'its command line is one des accepts')
    t.is(Number(flagValue(c.args, '--port')), port)
    const http = c.ports.find((p: Obj) => p.name === 'http')
    t.is(http?.containerPort, port)
    t.is(c.readinessProbe.httpGet.path, '/ready')
    t.is(c.livenessProbe.httpGet.path, '/health')
    for (const probe of [c.readinessProbe, c.livenessProbe]) t.true(probe.httpGet.port === 'http' || probe.httpGet.port === port)
    t.truthy(c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.cpu && c.resources?.limits?.memory, 'requests and limits')
    t.is(pod.metadata.annotations['prometheus.io/scrape'], 'true')
    t.is(Number(pod.metadata.annotations['prometheus.io/port']), port)
    t.is(pod.metadata.annotations['prometheus.io/path'], '/metrics')

    const svc = find(objs, 'Service', 'des-http')
    t.is(svc.spec.ports[0].port, port)
    t.true(svc.spec.ports[0].targetPort === 'http' || svc.spec.ports[0].targetPort === port)
    for (const [k, v] of Object.entries(svc.spec.selector)) t.is(pod.metadata.labels[k], v, `Service selects the pods (${k})`)
    const pdb = find(objs, 'PodDisruptionBudget', 'des-http')
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) t.is(pod.metadata.labels[k], v, `PDB selects the pods (${k})`)
    const hpa = find(objs, 'HorizontalPodAutoscaler', 'des-http')
    t.deepEqual([hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name], ['Deployment', 'des-http'])
    t.true(hpa.spec.minReplicas >= pdb.spec.minAvailable + 1, 'the PDB leaves room to evict a pod at minReplicas')
    const monitor = objs.find((o) => o.kind === 'ServiceMonitor' && o.metadata.name === 'des-http')
    if (monitor) {
      t.true(svc.spec.ports.some((p: Obj) => p.name === monitor.spec.endpoints[0].port), 'ServiceMonitor names a Service port')
      t.is(monitor.spec.endpoints[0].path, '/metrics')
      for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) t.is(svc.metadata.labels[k], v)
    }
  })

  test(`k8s/${dir}: every container is the release image, runs as non-root on a read-only root with /tmp mounted, and its mounts and claims exist`, (t) => {
    const objs = rendered.get(dir)!
    const kust = YAML.parse(fs.readFileSync(path.join(ROOT, 'k8s', 'base', 'kustomization.yaml'), 'utf8'))
    const image = kust.images.find((i: Obj) => i.name === 'des')
    t.is(image.newTag, version, 'the image tag is the package version')
    const pvcs = new Set(objs.filter((o) => o.kind === 'PersistentVolumeClaim').map((o) => o.metadata.name))
    const configMaps = new Set(objs.filter((o) => o.kind === 'ConfigMap').map((o) => o.metadata.name))
    const pods = podSpecs(objs)
    t.is(pods.length, 5, 'retriever, packer CronJob, migrator Deployment and CronJob, verify CronJob')
    for (const { owner, spec } of pods) {
      t.true(spec.securityContext?.runAsNonRoot === true, `${owner} runAsNonRoot`)
      t.true(spec.securityContext?.runAsUser > 0, `${owner} runAsUser`)
      t.is(spec.serviceAccountName, 'des', `${owner} service account`)
      const volumes = new Map<string, Obj>(spec.volumes.map((v: Obj) => [v.name, v]))
      for (const v of volumes.values()) {
        if (v.persistentVolumeClaim) t.true(pvcs.has(v.persistentVolumeClaim.claimName), `${owner}: PVC ${v.persistentVolumeClaim.claimName} exists`)
        if (v.configMap) t.true(configMaps.has(v.configMap.name), `${owner}: ConfigMap ${v.configMap.name} exists`)
      }
      for (const c of spec.containers) {
        t.is(c.image, `${image.newName}:${image.newTag}`, `${owner} image`)
        t.is(c.securityContext?.readOnlyRootFilesystem, true, `${owner} read-only root`)
        t.is(c.securityContext?.allowPrivilegeEscalation, false, `${owner} no privilege escalation`)
        t.truthy(c.resources?.requests && c.resources?.limits, `${owner} requests and limits`)
        for (const m of c.volumeMounts ?? []) t.true(volumes.has(m.name), `${owner}: mount ${m.mountPath} has volume ${m.name}`)
        t.truthy(volumes.get(mountFor(c, '/tmp')?.name)?.emptyDir, `${owner}: /tmp is an emptyDir`)
        for (const ref of c.envFrom ?? []) if (ref.configMapRef) t.true(configMaps.has(ref.configMapRef.name), `${owner}: ConfigMap ${ref.configMapRef.name} exists`)
        t.deepEqual(cliProblems(c.args ?? c.command), [], `${owner}: its command line is one des accepts`)
      }
    }
  })

  test(`k8s/${dir}: every DES_ variable set is one the code reads, and the config it makes is valid`, (t) => {
    const objs = rendered.get(dir)!
    const read = new Set(envNamesReadByCode())
    for (const { owner, spec } of podSpecs(objs)) {
      for (const c of spec.containers) {
        const env: Record<string, string> = {}
        for (const ref of c.envFrom ?? []) if (ref.configMapRef) Object.assign(env, configMapData(objs, ref.configMapRef.name))
        for (const e of c.env ?? []) env[e.name] = e.value ?? `<from ${JSON.stringify(e.valueFrom)}>`
        // Names a mounted config file substitutes (`${DES_DB_URL}`) count as read.
        const substituted = new Set<string>()
        for (const v of spec.volumes) {
          if (v.configMap) for (const text of Object.values(configMapData(objs, v.configMap.name))) for (const n of substitutedNames(text)) substituted.add(n)
        }
        for (const name of Object.keys(env).filter((n) => n.startsWith('DES_'))) {
          t.true(read.has(name) || substituted.has(name), `${owner}: ${name} is read by src/config/ or substituted into a mounted config file`)
        }
        // The settings the code would make of them are valid (loadConfig refuses bad values).
        t.notThrows(() => loadConfig(env), `${owner}: DES_* settings load`)
        const cfg = loadConfig(env)
        // The store the retriever serves (pack and migrate name their output on the command line / in the config).
        if ((c.args[2] === 'serve' || c.args[2] === 'verify') && cfg.backend === 'local') t.truthy(mountFor(c, cfg.baseDir), `${owner}: DES_BASE_DIR ${cfg.baseDir} is mounted`)
        if (cfg.backend === 's3') t.truthy(cfg.s3?.bucket, `${owner}: S3 bucket set`)
      }
    }
  })

  test(`k8s/${dir}: every path the packer and the migrator read or write is mounted; the migrator's config comes from a ConfigMap, its DB URL from a Secret`, (t) => {
    const objs = rendered.get(dir)!
    for (const { owner, spec } of podSpecs(objs)) {
      const c = spec.containers[0]
      if (c.args[2] === 'pack') {
        const input = flagValue(c.args, '--input-json')!
        t.truthy(mountFor(c, input), `${owner}: ${input} is mounted`)
        const out = flagValue(c.args, '--output-dir')
        if (out) {
          const m = mountFor(c, out)
          t.truthy(m, `${owner}: ${out} is mounted`)
          t.not(m?.readOnly, true, `${owner}: ${out} is writable`)
        } else {
          const env = containerEnv(objs, c)
          t.truthy(packS3Target({ s3Bucket: flagValue(c.args, '--s3-bucket'), s3Prefix: flagValue(c.args, '--s3-prefix') }, env), `${owner}: writes to --output-dir, --s3-bucket or des-config's DES_S3_BUCKET`)
        }
      }
      if (c.args[2] === 'migrate') {
        const file = flagValue(c.args, '--config')!
        const m = mountFor(c, file)!
        t.truthy(m, `${owner}: ${file} is mounted`)
        const vol = spec.volumes.find((v: Obj) => v.name === m.name)
        t.truthy(vol.configMap, `${owner}: the config file comes from a ConfigMap`)
        const text = configMapData(objs, vol.configMap.name)[path.relative(m.mountPath, file)]
        t.truthy(text, `${owner}: the ConfigMap holds ${path.basename(file)}`)
        // The database URL (a password) from a Secret; every other ${VAR} without a default is set, from des-config or a Secret.
        t.truthy((c.env ?? []).find((x: Obj) => x.name === 'DES_DB_URL')?.valueFrom?.secretKeyRef, `${owner}: \${DES_DB_URL} comes from a Secret`)
        const env = containerEnv(objs, c)
        for (const name of substitutedNames(text)) {
          if (new RegExp(`\\$\\{${name}\\}`).test(text)) t.truthy(env[name], `${owner}: \${${name}} is set in the container's environment`)
        }
        const { config } = migrateConfigOf(objs, spec, c)
        if (config.packer.output.kind === 'local') {
          const out = mountFor(c, config.packer.output.dir)
          t.truthy(out, `${owner}: packer.output_dir ${config.packer.output.dir} is mounted`)
          t.not(out?.readOnly, true, `${owner}: packer.output_dir is writable`)
        }
        const input = mountFor(c, '/data/input')
        t.truthy(input, `${owner}: the rows' /data/input sources are mounted`)
        if (config.migration.deleteSourceFiles) t.not(input?.readOnly, true, `${owner}: delete_source_files needs a writable source mount`)
      }
    }
  })
}

test('the migrator runs continuously in a Deployment scraped on its metrics port; its CronJob is a suspended template', (t) => {
  for (const dir of RENDERS) {
    const objs = rendered.get(dir)!
    const dep = find(objs, 'Deployment', 'des-migrate')
    t.is(dep.spec.replicas, 1, dir)
    t.is(dep.spec.strategy.type, 'Recreate', `${dir}: old and new migrators never overlap`)
    const pod = dep.spec.template
    const c = pod.spec.containers[0]
    t.deepEqual(cliProblems(c.args), [], `${dir}: a command line des accepts`)
    t.true(c.args.includes('--continuous'), dir)
    const port = Number(flagValue(c.args, '--metrics-port'))
    t.is(c.ports.find((p: Obj) => p.name === 'metrics')?.containerPort, port, dir)
    t.is(c.livenessProbe.httpGet.path, '/health', `${dir}: serveMetrics answers /health`)
    t.is(pod.metadata.annotations['prometheus.io/scrape'], 'true')
    t.is(Number(pod.metadata.annotations['prometheus.io/port']), port)
    t.true(pod.spec.terminationGracePeriodSeconds >= 600, `${dir}: SIGTERM lets the cycle in flight finish`)
    const svc = find(objs, 'Service', 'des-migrate-metrics')
    for (const [k, v] of Object.entries(svc.spec.selector)) t.is(pod.metadata.labels[k], v, `${dir}: the Service selects the migrator (${k})`)
    t.is(svc.spec.ports[0].name, 'metrics')
    t.is(find(objs, 'CronJob', 'des-migrate').spec.suspend, true, `${dir}: one migrator at a time; the CronJob runs by hand`)
  }
  const monitor = find(rendered.get('overlays/s3')!, 'ServiceMonitor', 'des-migrate')
  const svc = find(rendered.get('overlays/s3')!, 'Service', 'des-migrate-metrics')
  for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) t.is(svc.metadata.labels[k], v, 'the ServiceMonitor selects the migrator Service')
  t.is(monitor.spec.endpoints[0].port, 'metrics')
  t.is(monitor.spec.endpoints[0].path, '/metrics')
})

test('the migrator CronJob forbids overlapping cycles and says why', (t) => {
  const cron = find(rendered.get('base')!, 'CronJob', 'des-migrate')
  t.is(cron.spec.concurrencyPolicy, 'Forbid')
  const text = fs.readFileSync(path.join(ROOT, 'k8s', 'base', 'migrator-cronjob.yaml'), 'utf8')
  t.regex(text, /SKIP LOCKED/, 'the comment names the guarantee the choice rests on')
})

test('the packer CronJob runs an Indexed Job whose workers split the manifest: completions = parallelism = DES_PACK_WORKERS', (t) => {
  for (const dir of RENDERS) {
    const job = find(rendered.get(dir)!, 'CronJob', 'des-packer').spec.jobTemplate.spec
    t.is(job.completionMode, 'Indexed', dir)
    t.true(job.completions > 1, `${dir}: more than one worker`)
    t.is(job.parallelism, job.completions, `${dir}: every worker runs at once`)
    const c = job.template.spec.containers[0]
    t.is(c.args[2], 'pack', dir)
    t.is((c.env ?? []).find((e: Obj) => e.name === 'DES_PACK_WORKERS')?.value, String(job.completions), `${dir}: des pack is told the worker count`)
    t.false(c.args.includes('--worker'), `${dir}: the index comes from JOB_COMPLETION_INDEX`)
    // What des pack makes of it in pod 0 and in the last pod.
    for (const index of [0, job.completions - 1]) {
      t.deepEqual(packWorker({}, { DES_PACK_WORKERS: String(job.completions), JOB_COMPLETION_INDEX: String(index) }), { index, count: job.completions }, dir)
    }
  }
})

test('the verify CronJob scrubs the configured store read-only, one at a time, and does not retry what it found', (t) => {
  for (const dir of RENDERS) {
    const cron = find(rendered.get(dir)!, 'CronJob', 'des-verify')
    t.is(cron.spec.concurrencyPolicy, 'Forbid', dir)
    t.is(cron.spec.jobTemplate.spec.backoffLimit, 0, dir)
    const c = cron.spec.jobTemplate.spec.template.spec.containers[0]
    t.deepEqual(c.args.slice(2, 5), ['verify', '--store', '--json'], dir)
    for (const m of c.volumeMounts) if (m.mountPath !== '/tmp') t.true(m.readOnly, `${dir}: ${m.mountPath} is read-only`)
  }
})

test('the S3 overlay takes S3 access from IRSA and drops the store PVC', (t) => {
  const objs = rendered.get('overlays/s3')!
  const sa = find(objs, 'ServiceAccount', 'des')
  t.regex(sa.metadata.annotations?.['eks.amazonaws.com/role-arn'] ?? '', /^arn:aws:iam::/)
  t.false(objs.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === 'des-store'))
  const dep = find(objs, 'Deployment', 'des-http')
  t.true(dep.spec.template.spec.automountServiceAccountToken !== false, 'the IRSA token is mounted')
  t.is(configMapData(objs, dep.spec.template.spec.containers[0].envFrom[0].configMapRef.name).DES_BACKEND, 's3')
})

/** The stores of every DES container of a render, by owner. */
function storesOf(objs: Obj[]): Record<string, { where: string; region?: string; nBits: number }> {
  const out: Record<string, { where: string; region?: string; nBits: number }> = {}
  for (const { owner, spec } of podSpecs(objs)) out[owner] = storeOf(objs, spec, spec.containers[0])
  return out
}

test('the store is set in one place: DES_S3_BUCKET, DES_S3_PREFIX, DES_S3_REGION of overlays/s3 and DES_N_BITS of base, changed there, reach every workload and nothing keeps the old value', (t) => {
  const k8s = k8sCopy()
  const overlay = path.join(k8s, 'overlays', 's3', 'kustomization.yaml')
  const old = {
    bucket: setLiteral(overlay, 'DES_S3_BUCKET', 'prod-store'),
    prefix: setLiteral(overlay, 'DES_S3_PREFIX', 'archive/v2/'),
    region: setLiteral(overlay, 'DES_S3_REGION', 'ap-south-1'),
    nBits: setLiteral(path.join(k8s, 'base', 'kustomization.yaml'), 'DES_N_BITS', '6'),
  }
  t.not(old.nBits, '6')
  for (const bin of [kustomize.newest, kustomize['v5.5.0']]) {
    const s3 = parse(execFileSync(bin, ['build', path.join(k8s, 'overlays', 's3')], { encoding: 'utf8' }))
    const stores = storesOf(s3)
    t.deepEqual(
      Object.keys(stores).sort(),
      ['CronJob/des-migrate', 'CronJob/des-packer', 'CronJob/des-verify', 'Deployment/des-http', 'Deployment/des-migrate'],
      'the retriever, the packer, both migrators and the scrub',
    )
    for (const [owner, store] of Object.entries(stores)) {
      t.deepEqual(store, { where: 's3://prod-store/archive/v2/', region: 'ap-south-1', nBits: 6 }, `${path.basename(bin)}: ${owner} takes the overlay's store`)
    }
    const text = JSON.stringify(s3)
    t.false(text.includes(old.bucket), `${path.basename(bin)}: no rendered object still names ${old.bucket}`)
    t.false(text.includes(old.region), `${path.basename(bin)}: no rendered object still names ${old.region}`)
    for (const [owner, store] of Object.entries(storesOf(parse(execFileSync(bin, ['build', path.join(k8s, 'base')], { encoding: 'utf8' }))))) {
      t.is(store.nBits, 6, `${path.basename(bin)}: base ${owner} routes with des-config's DES_N_BITS`)
    }
  }
})

test('the bucket override GETTING_STARTED documents, run in an overlay on overlays/s3, reaches every workload', (t) => {
  const guide = fs.readFileSync(path.join(ROOT, 'docs', 'GETTING_STARTED.md'), 'utf8')
  const line = /^kustomize edit add configmap des-config (.+)$/m.exec(guide)
  t.truthy(line, 'GETTING_STARTED shows `kustomize edit add configmap des-config`')
  const args = line![1].trim().split(/\s+/)
  const literal = (name: string) => args.map((a) => new RegExp(`^--from-literal=${name}=(.+)$`).exec(a)?.[1]).find(Boolean)
  const bucket = literal('DES_S3_BUCKET')
  t.truthy(bucket, 'the line sets DES_S3_BUCKET')
  const k8s = k8sCopy()
  const mine = path.join(k8s, 'overlays', 'mine')
  fs.mkdirSync(mine)
  fs.writeFileSync(path.join(mine, 'kustomization.yaml'), 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../s3\n')
  execFileSync(kustomize.newest, ['edit', 'add', 'configmap', 'des-config', ...args], { cwd: mine })
  const base = storesOf(rendered.get('overlays/s3')!)['Deployment/des-http']
  for (const bin of [kustomize.newest, kustomize['v5.5.0']]) {
    const objs = parse(execFileSync(bin, ['build', mine], { encoding: 'utf8' }))
    const stores = storesOf(objs)
    t.is(Object.keys(stores).length, 5)
    for (const [owner, store] of Object.entries(stores)) {
      t.is(store.where, `s3://${bucket}/${base.where.split('/').slice(3).join('/')}`, `${path.basename(bin)}: ${owner} writes or reads the overlay's bucket`)
      t.is(store.region, literal('DES_S3_REGION') ?? base.region, `${path.basename(bin)}: ${owner} region`)
    }
  }
})
