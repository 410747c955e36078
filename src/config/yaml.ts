// YAML config files (YAML is a superset of JSON), parsed by the \`yaml\`
// package, which is loaded with the first file read: about 20 ms of start-up
// that a run without a config file does not pay.

/** Parses YAML (or JSON) text; throws the parser's error. */
export function parseYaml(text: string): unknown {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const YAML = require('yaml') as typeof import('yaml')
  return YAML.parse(text)
}
