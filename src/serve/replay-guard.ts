// The state of signed requests that must be shared by every process serving
// them: nonces seen in the last 10 minutes (a replay is refused) and each
// key's requests in the last hour (max_requests_per_hour). The original keeps
// both in its one process; `des serve --workers N` keeps them in the primary
// and each worker asks it (one IPC round trip per signed request), so a
// replay sent to another worker is refused too. With one worker the guard
// is in-process.
//
// Memory is bounded: nonces expire after 10 minutes, at most `maxNonces` are
// held, and when that many are live a new one is refused (never forgotten
// early: a forgotten nonce could be replayed). A key's window holds at most
// its limit of times.

import { answerWorkers, askPrimary } from './primary-calls'

/** How long a nonce is remembered (the original's _NONCE_TTL). */
export const NONCE_TTL_MS = 10 * 60_000
/** The window of max_requests_per_hour (the original's _RATE_LIMIT_WINDOW). */
export const RATE_WINDOW_MS = 60 * 60_000

export interface Admission {
  /** The nonce was seen in the last 10 minutes. */
  replayed: boolean
  /** No room for another nonce: refused rather than forgetting a live one. */
  full: boolean
  /** The key used up its requests of the last hour. */
  rateLimited: boolean
}

export interface AdmitQuery {
  /** A digest of the nonce (what is kept: a fixed size whatever the client sent). */
  nonce: string
  /** Whose rate window: the key's fingerprint. */
  fingerprint: string
  /** The key's max_requests_per_hour, if any. */
  limit?: number
  nowMs: number
  /**
   * Record the nonce and the request when admitted. False for a request whose
   * signature did not verify: it is answered by the same checks, in the same
   * order, but uses up neither a nonce nor a slot of the key's hour.
   */
  commit: boolean
}

/** Where admissions are decided: this process (ReplayGuard) or the primary (clusterReplayGuard). */
export interface Admitter {
  admit(query: AdmitQuery): Admission | Promise<Admission>
}

/** Times in arrival order, dropped from the front as they leave the window. */
class TimeQueue {
  private times: number[] = []
  private head = 0

  get length(): number {
    return this.times.length - this.head
  }

  dropBefore(cutoff: number): void {
    while (this.head < this.times.length && this.times[this.head] < cutoff) this.head++
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head)
      this.head = 0
    }
  }

  push(t: number): void {
    this.times.push(t)
  }
}

/** Nonces and rate windows held in this process. */
export class ReplayGuard implements Admitter {
  /** Nonce digest → when it was first seen; insertion order is (nearly) time order. */
  private readonly nonces = new Map<string, number>()
  private readonly windows = new Map<string, TimeQueue>()

  constructor(private readonly maxNonces: number) {}

  /** Nonces held now (for tests and the log). */
  get size(): number {
    return this.nonces.size
  }

  admit(q: AdmitQuery): Admission {
    const nonceCutoff = q.nowMs - NONCE_TTL_MS
    for (const [nonce, seen] of this.nonces) {
      if (seen >= nonceCutoff) break
      this.nonces.delete(nonce)
    }
    const none = { replayed: false, full: false, rateLimited: false }
    if (this.nonces.has(q.nonce)) return { ...none, replayed: true }
    if (this.nonces.size >= this.maxNonces) return { ...none, full: true }
    let window: TimeQueue | undefined
    if (q.limit !== undefined) {
      window = this.windows.get(q.fingerprint)
      if (!window) this.windows.set(q.fingerprint, (window = new TimeQueue()))
      window.dropBefore(q.nowMs - RATE_WINDOW_MS)
      if (window.length >= q.limit) return { ...none, rateLimited: true }
    }
    if (q.commit) {
      this.nonces.set(q.nonce, q.nowMs)
      window?.push(q.nowMs)
    }
    return none
  }
}

const ASK = 'des:replay-ask'
const ANSWER = 'des:replay-answer'

/** Primary: answers every worker's admissions from one guard. Call once, before forking. */
export function answerReplayChecks(guard: ReplayGuard): void {
  answerWorkers(ASK, ANSWER, (query) => ({ ...guard.admit(query as unknown as AdmitQuery) }))
}

/** Worker: admissions decided by the primary. No answer in `timeoutMs` rejects (the request fails, never passes). */
export function clusterReplayGuard(timeoutMs = 5_000): Admitter {
  const ask = askPrimary(ASK, ANSWER, timeoutMs, 'signed request: the primary did not answer the replay check in time')
  return {
    admit: (query) =>
      ask({ ...query }).then((a) => ({ replayed: a.replayed === true, full: a.full === true, rateLimited: a.rateLimited === true })),
  }
}
