// The package as a dependency sees it: an `exports` map (only the entry
// point, its types and package.json; deep imports refused), the entry point
// loadable by require and by import, every type a public signature uses
// exported beside it, TSDoc on every public member, a LICENSE that says what
// package.json says. The public API is read with the TypeScript compiler from
// src/index.ts; the rest runs the built dist/ (needs `npx tsc` first).

import test from 'ava'
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { promisify } from 'node:util'
import ts from 'typescript'
import { ROOT } from './helpers/golden'

const run = promisify(execFile)
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))

test('package.json: an exports map to the entry point and its types, license MIT with a LICENSE file, a repository', (t) => {
  t.deepEqual(Object.keys(pkg.exports).sort(), ['.', './package.json'])
  const entry = pkg.exports['.']
  t.is(entry.types, './dist/index.d.ts')
  t.is(entry.default, './dist/index.js')
  t.is(pkg.main, 'dist/index.js', 'main kept for tools that do not read exports')
  t.is(pkg.types, 'dist/index.d.ts')
  for (const target of [entry.types, entry.require ?? entry.default, entry.default]) t.true(fs.existsSync(path.join(ROOT, target)), `${target} is built`)
  t.is(pkg.license, 'MIT')
  const license = fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8')
  t.regex(license, /^MIT License\n\nCopyright \(c\) \d{4}/)
  t.regex(license, /THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND/)
  t.is(pkg.repository?.type, 'git')
  t.regex(pkg.repository?.url ?? '', /^git\+https:\/\/github\.com\/[^/]+\/[^/]+\.git$/)
})

test('the entry point loads by require and by import; deep imports are refused', async (t) => {
  // A package may import itself by name once it has an exports map.
  const script = `
    const des = require('${pkg.name}')
    if (des.locateShard('invoice-17.json', '2024-03-02T09:15:00Z').dateDir !== '20240302') process.exit(3)
    for (const name of ['ShardReader', 'ShardWriter', 'DesError', 'exitCode', 'PayloadCache']) if (!des[name]) { console.error('missing ' + name); process.exit(4) }
    try { require('${pkg.name}/dist/native.js'); process.exit(5) } catch (err) { if (err.code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw err }
    console.log(require('${pkg.name}/package.json').version)`
  const cjs = await run(process.execPath, ['-e', script], { cwd: ROOT })
  t.is(cjs.stdout.trim(), pkg.version)
  const esm = await run(process.execPath, ['--input-type=module', '-e', `import { locateShard, ShardReader } from '${pkg.name}'; console.log(typeof ShardReader.open, locateShard('1', '2024-01-01T00:00:00Z').dateDir)`], { cwd: ROOT })
  t.is(esm.stdout.trim(), 'function 20240101')
})

/** The program of src/index.ts, its checker, and the symbols it exports (aliases resolved). */
function publicApi() {
  const program = ts.createProgram([path.join(ROOT, 'src', 'index.ts')], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    strict: true,
    esModuleInterop: true,
    skipLibCheck: true,
    types: ['node'],
  })
  const checker = program.getTypeChecker()
  const entry = program.getSourceFile(path.join(ROOT, 'src', 'index.ts'))!
  const resolve = (s: ts.Symbol) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s)
  const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(entry)!)
  const exported = new Set(exports.map(resolve))
  // `export type EntryInfo = Native.EntryInfo` exports the generated interface under that name.
  const aliased = new Map<ts.Symbol, ts.Symbol>()
  for (const s of [...exported]) {
    for (const d of s.declarations ?? []) {
      if (!ts.isTypeAliasDeclaration(d) || !ts.isTypeReferenceNode(d.type)) continue
      const target = checker.getSymbolAtLocation(ts.isQualifiedName(d.type.typeName) ? d.type.typeName.right : d.type.typeName)
      if (target) {
        exported.add(resolve(target))
        aliased.set(s, resolve(target))
      }
    }
  }
  return { checker, exports, resolve, exported, aliased }
}

const isOurs = (decl: ts.Declaration) => {
  const file = decl.getSourceFile().fileName
  return file.startsWith(ROOT) && !file.includes('node_modules')
}

const internal = (node: ts.Node) => ts.getJSDocTags(node).some((tag) => tag.tagName.text === 'internal')

/** Members a user of a class can reach: not private, protected, #private or @internal. */
function publicMembers(decl: ts.ClassDeclaration): ts.ClassElement[] {
  return decl.members.filter((m) => {
    const mods = ts.canHaveModifiers(m) ? (ts.getModifiers(m) ?? []) : []
    if (mods.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword || x.kind === ts.SyntaxKind.ProtectedKeyword)) return false
    if (m.name && ts.isPrivateIdentifier(m.name)) return false
    return !internal(m)
  })
}

test('every export of the package and every public member has TSDoc', (t) => {
  const { checker, exports, resolve } = publicApi()
  t.true(exports.length >= 15, `${exports.length} exports`)
  const missing: string[] = []
  const documented = (node: ts.Node, sym?: ts.Symbol) => {
    if (sym && ts.displayPartsToString(sym.getDocumentationComment(checker)).trim() !== '') return true
    return ts.getJSDocCommentsAndTags(node).length > 0
  }
  for (const e of exports) {
    const sym = resolve(e)
    for (const decl of sym.declarations ?? []) {
      if (!isOurs(decl)) continue
      // An alias of a generated type (`type EntryInfo = Native.EntryInfo`) may carry the docs of what it names.
      let ok = documented(decl, sym)
      if (!ok && ts.isTypeAliasDeclaration(decl) && ts.isTypeReferenceNode(decl.type)) {
        const target = checker.getSymbolAtLocation(decl.type.typeName)
        ok = target !== undefined && documented(decl.type, resolve(target))
      }
      if (!ok) missing.push(e.name)
      if (ts.isClassDeclaration(decl)) {
        for (const m of publicMembers(decl)) {
          if (ts.isConstructorDeclaration(m) || !m.name) continue
          const msym = checker.getSymbolAtLocation(m.name)
          if (!documented(m, msym)) missing.push(`${e.name}.${m.name.getText()}`)
        }
      }
    }
  }
  t.deepEqual(missing, [], 'exports and public members without TSDoc')
})

test('every type a public signature uses is exported by the package too', (t) => {
  const { checker, exports, resolve, exported, aliased } = publicApi()
  const unexported = new Set<string>()
  const visit = (node: ts.Node, where: string) => {
    if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node)) {
      const name = ts.isTypeReferenceNode(node) ? node.typeName : node.expression
      const s = checker.getSymbolAtLocation(ts.isQualifiedName(name) ? name.right : name)
      const target = s && resolve(s)
      if (target && !(target.flags & ts.SymbolFlags.TypeParameter) && (target.declarations ?? []).some(isOurs) && !exported.has(target)) {
        unexported.add(`${name.getText()} (in ${where})`)
      }
    }
    ts.forEachChild(node, (c) => visit(c, where))
  }
  for (const e of exports) {
    const sym = resolve(e)
    const target = aliased.get(sym)
    for (const decl of [...(sym.declarations ?? []), ...(target?.declarations ?? [])]) {
      if (!isOurs(decl)) continue
      if (ts.isClassDeclaration(decl)) {
        for (const clause of decl.heritageClauses ?? []) visit(clause, e.name)
        for (const m of publicMembers(decl)) {
          // A constructor's parameter properties are members; its body is not a signature.
          if (ts.isConstructorDeclaration(m) || ts.isMethodDeclaration(m) || ts.isGetAccessor(m) || ts.isSetAccessor(m)) {
            for (const p of m.parameters) if (!(ts.getModifiers(p) ?? []).some((x) => x.kind === ts.SyntaxKind.PrivateKeyword)) visit(p, e.name)
            if (m.type) visit(m.type, e.name)
          } else if (ts.isPropertyDeclaration(m) && m.type) visit(m.type, e.name)
        }
      } else if (ts.isFunctionDeclaration(decl)) {
        for (const p of decl.parameters) visit(p, e.name)
        if (decl.type) visit(decl.type, e.name)
      } else if (ts.isInterfaceDeclaration(decl) || ts.isTypeAliasDeclaration(decl)) {
        ts.forEachChild(decl, (c) => {
          if (c !== decl.name) visit(c, e.name)
        })
      }
    }
  }
  t.deepEqual([...unexported].sort(), [], 'types in public signatures that the package does not export')
})
