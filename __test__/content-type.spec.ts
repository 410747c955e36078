// The content type recorded at pack time (src/pack/content-type.ts): the
// extension is found by hand (it runs for every file), so it is held here
// against path.posix, the rule it replaces.

import test from 'ava'
import * as path from 'node:path'
import { lookup } from 'mime-types'
import { metaText, typeFromName } from '../src/pack/content-type'

/** The rule as path.posix states it: the extension of the basename, after cutting ?query and #fragment. */
function byPathModule(name: string): string | undefined {
  const ext = path.posix.extname(path.posix.basename(name.replace(/[?#].*$/, ''))).toLowerCase()
  if (!ext) return undefined
  const type = lookup(ext)
  return type === false ? undefined : type
}

test('the type of a name follows its last segment, cut at ? and #, case aside', (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['/data/in/invoice-7.JSON', 'application/json'],
    ['s3://bucket/scans/a.pdf?versionId=x.png', 'application/pdf'],
    ['s3://bucket/page.html#top.txt', 'text/html'],
    ['notes.txt/', 'text/plain'],
    ['archive.tar.gz', 'application/gzip'],
    ['dir.d/README', undefined],
    ['/home/user/.json', undefined],
    ['plain', undefined],
    ['a.', undefined],
    ['', undefined],
  ]
  for (const [name, want] of cases) t.is(typeFromName(name), want, name)
})

test('every name built from awkward pieces gets the type path.posix gives it', (t) => {
  const pieces = ['a', 'b.json', '.', '..', '/', '?', '#', 'x.JPG', '.txt', 'c.tar.gz', 's3:', '//', 'd.', 'e.pdf?x=1.png', 'f#.html', 'PDF', '.pdf']
  let checked = 0
  // Every sequence of up to three pieces, each with or without a slash after it.
  const build = (prefix: string, depth: number): void => {
    t.is(typeFromName(prefix), byPathModule(prefix), JSON.stringify(prefix))
    checked++
    if (depth === 3) return
    for (const p of pieces) for (const sep of ['', '/']) build(prefix + p + sep, depth + 1)
  }
  build('', 0)
  t.true(checked > 30_000)
})

test('the meta text: the type added from the source, else the uid; a type or mime given is kept; no meta and no type is none', (t) => {
  t.is(metaText(undefined, '/in/a.json', 'a'), '{"content_type":"application/json"}')
  // The same text each time for a file without meta.
  t.is(metaText(undefined, '/in/b.json', 'b'), metaText(undefined, '/in/c.json', 'c'))
  t.is(metaText(undefined, '/in/blob', 'scan.pdf'), '{"content_type":"application/pdf"}')
  t.is(metaText(undefined, '/in/blob', 'id-7'), undefined)
  t.deepEqual(JSON.parse(metaText({ k: 'v' }, '/in/a.json', 'a')!), { k: 'v', content_type: 'application/json' })
  t.deepEqual(JSON.parse(metaText({ mime: 'text/x-own' }, '/in/a.json', 'a')!), { mime: 'text/x-own' })
  t.deepEqual(JSON.parse(metaText({ content_type: 'text/csv' }, '/in/a.json', 'a')!), { content_type: 'text/csv' })
  t.is(metaText({}, '/in/blob', 'id-7'), undefined)
})
