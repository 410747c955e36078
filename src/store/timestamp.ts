// created_at as the reference reads it. The native parser takes the ISO-8601
// forms we document (`YYYY-MM-DD[THH:MM[:SS[.f]]][Z|±HH[:MM]]`); the reference
// retriever and packer take whatever Python 3.11's `datetime.fromisoformat`
// takes after turning a final `Z` into `+00:00`: basic forms (`20240301T1230`),
// week dates (`2024-W09-5`), any one character between date and time, an hour
// alone, offsets with seconds (`+05:30:15`), a space before the offset. A
// client written against the reference may send any of those, so a string the
// native parser refuses is read here before it is called malformed; what
// Python refuses stays refused.
//
// Two dates come out of a timestamp: the UTC date (nested layout) and the
// date as written, in the timestamp's own offset (the reference's rule, used
// by the flat layout).

/** A created_at the native router accepts, and its date as written. */
export interface ReadTimestamp {
  /** `created_at` itself when the native parser reads it, else the same instant as `YYYY-MM-DDTHH:MM:SSZ`. */
  canonical: string
  /**
   * `YYYYMMDD` of the timestamp in its own offset, as the reference formats
   * it (Python's `%Y` does not pad years below 1000: year 999 is `999`).
   */
  writtenDate: string
}

/**
 * What the native parser reads as Python does: date first, then optional time
 * and offset (an offset straight after the date is a time of day to Python,
 * and offset minutes of 60 are an hour to it: those go the longer way).
 */
const NATIVE = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?)?[Zz]?$/

/**
 * What Python's `str.strip()` takes off both ends (its `isspace`
 * characters), as the reference strips every created_at: JavaScript's
 * `trim()` differs (it keeps U+001C..U+001F and U+0085, takes U+FEFF).
 * The addon's parser strips the same set.
 */
function isPySpace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    (c >= 0x1c && c <= 0x20) ||
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  )
}

/**
 * `s` without Python's white space at its ends (no work for the usual
 * string, which starts and ends with a visible ASCII character). Walked from
 * each end: a regular expression for the end backtracks over every run of
 * white space inside, quadratic in a crafted created_at.
 */
export function pyStrip(s: string): string {
  let start = 0
  let end = s.length
  while (start < end && isPySpace(s.charCodeAt(start))) start++
  while (end > start && isPySpace(s.charCodeAt(end - 1))) end--
  return start === 0 && end === s.length ? s : s.slice(start, end)
}

/**
 * A time of day: `HH`, `HHMM`, `HH:MM`, `HHMMSS`, `HH:MM:SS`, then a fraction
 * (digits may be none when an offset follows), then one space before an
 * offset, which Python allows unless a fraction of fewer than six digits precedes it.
 */
const CLOCK = /^(\d{2})(?:(:?)(\d{2})(?:\2(\d{2}))?)?(?:[.,](\d*))?( ?)$/

/** An offset after its sign: as a time of day, its fraction not empty, its fields not range-checked. */
const ZONE = /^(\d{2})(?:(:?)(\d{2})(?:\2(\d{2}))?)?(?:[.,](\d+))?$/

const DAY_MICROS = 86_400e6

function pad2(n: number): string {
  return String(n).padStart(2, '0')
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28
  return [4, 6, 9, 11].includes(m) ? 30 : 31
}

/** A UTC Date for a proleptic Gregorian date and time (years below 100 included). */
function utcDate(y: number, m: number, d: number, h = 0, mi = 0, s = 0): Date {
  const date = new Date(Date.UTC(2000, m - 1, d, h, mi, s))
  date.setUTCFullYear(y, m - 1, d)
  return date
}

/** The calendar date of ISO week `week`, day `day` (1 = Monday) of `year`, or null. */
function fromIsoWeek(year: number, week: number, day: number): { y: number; m: number; d: number } | null {
  if (day < 1 || day > 7 || week < 1 || week > 53) return null
  const jan1 = utcDate(year, 1, 1).getUTCDay() // 0 = Sunday
  if (week === 53) {
    const leap = daysInMonth(year, 2) === 29
    if (!(jan1 === 4 || (jan1 === 3 && leap))) return null
  }
  // Monday of week 1 is the Monday on or before 4 January.
  const jan4 = utcDate(year, 1, 4)
  const weekday = (jan4.getUTCDay() + 6) % 7 // 0 = Monday
  const at = new Date(jan4.getTime() + ((week - 1) * 7 + (day - 1) - weekday) * 86_400_000)
  return { y: at.getUTCFullYear(), m: at.getUTCMonth() + 1, d: at.getUTCDate() }
}

/** The date part (7, 8 or 10 characters long) of a reference-style timestamp. */
function readDate(s: string): { y: number; m: number; d: number; end: number } | null {
  let m = /^(\d{4})-(\d{2})-(\d{2})/.exec(s)
  if (m) return { y: +m[1], m: +m[2], d: +m[3], end: 10 }
  m = /^(\d{4})-W(\d{2})(?:-(\d))?/.exec(s)
  if (m) {
    // `YYYY-Www-D` unless the 11th character is a digit: then the 9th is the separator.
    const withDay = m[3] !== undefined && !/^\d$/.test(s[10] ?? '')
    const at = fromIsoWeek(+m[1], +m[2], withDay ? +m[3] : 1)
    return at && { ...at, end: withDay ? 10 : 8 }
  }
  m = /^(\d{4})W(\d{2})(\d*)/.exec(s)
  if (m) {
    // `YYYYWww` then `D` only when the run of digits after the week is odd-length.
    const withDay = m[3].length > 0 && m[3].length % 2 === 1
    const at = fromIsoWeek(+m[1], +m[2], withDay ? +m[3][0] : 1)
    return at && { ...at, end: withDay ? 8 : 7 }
  }
  m = /^(\d{4})(\d{2})(\d{2})/.exec(s)
  if (m) return { y: +m[1], m: +m[2], d: +m[3], end: 8 }
  return null
}

/** Microseconds of a fraction's digits, as Python reads them (the first six). */
function micros(digits: string | undefined): number {
  return digits ? Number(digits.slice(0, 6).padEnd(6, '0')) : 0
}

/** The time of day before an offset (`withOffset`) or at the end, in microseconds; null if Python refuses it. */
function readClock(text: string, withOffset: boolean): number | null {
  const m = CLOCK.exec(text)
  if (!m) return null
  const [, hh, , mm, ss, fraction, space] = m
  if (fraction === '' && !withOffset) return null
  if (space && (!withOffset || (fraction !== undefined && fraction.length < 6))) return null
  const h = +hh
  const mi = mm === undefined ? 0 : +mm
  const s = ss === undefined ? 0 : +ss
  if (h > 23 || mi > 59 || s > 59) return null
  return (h * 3600 + mi * 60 + s) * 1e6 + micros(fraction)
}

/** An offset's size in microseconds (its fields add up, as Python's timedelta adds them); null from a day on. */
function readZone(text: string): number | null {
  const m = ZONE.exec(text)
  if (!m || text.length === 1 || text.length === 3) return null
  const total = (+m[1] * 3600 + (m[3] === undefined ? 0 : +m[3] * 60) + (m[4] === undefined ? 0 : +m[4])) * 1e6 + micros(m[5])
  return total < DAY_MICROS ? total : null
}

/** An instant as the reference reads it: its UTC time, the microseconds of its second, its date as written. */
interface Instant {
  utc: Date
  micros: number
  writtenDate: string
}

/** A timestamp in the forms the reference accepts as an instant, or null. */
function readInstant(createdAt: string): Instant | null {
  let s = pyStrip(createdAt)
  if (s.endsWith('Z')) s = s.slice(0, -1) + '+00:00'
  if (s.length < 7) return null
  const date = readDate(s)
  if (!date || date.y < 1 || date.m < 1 || date.m > 12 || date.d < 1 || date.d > daysInMonth(date.y, date.m)) return null
  let clock = 0
  let offset = 0
  const rest = s.slice(date.end)
  if (rest.length > 0) {
    // One separator character (any), then the time.
    const time = Array.from(rest).slice(1).join('')
    const sign = time.search(/[+-]/)
    const at = readClock(sign < 0 ? time : time.slice(0, sign), sign >= 0)
    if (at === null) return null
    clock = at
    if (sign >= 0) {
      const z = readZone(time.slice(sign + 1))
      if (z === null) return null
      offset = time[sign] === '-' ? -z : z
    }
  }
  // The UTC time of day, which may fall on the day before or after (all in exact microseconds).
  const utcMicros = clock - offset
  const dayShift = Math.floor(utcMicros / DAY_MICROS)
  const ofDay = utcMicros - dayShift * DAY_MICROS
  const seconds = Math.floor(ofDay / 1e6)
  const utc = new Date(utcDate(date.y, date.m, date.d).getTime() + dayShift * 86_400_000 + seconds * 1000)
  const y = utc.getUTCFullYear()
  if (y < 0 || y > 9999) return null
  return { utc, micros: ofDay - seconds * 1e6, writtenDate: `${date.y}${pad2(date.m)}${pad2(date.d)}` }
}

/** `YYYY-MM-DDTHH:MM:SS` of a UTC instant. */
function utcSeconds(utc: Date): string {
  return `${String(utc.getUTCFullYear()).padStart(4, '0')}-${pad2(utc.getUTCMonth() + 1)}-${pad2(utc.getUTCDate())}T${pad2(utc.getUTCHours())}:${pad2(utc.getUTCMinutes())}:${pad2(utc.getUTCSeconds())}`
}

/**
 * A timestamp in the forms the reference accepts, or null. Only called for
 * strings the native parser refused.
 */
export function readReferenceTimestamp(createdAt: string): ReadTimestamp | null {
  const at = readInstant(createdAt)
  return at === null ? null : { canonical: `${utcSeconds(at.utc)}Z`, writtenDate: at.writtenDate }
}

/**
 * created_at as the reference writes it in its tombstone keys (its
 * ShardMetadata.format_timestamp): UTC, `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, the
 * microseconds only when not zero; undefined when it is no timestamp. A
 * final lowercase `z`, which we read as UTC, is read so here too.
 */
export function referenceUtcIso(createdAt: string): string | undefined {
  const s = pyStrip(createdAt)
  const at = readInstant(s.endsWith('z') ? s.slice(0, -1) + 'Z' : s)
  if (at === null) return undefined
  return `${utcSeconds(at.utc)}${at.micros === 0 ? '' : '.' + String(at.micros).padStart(6, '0')}Z`
}

/**
 * Reads a created_at: the native form as it is (the common case: a regular
 * expression and no allocation beyond the date), else the reference's forms.
 * A string neither reads is returned as it is, for the native parser to
 * refuse with its own message.
 */
export function readTimestamp(createdAt: string): ReadTimestamp {
  const s = pyStrip(createdAt)
  const m = NATIVE.exec(s)
  // Year 0000 is no year to Python (nor to the addon): refused below.
  if (m && m[1] !== '0000') return { canonical: s, writtenDate: `${Number(m[1])}${m[2]}${m[3]}` }
  return readReferenceTimestamp(s) ?? { canonical: createdAt, writtenDate: '' }
}

/** `readTimestamp(createdAt).canonical`, without the written date (all the nested layout needs). */
export function canonicalTimestamp(createdAt: string): string {
  const s = pyStrip(createdAt)
  return NATIVE.test(s) ? s : (readReferenceTimestamp(s)?.canonical ?? createdAt)
}
