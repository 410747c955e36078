#!/usr/bin/env node
// Writes a small sample corpus and its manifest: node scripts/make-sample.js DIR [COUNT]
// Files are invoice-like JSON, plain text and a few incompressible "scans".
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')

const dir = path.resolve(process.argv[2] || '.des-demo')
const count = Number(process.argv[3] || 300)
const input = path.join(dir, 'input')
fs.mkdirSync(input, { recursive: true })

const manifest = []
for (let i = 0; i < count; i++) {
  const day = 1 + (i % 3)
  const createdAt = `2024-03-0${day}T${String(8 + (i % 10)).padStart(2, '0')}:15:00Z`
  let uid
  let data
  if (i % 10 === 9) {
    uid = `scan-${i}.png`
    data = crypto.randomBytes(2000 + (i % 7) * 1000)
  } else if (i % 3 === 0) {
    uid = String(100000 + i)
    data = Buffer.from(`Dear customer ${i},\n` + 'thank you for your order. '.repeat(20 + (i % 30)))
  } else {
    uid = `invoice-${i}.json`
    const items = Array.from({ length: 3 + (i % 8) }, (_, k) => ({ sku: `SKU-${(i * 7 + k) % 997}`, qty: 1 + (k % 4), price: 9.99 + k }))
    data = Buffer.from(JSON.stringify({ invoice: `INV-${i}`, customer: `C-${i % 50}`, items }, null, 2))
  }
  const file = path.join(input, uid)
  fs.writeFileSync(file, data)
  manifest.push({ uid, created_at: createdAt, size_bytes: data.length, source_path: file })
}
fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1))
console.log(path.join(dir, 'manifest.json'))
