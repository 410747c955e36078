// Calls from a worker of `des serve --workers N` to its primary, over the
// cluster's IPC channel: the worker sends `{type: ask, id, ...query}`, the
// primary answers `{type: answer, id, ...answer}`. Used for what only the
// primary can answer for all workers (the cluster's metrics, the nonces and
// rate windows of signed requests).

import cluster from 'node:cluster'

type Message = Record<string, unknown> & { type?: unknown; id?: unknown }

/** Primary: answers each worker's `ask` with what `answer` gives for it. Call once, before forking. */
export function answerWorkers(ask: string, answerType: string, answer: (query: Message) => Record<string, unknown> | Promise<Record<string, unknown>>): void {
  cluster.on('message', (worker, message: Message) => {
    if (message?.type !== ask || typeof message.id !== 'number') return
    const id = message.id
    void Promise.resolve(answer(message)).then((body) => {
      if (worker.isConnected()) worker.send({ ...body, type: answerType, id })
    })
  })
}

/**
 * Worker: a function that asks the primary and resolves with its answer
 * message; rejects with `timeoutMessage` when none comes in `timeoutMs`.
 */
export function askPrimary(ask: string, answerType: string, timeoutMs: number, timeoutMessage: string): (query: Record<string, unknown>) => Promise<Message> {
  const pending = new Map<number, { resolve(m: Message): void; timer: NodeJS.Timeout }>()
  let next = 0
  process.on('message', (message: Message) => {
    if (message?.type !== answerType || typeof message.id !== 'number') return
    const waiting = pending.get(message.id)
    if (!waiting) return
    pending.delete(message.id)
    clearTimeout(waiting.timer)
    waiting.resolve(message)
  })
  return (query) =>
    new Promise<Message>((resolve, reject) => {
      const id = next++
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new Error(timeoutMessage))
      }, timeoutMs)
      timer.unref()
      pending.set(id, { resolve, timer })
      process.send!({ ...query, type: ask, id })
    })
}
