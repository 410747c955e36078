// `/metrics` of `des serve --workers N` as one view of every worker. Each
// worker counts into its own registry; the worker a scrape lands on asks the
// primary, which collects all workers' registries with prom-client's
// AggregatorRegistry (counters and histogram buckets summed, des_build_info
// taken once) and sends the text back. Without workers the process's own
// registry is the whole view.

import cluster from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import { registry, type MetricsSource } from '../metrics'

const REQUEST = 'des:metrics-request'
const ANSWER = 'des:metrics-answer'

export type { MetricsSource }

interface Answer {
  type: typeof ANSWER
  id: number
  text?: string
  error?: string
}

/** Primary: answers the workers' requests for the metrics of all workers. Call once, before forking. */
export function answerClusterMetrics(): void {
  const aggregator = new AggregatorRegistry()
  cluster.on('message', (worker, message: { type?: unknown; id?: unknown }) => {
    if (message?.type !== REQUEST || typeof message.id !== 'number') return
    const id = message.id
    const reply = (answer: Omit<Answer, 'type' | 'id'>) => {
      if (worker.isConnected()) worker.send({ type: ANSWER, id, ...answer })
    }
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) }),
    )
  })
}

/**
 * Worker: the source its `/metrics` serves, the metrics of all workers by way
 * of the primary; also makes this worker answer the primary's collection.
 */
export function clusterMetricsSource(timeoutMs = 10_000): MetricsSource {
  AggregatorRegistry.setRegistries([registry])
  new AggregatorRegistry() // its constructor sets up this worker's answer to the primary
  const pending = new Map<number, { resolve(text: string): void; reject(err: Error): void; timer: NodeJS.Timeout }>()
  let next = 0
  process.on('message', (message: Partial<Answer>) => {
    if (message?.type !== ANSWER || typeof message.id !== 'number') return
    const waiting = pending.get(message.id)
    if (!waiting) return
    pending.delete(message.id)
    clearTimeout(waiting.timer)
    if (message.error !== undefined || typeof message.text !== 'string') waiting.reject(new Error(`metrics of the other workers: ${message.error ?? 'no answer'}`))
    else waiting.resolve(message.text)
  })
  return {
    contentType: registry.contentType,
    metrics: () =>
      new Promise<string>((resolve, reject) => {
        const id = next++
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(new Error('metrics of the other workers: the primary did not answer in time'))
        }, timeoutMs)
        timer.unref()
        pending.set(id, { resolve, reject, timer })
        process.send!({ type: REQUEST, id })
      }),
  }
}
