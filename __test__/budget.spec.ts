// The packer's budgets: inputs in hand, writers at once (src/budget.ts).

import test from 'ava'
import { Budget } from '../src/budget'

test('units are taken while they fit, later takers wait in order, and one larger than the budget takes all of it', async (t) => {
  const budget = new Budget(10)
  const order: string[] = []
  const a = await budget.take(6)
  const b = await budget.take(4)
  // Full: these wait, in the order they asked.
  const c = budget.take(3).then((release) => (order.push('c'), release))
  const d = budget.take(50).then((release) => (order.push('d'), release))
  const e = budget.take(1).then((release) => (order.push('e'), release))
  // Every promise that could settle now has settled once the event loop turns.
  await new Promise((turn) => setImmediate(turn))
  t.deepEqual(order, [])
  a()
  a() // released once only
  const releaseC = await c
  t.deepEqual(order, ['c'])
  b()
  releaseC()
  // d wants more than the whole budget: it gets all 10, once everything is back.
  const releaseD = await d
  t.deepEqual(order, ['c', 'd'])
  releaseD()
  ;(await e)()
  t.deepEqual(order, ['c', 'd', 'e'])
})
