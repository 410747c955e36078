// A number given as a uid (in a manifest, a `des locate --stdin` line, a
// library call), turned into text as the original turns it: `str()` of what
// Python's json module reads. An integer keeps
// every digit (12345678901234567890123, -5), a number with a fraction or an
// exponent is a float written as Python writes one (1.0, 1000.0, 1e+16,
// 1.5e-07). JSON.parse loses both (1.0 is 1; 2^53 + 1 is 2^53), so the uid
// is read again from the entry's own text.

import { DesError } from './errors'

/**
 * The text of the last `name` member of the top-level object in `json` (an
 * entry that JSON.parse has read, so it is valid JSON), or undefined. The
 * last, as JSON.parse and Python's json keep the last of a repeated key.
 */
export function topLevelMember(json: string, name: string): string | undefined {
  let found: string | undefined
  let depth = 0
  let i = 0
  while (i < json.length) {
    const c = json[i]
    if (c === '"') {
      const end = stringEnd(json, i)
      if (depth === 1 && keyText(json, i, end) === name) {
        let at = end
        while (/\s/.test(json[at])) at++
        if (json[at] === ':') {
          at++
          while (/\s/.test(json[at])) at++
          if (json[at] === '{' || json[at] === '[') {
            // No number: the loop walks through it, counting its depth.
            found = undefined
            i = at
            continue
          }
          const valueEnd = valueEndAt(json, at)
          found = json.slice(at, valueEnd)
          i = valueEnd
          continue
        }
      }
      i = end
      continue
    }
    if (c === '{' || c === '[') depth++
    else if (c === '}' || c === ']') depth--
    i++
  }
  return found
}

/** The text of the string token `json[start..end)`: unescaped only when it holds an escape (most keys do not). */
function keyText(json: string, start: number, end: number): string {
  const token = json.slice(start, end)
  return token.includes('\\') ? (JSON.parse(token) as string) : token.slice(1, -1)
}

/** Where the string starting at `start` (its opening quote) ends, past its closing quote. */
function stringEnd(json: string, start: number): number {
  let i = start + 1
  while (json[i] !== '"') i += json[i] === '\\' ? 2 : 1
  return i + 1
}

/** Where a scalar value starting at `at` ends (a number, literal or string; not an object or array). */
function valueEndAt(json: string, at: number): number {
  if (json[at] === '"') return stringEnd(json, at)
  let i = at
  while (i < json.length && !/[\s,}\]]/.test(json[i])) i++
  return i
}

/** `str()` of the number Python's json reads from `raw` (a JSON number's text). */
export function pythonNumberText(raw: string): string {
  if (/^-?\d+$/.test(raw)) return BigInt(raw).toString()
  return pythonFloatRepr(Number(raw))
}

/**
 * A double as Python's repr writes it: the shortest digits that read back
 * (as JavaScript finds them too), fixed notation for decimal exponents -4
 * to 15 (with ".0" for a whole number), else `d.ddde±XX`.
 */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan'
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf'
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0'
  const sign = x < 0 ? '-' : ''
  const [mantissa, expText] = Math.abs(x).toExponential().split('e')
  const digits = mantissa.replace('.', '')
  const exp = Number(expText)
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`
    const whole = digits.slice(0, exp + 1).padEnd(exp + 1, '0')
    const fraction = digits.slice(exp + 1)
    return `${sign}${whole}.${fraction === '' ? '0' : fraction}`
  }
  const expOut = `${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`
  return `${sign}${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${expOut}`
}

/**
 * The uid text of a number that comes without its JSON text (a library
 * call): a whole number as its digits, another as Python writes the float.
 * A whole number past 2^53 may not be the one that was meant: refused.
 */
export function uidOfNumber(n: number): string {
  if (!Number.isInteger(n) || !Number.isFinite(n)) return pythonFloatRepr(n)
  if (!Number.isSafeInteger(n)) throw new DesError('DES_BAD_ARG', `uid ${n} is a whole number too large to be read exactly; give it as a string`)
  return String(n)
}
