// The npm delivery: per-platform packages under npm/, the main package's
// contents, and the user's path — `npm install` of the packed tarballs into an
// empty directory with no Rust toolchain on PATH, then `des` runs there.
//
// Needs `npm run build` first (the addon des.<platform>.node and dist/);
// `npm test` does that. The registry is used for the package's own
// dependencies (npm's cache answers most of them).

import test from 'ava'
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import * as YAML from 'yaml'
import { ROOT, readJson } from './helpers/golden'

/** napi-rs target triple -> the platform suffix index.js and npm/ use. */
const PLATFORMS: Record<string, { abi: string; os: string; cpu: string; libc?: string }> = {
  'x86_64-unknown-linux-gnu': { abi: 'linux-x64-gnu', os: 'linux', cpu: 'x64', libc: 'glibc' },
  'aarch64-unknown-linux-gnu': { abi: 'linux-arm64-gnu', os: 'linux', cpu: 'arm64', libc: 'glibc' },
  'x86_64-unknown-linux-musl': { abi: 'linux-x64-musl', os: 'linux', cpu: 'x64', libc: 'musl' },
  'x86_64-apple-darwin': { abi: 'darwin-x64', os: 'darwin', cpu: 'x64' },
  'aarch64-apple-darwin': { abi: 'darwin-arm64', os: 'darwin', cpu: 'arm64' },
  'x86_64-pc-windows-msvc': { abi: 'win32-x64-msvc', os: 'win32', cpu: 'x64' },
}

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** Runs a command to completion (never throws on a non-zero exit). */
function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180_000)
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (signal ? `\n(killed by ${signal})` : ''),
      })
    })
  })
}

function show(r: Run): string {
  return `exit ${r.code}\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-4000)}`
}

/** The files `npm pack` would put in the main package. */
async function packedFiles(): Promise<string[]> {
  const r = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT })
  if (r.code !== 0) throw new Error(`npm pack --dry-run failed: ${show(r)}`)
  const [info] = JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>
  return info.files.map((f) => f.path)
}

const rootPkg = readJson<{ name: string; version: string; files: string[]; bin: Record<string, string>; napi: { binaryName: string; targets: string[] }; optionalDependencies?: Record<string, string> }>(
  path.join(ROOT, 'package.json'),
)

test('every napi target has an npm/ package named as index.js requires it, with os, cpu, libc and main', (t) => {
  const loader = fs.readFileSync(path.join(ROOT, 'index.js'), 'utf8')
  t.deepEqual([...rootPkg.napi.targets].sort(), Object.keys(PLATFORMS).sort(), 'package.json napi.targets')
  for (const triple of rootPkg.napi.targets) {
    const p = PLATFORMS[triple]
    const name = `${rootPkg.name}-${p.abi}`
    const node = `${rootPkg.napi.binaryName}.${p.abi}.node`
    const pkg = readJson(path.join(ROOT, 'npm', p.abi, 'package.json'))
    t.is(pkg.name, name, triple)
    t.is(pkg.version, rootPkg.version, `${name} has the main package's version`)
    t.deepEqual(pkg.os, [p.os], name)
    t.deepEqual(pkg.cpu, [p.cpu], name)
    t.deepEqual(pkg.libc, p.libc ? [p.libc] : undefined, name)
    t.is(pkg.main, node, name)
    t.deepEqual(pkg.files, [node], name)
    t.true(loader.includes(`require('${name}')`), `index.js requires ${name}`)
    t.true(loader.includes(`require('./${node}')`), `index.js looks for ./${node}`)
  }
  const dirs = fs.readdirSync(path.join(ROOT, 'npm')).sort()
  t.deepEqual(dirs, Object.values(PLATFORMS).map((p) => p.abi).sort(), 'npm/ holds exactly the targets')
})

test('the main package ships compiled JS, typings, bin and the loader, and not the sources or the crate', async (t) => {
  t.true(fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js')), 'dist/ is built (npm run build)')
  const files = await packedFiles()
  for (const want of ['package.json', 'index.js', 'index.d.ts', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/native.js']) {
    t.true(files.includes(want), `ships ${want}`)
  }
  for (const bin of Object.values(rootPkg.bin)) t.true(files.includes(bin.replace(/^\.\//, '')), `ships bin ${bin}`)
  const leaked = files.filter((f) => /^(src|crates|__test__|target|npm|bench|scripts|k8s|node_modules)\//.test(f) || f.endsWith('.node') || f.endsWith('.rs'))
  t.deepEqual(leaked, [], 'no sources, crate, tests or addon binaries in the main package')
  t.is(rootPkg.optionalDependencies, undefined, 'optionalDependencies are written by `napi prepublish` at release (unpublished names would break `npm ci`)')
})

test('the release workflow cross-builds every napi target and publishes through napi artifacts and napi prepublish', (t) => {
  const wf = YAML.parse(fs.readFileSync(path.join(ROOT, '.github', 'workflows', 'release.yml'), 'utf8'))
  const built = wf.jobs.build.strategy.matrix.settings.map((s: { target: string; build: string }) => {
    t.true(s.build.includes(`--target ${s.target}`), `${s.target} is built for itself`)
    return s.target
  })
  t.deepEqual([...built].sort(), [...rootPkg.napi.targets].sort(), 'one build per napi target')
  const tested = [
    ...wf.jobs.test.strategy.matrix.settings.map((s: { target: string }) => s.target),
    ...Object.values<{ steps: Array<{ with?: { name?: string } }> }>(wf.jobs)
      .flatMap((j) => j.steps ?? [])
      .map((st) => st.with?.name?.replace(/^bindings-/, ''))
      .filter(Boolean),
  ]
  for (const target of rootPkg.napi.targets) t.true(tested.includes(target), `${target} is tested on its platform`)
  const publish = wf.jobs.publish.steps.map((st: { run?: string }) => st.run ?? '').join('\n')
  t.regex(publish, /napi artifacts/)
  t.regex(publish, /napi prepublish -t npm/)
  t.regex(publish, /npm publish/)
  const scripts = readJson(path.join(ROOT, 'package.json')).scripts
  t.truthy(scripts['build:native'], 'the workflow calls npm run build:native')
})

// The user's path needs the addon built for this machine.
const HOST = (() => {
  if (process.platform !== 'linux' || process.arch !== 'x64') return null
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
  return header?.glibcVersionRuntime ? 'linux-x64-gnu' : null
})()
const HAS_PACK_COMMAND = fs.existsSync(path.join(ROOT, 'src', 'cli', 'commands', 'pack.ts'))
const USER_PATH = HAS_PACK_COMMAND
  ? 'installed from the packed tarballs with no cargo on PATH, `des --version`, `des pack`, `des cat` and `des serve` work'
  : 'installed from the packed tarballs with no cargo on PATH, `des --version` works, the JS API writes a shard (no `des pack` command in src/cli/commands yet), `des cat` and `des serve` read it'

if (HOST === null) {
  test.skip(`${USER_PATH} [needs linux-x64-gnu, this is ${process.platform}-${process.arch}]`, () => {})
} else {
  test.serial(USER_PATH, async (t) => {
    t.timeout(420_000)
    const abi = HOST
    const addon = path.join(ROOT, `${rootPkg.napi.binaryName}.${abi}.node`)
    t.true(fs.existsSync(addon), `${addon} is built (npm run build)`)
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'des-npm-'))
    t.teardown(() => fs.rmSync(work, { recursive: true, force: true }))

    // 1. Stage what the release does: the main package's files, npm/, the addon;
    //    `napi artifacts` copies it into npm/<abi>, `napi prepublish` writes the
    //    optionalDependencies. This machine builds one target, so the stage's
    //    napi.targets is narrowed to it (release CI has all of them).
    const stage = path.join(work, 'stage')
    for (const f of await packedFiles()) {
      fs.mkdirSync(path.dirname(path.join(stage, f)), { recursive: true })
      fs.copyFileSync(path.join(ROOT, f), path.join(stage, f))
    }
    fs.cpSync(path.join(ROOT, 'npm'), path.join(stage, 'npm'), { recursive: true })
    const artifacts = path.join(work, 'artifacts')
    fs.mkdirSync(artifacts)
    fs.copyFileSync(addon, path.join(artifacts, path.basename(addon)))
    const stagedPkg = readJson(path.join(stage, 'package.json'))
    stagedPkg.napi.targets = rootPkg.napi.targets.filter((tr) => PLATFORMS[tr].abi === abi)
    fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(stagedPkg, null, 2) + '\n')
    // napi prepublish reads the last commit message (to decide on a GitHub release).
    const git = ['-c', 'user.email=test@des', '-c', 'user.name=test']
    for (const args of [['init', '-q'], [...git, 'commit', '-q', '--allow-empty', '-m', 'stage']]) {
      const r = await run('git', args, { cwd: stage })
      t.is(r.code, 0, show(r))
    }
    const napi = path.join(ROOT, 'node_modules', '.bin', 'napi')
    let r = await run(napi, ['artifacts', '--output-dir', artifacts, '--npm-dir', 'npm'], { cwd: stage })
    t.is(r.code, 0, `napi artifacts: ${show(r)}`)
    r = await run(napi, ['prepublish', '-t', 'npm', '--skip-optional-publish'], { cwd: stage })
    t.is(r.code, 0, `napi prepublish: ${show(r)}`)
    const platformName = `${rootPkg.name}-${abi}`
    t.deepEqual(readJson(path.join(stage, 'package.json')).optionalDependencies, { [platformName]: rootPkg.version })

    // 2. Pack both packages.
    const tarballs = path.join(work, 'tarballs')
    fs.mkdirSync(tarballs)
    const pack = async (dir: string): Promise<string> => {
      const p = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tarballs], { cwd: dir })
      t.is(p.code, 0, `npm pack in ${dir}: ${show(p)}`)
      return path.join(tarballs, (JSON.parse(p.stdout) as Array<{ filename: string }>)[0].filename)
    }
    const mainTgz = await pack(stage)
    const platformTgz = await pack(path.join(stage, 'npm', abi))

    // 3. An empty project, and an environment with no Rust toolchain.
    const app = path.join(work, 'app')
    fs.mkdirSync(app)
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'des-trial', version: '1.0.0', private: true }) + '\n')
    const PATH = (process.env.PATH ?? '')
      .split(path.delimiter)
      .filter((dir) => dir && !fs.existsSync(path.join(dir, 'cargo')) && !fs.existsSync(path.join(dir, 'rustc')))
      .join(path.delimiter)
    const env: NodeJS.ProcessEnv = { ...process.env, PATH, CARGO_HOME: path.join(work, 'no-cargo'), RUSTUP_HOME: path.join(work, 'no-rustup'), npm_config_update_notifier: 'false' }
    for (const k of Object.keys(env)) if (k.startsWith('DES_') || k.startsWith('NAPI_RS_')) delete env[k]
    r = await run('sh', ['-c', 'command -v cargo || command -v rustc || echo none'], { cwd: app, env })
    t.is(r.stdout.trim(), 'none', 'no cargo or rustc on the PATH of the install')
    const npmInstall = (...specs: string[]) =>
      run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...specs], { cwd: app, env, timeoutMs: 300_000 })
    const des = (...args: string[]) => run('npx', ['--no-install', 'des', ...args], { cwd: app, env })

    // 4. The main package alone (its optional platform package is not on the
    //    registry): des says which platform package it lacks.
    r = await npmInstall(mainTgz)
    t.is(r.code, 0, `npm install main: ${show(r)}`)
    r = await des('--version')
    t.not(r.code, 0, show(r))
    t.regex(r.stderr, new RegExp(`DES native addon not available for ${abi}: the package ${platformName} is not installed`))

    // 5. Both tarballs: the user's path.
    r = await npmInstall(mainTgz, platformTgz)
    t.is(r.code, 0, `npm install both: ${show(r)}`)
    t.false(fs.existsSync(path.join(app, 'node_modules', rootPkg.name, 'src')), 'no src/ installed')
    t.true(fs.existsSync(path.join(app, 'node_modules', platformName, path.basename(addon))), 'the addon came from the platform package')
    t.false(fs.existsSync(path.join(app, 'node_modules', rootPkg.name, path.basename(addon))), 'and not from the main package')
    r = await des('--version')
    t.is(r.code, 0, show(r))
    t.is(r.stdout.trim(), rootPkg.version)

    // 6. Pack two small files, find one, read it back.
    const input = path.join(app, 'input')
    fs.mkdirSync(input)
    const files = [
      { uid: 'invoice-1', created_at: '2024-03-01T10:00:00Z', body: 'hello from the installed package\n'.repeat(20) },
      { uid: '12345', created_at: '2024-03-01T11:00:00Z', body: 'second file\n' },
    ]
    const manifest = files.map((f) => {
      const source = path.join(input, `${f.uid}.txt`)
      fs.writeFileSync(source, f.body)
      return { uid: f.uid, created_at: f.created_at, size_bytes: Buffer.byteLength(f.body), source_path: source }
    })
    fs.writeFileSync(path.join(app, 'manifest.json'), JSON.stringify(manifest, null, 2))
    const output = path.join(app, 'output')
    if (HAS_PACK_COMMAND) {
      r = await des('--help')
      t.regex(r.stdout, /\bpack\b/, 'the installed des lists its pack command')
      r = await des('pack', '--input-json', 'manifest.json', '--output-dir', output)
      t.is(r.code, 0, `des pack: ${show(r)}`)
    } else {
      const script = `
        const { ShardWriter, locateShard } = require('${rootPkg.name}')
        const fs = require('node:fs'), path = require('node:path')
        const manifest = JSON.parse(fs.readFileSync('manifest.json', 'utf8'))
        ;(async () => {
          for (const f of manifest) {
            const key = locateShard(f.uid, f.created_at, 8).objectKey
            const file = path.join(${JSON.stringify(output)}, key)
            fs.mkdirSync(path.dirname(file), { recursive: true })
            const w = await ShardWriter.append(file)
            await w.add(f.uid, fs.readFileSync(f.source_path))
            await w.finish()
          }
        })().catch((e) => { console.error(e); process.exit(1) })`
      r = await run(process.execPath, ['-e', script], { cwd: app, env })
      t.is(r.code, 0, `JS API pack: ${show(r)}`)
    }
    for (const f of files) {
      r = await des('locate', f.uid, '--created-at', f.created_at)
      t.is(r.code, 0, show(r))
      const key = (JSON.parse(r.stdout) as { object_key: string }).object_key
      r = await des('cat', path.join(output, key), f.uid)
      t.is(r.code, 0, `des cat ${key} ${f.uid}: ${show(r)}`)
      t.is(r.stdout, f.body, `${f.uid} reads back byte-exact`)
    }

    // 7. des serve from the installed package (production dependencies only) serves them.
    const port = await freePort()
    const server = spawn(path.join(app, 'node_modules', '.bin', 'des'), ['serve', '--host', '127.0.0.1', '--port', String(port)], {
      cwd: app,
      env: { ...env, DES_BACKEND: 'local', DES_BASE_DIR: output, DES_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let serverErr = ''
    server.stderr.on('data', (d: Buffer) => (serverErr += d.toString()))
    t.teardown(() => server.kill('SIGKILL'))
    const base = `http://127.0.0.1:${port}`
    let up = false
    for (let i = 0; i < 100 && !up && server.exitCode === null; i++) {
      up = await fetch(`${base}/health`).then((res) => res.ok, () => false)
      if (!up) await new Promise((res) => setTimeout(res, 100))
    }
    t.true(up, `des serve answers /health: ${serverErr}`)
    for (const f of files) {
      const res = await fetch(`${base}/files/${encodeURIComponent(f.uid)}?created_at=${encodeURIComponent(f.created_at)}`)
      t.is(res.status, 200, f.uid)
      t.is(await res.text(), f.body, `${f.uid} served byte-exact`)
    }
    server.kill('SIGTERM')
  })
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}
