// created_at as the reference reads it (Python 3.11's datetime.fromisoformat
// after turning a final Z into +00:00): which strings it takes, the date as
// written (the flat layout's rule) and the UTC date (the nested layout's).
// The expectations were taken from the reference itself, string by string.

import test from 'ava'
import { locateShard } from '../src/native'
import { locateIn, locateManyIn, lookupsFor } from '../src/store/layout'
import { canonicalTimestamp, readTimestamp } from '../src/store/timestamp'
import { errorCode } from '../src/errors'

/** [created_at, date as written, UTC date], or [created_at, null] when the reference refuses it. */
const CASES: Array<[string, string, string] | [string, null]> = [
  ["20240301", "20240301", "20240301"],
  ["2024-03-01T23:30:00-05:00", "20240301", "20240302"],
  ["2024-03-02T01:30:00+02:00", "20240302", "20240301"],
  ["2024-03-01", "20240301", "20240301"],
  ["2024-03-01T12", "20240301", "20240301"],
  ["2024-03-01T1230", "20240301", "20240301"],
  ["2024-03-01T12:30:00.5", "20240301", "20240301"],
  ["2024-03-01T12:30:00,5", "20240301", "20240301"],
  ["20240301T233000-0500", "20240301", "20240302"],
  ["20240301T1230Z", "20240301", "20240301"],
  ["2024-03-01T23:30:00-0500", "20240301", "20240302"],
  ["2024-03-01T12:30:00+05", "20240301", "20240301"],
  ["2024-03-01T23:30:00-05:30:15", "20240301", "20240302"],
  ["2024-03-01 23:30:00-05:00", "20240301", "20240302"],
  ["2024-03-01x12:30:00", "20240301", "20240301"],
  ["2024-W09-5", "20240301", "20240301"],
  ["2024-W09-5T23:30-05:00", "20240301", "20240302"],
  ["2024W095", "20240301", "20240301"],
  ["2024-W09", "20240226", "20240226"],
  ["2024-03-01T23:30:00 -05:00", "20240301", "20240302"],
  ["2024-03-01T23.5", "20240301", "20240301"],
  ["2024-03-02T00:30:00+0060", "20240302", "20240301"],
  ["2024-03-01T23:59:59.9999999-00:00", "20240301", "20240301"],
  ["2024-03-01T12:30:00.000Z", "20240301", "20240301"],
  ["2024-03-01T12:30:00Z", "20240301", "20240301"],
  ["  2024-03-01T12:30:00Z ", "20240301", "20240301"],
  ["2024-03-01+05:00", "20240301", "20240301"],
  ["2024-03-01Z", "20240301", "20240301"],
  ["2024-03-01T24:00:00", null],
  ["2024-03-01T12:30:60", null],
  ["2024-02-30", null],
  ["2024-3-1", null],
  ["2024-03-01T", null],
  ["2024-03-01 ", "20240301", "20240301"],
  ["2024-03-01T12:30:00.", null],
  ["2024-03-01T12:30:00+24:00", null],
  ["2024-03-01T12:30:00+5", null],
  ["2024-03-01T12:30:00.5 +05:00", null],
  ["2024-03-01T12:30:00+00:00Z", null],
  ["2024-W54-1", null],
  ["abc", null],
  ["", null],
  // White space as Python's strip() takes it (JavaScript's trim() keeps U+0085 and U+001C..U+001F, takes U+FEFF).
  ["2024-03-01T12:30:00Z\u0085", "20240301", "20240301"],
  ["\u001c2024-03-01T23:30:00-05:00\u001f", "20240301", "20240302"],
  ["\u30002024W095\u3000", "20240301", "20240301"],
  ["\ufeff2024-03-01T12:30:00Z", null],
  // Year 0 is out of Python's range.
  ["0000-01-01", null],
  ["0000-01-01T00:00:00Z", null],
]

for (const [createdAt, written, utc] of CASES) {
  test(`created_at ${JSON.stringify(createdAt)}: ${written === null ? 'refused, as the reference refuses it' : `written ${written}, UTC ${utc}`}`, (t) => {
    if (written === null) {
      const err = t.throws(() => locateIn('flat', '7', createdAt, 8))
      t.is(errorCode(err), 'DES_BAD_ARG')
      t.throws(() => locateIn('nested', '7', createdAt, 8))
      return
    }
    t.is(locateIn('flat', '7', createdAt, 8).dateDir, written)
    t.is(locateIn('nested', '7', createdAt, 8).dateDir, utc)
  })
}

test('every created_at case routed in one batch (locateManyIn) gets the date of its layout, or null where it is refused', (t) => {
  for (const layout of ['flat', 'nested'] as const) {
    const routes = locateManyIn(
      layout,
      CASES.map(() => '7'),
      CASES.map(([createdAt]) => createdAt),
      8,
    )
    CASES.forEach(([createdAt, written, utc], i) => {
      t.is(routes[i]?.dateDir ?? null, written === null ? null : layout === 'flat' ? written : utc, `${layout} ${JSON.stringify(createdAt)}`)
    })
  }
})

test('the flat layout names shards <date as written>_<HEX>_0000.des; the nested one <UTC date>/<HEX>.des; shard index and hex are the same', (t) => {
  const flat = locateIn('flat', 'doc-1', '2024-03-01T23:30:00-05:00', 8)
  const nested = locateIn('nested', 'doc-1', '2024-03-01T23:30:00-05:00', 8)
  t.is(flat.objectKey, `20240301_${flat.shardHex}_0000.des`)
  t.is(nested.objectKey, `20240302/${nested.shardHex}.des`)
  t.is(flat.shardIndex, nested.shardIndex)
  t.deepEqual(nested, locateShard('doc-1', '2024-03-01T23:30:00-05:00', 8))
})

test('a timestamp in the native form is passed on as it is; another form as the same instant in UTC', (t) => {
  t.deepEqual(readTimestamp('2024-03-01T23:30:00-05:00'), { canonical: '2024-03-01T23:30:00-05:00', writtenDate: '20240301' })
  t.deepEqual(readTimestamp('20240301T233000-0500'), { canonical: '2024-03-02T04:30:00Z', writtenDate: '20240301' })
  // The canonical form alone (what the nested layout routes by) is the same for every case.
  for (const [createdAt] of CASES) t.is(canonicalTimestamp(createdAt), readTimestamp(createdAt).canonical, JSON.stringify(createdAt))
})

test('lookups: nested under the UTC date, then under the date as written when it differs; flat under the date as written', (t) => {
  const keys = (layouts: Array<'nested' | 'flat'>, at: string) => lookupsFor(layouts, '7', at, 4).map((l) => `${l.layout}:${l.loc.objectKey}`)
  t.deepEqual(keys(['nested'], '2024-03-01T10:00:00Z'), ['nested:20240301/7.des'])
  t.deepEqual(keys(['nested'], '2024-03-01T23:30:00-05:00'), ['nested:20240302/7.des', 'nested:20240301/7.des'])
  t.deepEqual(keys(['flat'], '2024-03-01T23:30:00-05:00'), ['flat:20240301_7_0000.des'])
  t.deepEqual(keys(['nested', 'flat'], '2024-03-01T23:30:00-05:00'), ['nested:20240302/7.des', 'nested:20240301/7.des', 'flat:20240301_7_0000.des'])
  t.deepEqual(keys(['flat', 'nested'], '2024-03-01T10:00:00Z'), ['flat:20240301_7_0000.des', 'nested:20240301/7.des'])
})
