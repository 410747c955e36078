// What build is running, for `des_build_info` and `des --version`: the
// package version, and the commit when it can be known (DES_BUILD_COMMIT, set
// by the image from its build argument; `gitHead`, which npm writes into a
// published package.json; or the HEAD of the git checkout it runs from).

import * as fs from 'node:fs'
import * as path from 'node:path'

type Env = Record<string, string | undefined>

/** The package root (where package.json is), from src/config or dist/config alike. */
const ROOT = path.resolve(__dirname, '..', '..')

export interface BuildInfo {
  /** package.json `version`. */
  version: string
  /** A commit id (hex), or `unknown`. */
  commit: string
  /** `process.version` without the `v`. */
  node: string
}

function readQuietly(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

/** The commit a git checkout at `root` has checked out, following a symbolic HEAD into refs or packed-refs. */
export function gitCommit(root: string): string | undefined {
  const gitDir = path.join(root, '.git')
  const head = readQuietly(path.join(gitDir, 'HEAD'))?.trim()
  if (!head) return undefined
  if (/^[0-9a-f]{40}$/.test(head)) return head
  const ref = /^ref: (\S+)$/.exec(head)?.[1]
  if (!ref) return undefined
  const loose = readQuietly(path.join(gitDir, ref))?.trim()
  if (loose && /^[0-9a-f]{40}$/.test(loose)) return loose
  const packed = readQuietly(path.join(gitDir, 'packed-refs')) ?? ''
  for (const line of packed.split('\n')) {
    const [id, name] = line.split(' ')
    if (name === ref && /^[0-9a-f]{40}$/.test(id)) return id
  }
  return undefined
}

/** The running build's version, commit and Node version. */
export function loadBuildInfo(env: Env = process.env, root = ROOT): BuildInfo {
  let pkg: { version?: string; gitHead?: string } = {}
  try {
    pkg = JSON.parse(readQuietly(path.join(root, 'package.json')) ?? '{}')
  } catch {
    // a broken package.json leaves the version unknown; nothing else depends on it here
  }
  const fromEnv = env.DES_BUILD_COMMIT?.trim()
  const commit = (fromEnv && /^[0-9a-fA-F]{7,40}$/.test(fromEnv) ? fromEnv.toLowerCase() : undefined) ?? pkg.gitHead ?? gitCommit(root) ?? 'unknown'
  return { version: pkg.version ?? 'unknown', commit, node: process.version.replace(/^v/, '') }
}
