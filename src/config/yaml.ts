// YAML config files (YAML is a superset of JSON), parsed by the \`yaml\`
// package, which is loaded with the first file read: about 20 ms of start-up
// that a run without a config file does not pay.

/** Parses YAML (or JSON) text; throws the parser's error. */
export function parseYaml(text: string): unknown {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const YAML = require('yaml') as typeof import('yaml')
  return YAML.parse(text)
}

/**
 * Where a YAML or JSON parser stopped, as line and column ("at line 3,
 * column 4"): never the parser's own message, which quotes the text around
 * it (a config file holds database passwords and API keys).
 */
export function whereParsingStopped(err: unknown, text: string): string {
  const yamlAt = (err as { linePos?: Array<{ line: number; col: number }> }).linePos?.[0]
  const code = (err as { code?: unknown }).code
  if (yamlAt) return `at line ${yamlAt.line}, column ${yamlAt.col}${typeof code === 'string' ? ` (${code})` : ''}`
  const at = /position (\d+)/.exec((err as Error)?.message ?? '')
  if (!at) return '(the parser gave no position)'
  const before = text.slice(0, Number(at[1])).split('\n')
  return `at line ${before.length}, column ${before[before.length - 1].length + 1}`
}
