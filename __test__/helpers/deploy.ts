// What the delivery files (Dockerfile, docker-compose.yml, k8s/, docs/) are
// checked against: names and flags read from the code at test time, so the
// files cannot drift from it.

import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ROOT } from './golden'

const DES_NAME = /\bDES_[A-Z0-9_]*[A-Z0-9]\b/g

function sources(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => path.join(dir, f))
}

/** Error codes (`DES_CONFIG`, `DES_NOT_FOUND`, ...): DES_ names that are not variables. */
export function errorCodes(): Set<string> {
  const codes = new Set(fs.readFileSync(path.join(ROOT, 'src', 'errors.ts'), 'utf8').match(DES_NAME) ?? [])
  for (const file of sources(path.join(ROOT, 'src'))) {
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/DesError\(\s*['"`](DES_[A-Z0-9_]+)['"`]/g)) codes.add(m[1])
  }
  return codes
}

/**
 * Every `DES_*` environment variable the code reads: the DES_ names in
 * src/config/ (the only reader of process.env), less error codes.
 */
export function envNamesReadByCode(): string[] {
  const codes = errorCodes()
  const names = new Set<string>()
  for (const file of sources(path.join(ROOT, 'src', 'config'))) {
    for (const name of fs.readFileSync(file, 'utf8').match(DES_NAME) ?? []) if (!codes.has(name)) names.add(name)
  }
  return [...names].sort()
}

/** `${VAR}` / `${VAR:-default}` names in a config text. */
export function substitutedNames(text: string): string[] {
  return [...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}/g)].map((m) => m[1])
}

const helpCache = new Map<string, string>()

/** `des <command> --help` of the built CLI (dist/ must be built). */
export function cliHelp(command: string): string {
  let text = helpCache.get(command)
  if (text === undefined) {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'des.js'), ...(command ? [command] : []), '--help'], { encoding: 'utf8', env: { ...process.env, DEBUG: '' } })
    if (r.status !== 0) throw new Error(`des ${command} --help failed (${r.status}): ${r.stderr}`)
    text = r.stdout
    helpCache.set(command, text)
  }
  return text
}

/**
 * Problems with a container's command line `node bin/des.js <command> [--flag value]...`:
 * an unknown command or a flag its --help does not list. Empty when all is well.
 */
export function cliProblems(argv: string[]): string[] {
  const problems: string[] = []
  if (argv[0] !== 'node' || argv[1] !== 'bin/des.js') return [`expected "node bin/des.js <command> ...", got ${JSON.stringify(argv)}`]
  const command = argv[2]
  if (!command || !new RegExp(`^\\s+des ${command}\\b`, 'm').test(cliHelp(''))) return [`des has no command ${JSON.stringify(command)}`]
  const help = cliHelp(command)
  for (const arg of argv.slice(3)) {
    if (!arg.startsWith('--')) continue
    const flag = arg.split('=')[0]
    if (!new RegExp(`^\\s+${flag}\\b`, 'm').test(help)) problems.push(`des ${command} has no flag ${flag}`)
  }
  return problems
}

/** The value after `flag` in argv (or in `--flag=value`). */
export function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag)
  if (i >= 0) return argv[i + 1]
  return argv.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1)
}
