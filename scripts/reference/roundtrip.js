// Our half of the compatibility check, in Node with the built addon:
// `write DIR` writes shards with ours (every codec, a BigFile, an append with
// a replaced entry, one written past the page cache, an append in place left unfinished) and lists their files' sha256 in DIR/expect.json;
// `read DIR` reads what the original wrote (DIR/expect.json), checks every
// entry byte-exact and its shard clean under `des verify`, then appends to
// each with ours and lists the result again for the original to read.

const fs = require('node:fs')
const path = require('node:path')
const { createHash, randomBytes } = require('node:crypto')
const { ShardReader, ShardWriter, verifyShardFile } = require('../../index.js')

const THRESHOLD = 4096
const sha = (b) => createHash('sha256').update(b).digest('hex')

async function write(dir) {
  const expect = {}
  for (const codec of ['none', 'zstd', 'lz4']) {
    const name = `ours-${codec}.des`
    const file = path.join(dir, name)
    const files = {}
    const w = ShardWriter.create(file, { codec, bigFileThreshold: THRESHOLD })
    for (const [i, size] of [0, 10, 900, 3000, 5000].entries()) {
      const data = Buffer.from(`ours ${codec} ${i} `.repeat(size / 8 + 1)).subarray(0, size)
      await w.add(`o-${i}`, data, JSON.stringify({ i }))
      files[`o-${i}`] = sha(data)
    }
    await w.finish()
    const a = await ShardWriter.append(file, { codec, bigFileThreshold: THRESHOLD, replace: true })
    const again = Buffer.from(`replaced ${codec}`)
    await a.add('o-2', again)
    await a.add('o-late', Buffer.from('late'))
    await a.finish()
    files['o-2'] = sha(again)
    files['o-late'] = sha(Buffer.from('late'))
    expect[name] = files
  }
  // A shard written past the page cache, as des pack writes a local store:
  // its payloads in whole 1 MiB blocks written directly (O_DIRECT where the
  // filesystem takes it), its index and footer through the cache.
  {
    const name = 'ours-direct.des'
    const file = path.join(dir, name)
    const files = {}
    const w = ShardWriter.create(file, { codec: 'zstd', writePastCache: true })
    for (let i = 0; i < 6; i++) {
      const data = i % 2 ? randomBytes(400_000 + i) : Buffer.from(`direct ${i} `.repeat(40_000))
      await w.add(`d-${i}`, data, JSON.stringify({ i }))
      files[`d-${i}`] = sha(data)
    }
    await w.finish()
    expect[name] = files
  }
  // An append in place caught before its last step (killed, or under way):
  // the file ends in a footer naming the old index, followed in the index
  // section by the old footer and the append's bytes. It must read as the
  // old shard.
  const file = path.join(dir, 'ours-unfinished.des')
  const w = ShardWriter.create(file, { codec: 'zstd' })
  const files = {}
  // Bytes no codec shrinks: live data outweighs the index, so the append
  // goes in place (a shard mostly index would be compacted instead).
  const noise = (i) => Buffer.concat(Array.from({ length: 64 }, (_, j) => createHash('sha256').update(`${i}/${j}`).digest()))
  for (let i = 0; i < 4; i++) {
    const data = noise(i)
    await w.add(`u-${i}`, data)
    files[`u-${i}`] = sha(data)
  }
  await w.finish()
  const old = fs.readFileSync(file)
  const oldIndexAt = old.length - 12 - Number(old.readBigUInt64LE(old.length - 8))
  const a = await ShardWriter.append(file, { codec: 'zstd' })
  await a.add('u-lost', Buffer.from('never finished '.repeat(200)))
  await a.finish()
  const done = fs.readFileSync(file)
  // Step 2 part-way: the new bytes partly written, the pending footer just
  // past where the new shard ends, naming the old index.
  const unfinished = Buffer.alloc(done.length + 12)
  done.copy(unfinished, 0, 0, old.length + 100)
  unfinished.write('DESI', done.length, 'latin1')
  unfinished.writeBigUInt64LE(BigInt(done.length - oldIndexAt), done.length + 4)
  fs.writeFileSync(file, unfinished)
  expect['ours-unfinished.des'] = files
  fs.writeFileSync(path.join(dir, 'expect.json'), JSON.stringify(expect))
  console.log(`our writer: ${Object.keys(expect).length} shards`)
}

async function read(dir) {
  const expect = JSON.parse(fs.readFileSync(path.join(dir, 'expect.json'), 'utf8'))
  let bad = 0
  let checked = 0
  for (const [name, files] of Object.entries(expect)) {
    const file = path.join(dir, name)
    const r = await ShardReader.open(file)
    for (const [uid, want] of Object.entries(files)) {
      checked++
      const got = sha(await r.read(uid))
      if (got !== want) bad += console.log(`${name} ${uid}: sha256 ${got}, expected ${want}`) ?? 1
    }
    const report = await verifyShardFile(file)
    if (report.problems.length) bad += console.log(`${name}: verify ${JSON.stringify(report.problems)}`) ?? 1
    const a = await ShardWriter.append(file, { codec: 'zstd', bigFileThreshold: THRESHOLD })
    await a.add('added-by-ours', Buffer.from('added to a reference shard'))
    await a.finish()
    files['added-by-ours'] = sha(Buffer.from('added to a reference shard'))
  }
  fs.writeFileSync(path.join(dir, 'expect.json'), JSON.stringify(expect))
  console.log(`our reader: ${checked} entries in ${Object.keys(expect).length} shards, ${bad} mismatches`)
  process.exitCode = bad ? 1 : 0
}

const [mode, dir] = process.argv.slice(2)
;(mode === 'read' ? read : write)(dir).catch((err) => {
  console.error(err)
  process.exitCode = 1
})
