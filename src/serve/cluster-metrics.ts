// `/metrics` of `des serve --workers N` as one view of every worker. Each
// worker counts into its own registry; the worker a scrape lands on asks the
// primary, which collects all workers' registries with prom-client's
// AggregatorRegistry (counters and histogram buckets summed, des_build_info
// taken once) and sends the text back. Without workers the process's own
// registry is the whole view.

import { AggregatorRegistry } from 'prom-client'
import { registry, type MetricsSource } from '../metrics'
import { answerWorkers, askPrimary } from './primary-calls'

const REQUEST = 'des:metrics-request'
const ANSWER = 'des:metrics-answer'

export type { MetricsSource }

/** Primary: answers the workers' requests for the metrics of all workers. Call once, before forking. */
export function answerClusterMetrics(): void {
  const aggregator = new AggregatorRegistry()
  answerWorkers(REQUEST, ANSWER, () =>
    aggregator.clusterMetrics().then(
      (text) => ({ text }),
      (err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }),
    ),
  )
}

/**
 * Worker: the source its `/metrics` serves, the metrics of all workers by way
 * of the primary; also makes this worker answer the primary's collection.
 */
export function clusterMetricsSource(timeoutMs = 10_000): MetricsSource {
  AggregatorRegistry.setRegistries([registry])
  new AggregatorRegistry() // its constructor sets up this worker's answer to the primary
  const ask = askPrimary(REQUEST, ANSWER, timeoutMs, 'metrics of the other workers: the primary did not answer in time')
  return {
    contentType: registry.contentType,
    metrics: () =>
      ask({}).then((answer) => {
        if (answer.error !== undefined || typeof answer.text !== 'string') throw new Error(`metrics of the other workers: ${String(answer.error ?? 'no answer')}`)
        return answer.text
      }),
  }
}
