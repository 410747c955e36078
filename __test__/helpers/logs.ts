// A pino logger whose JSON lines the test can read, and wait for (no sleeps:
// a wait resolves when the line it asks for is written).

import { Writable } from 'node:stream'
import pino, { type Logger } from 'pino'

export type LogLine = Record<string, any>

export interface CapturedLogs {
  logger: Logger
  lines: LogLine[]
  /** The first line (written so far or later) that `match` accepts. */
  waitFor(match: (line: LogLine) => boolean): Promise<LogLine>
}

export function captureLogs(level: pino.Level = 'info'): CapturedLogs {
  const lines: LogLine[] = []
  const waiting: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const text of chunk.toString().split('\n').filter(Boolean)) {
        const line = JSON.parse(text) as LogLine
        lines.push(line)
        for (let i = waiting.length - 1; i >= 0; i--) {
          if (waiting[i].match(line)) waiting.splice(i, 1)[0].resolve(line)
        }
      }
      cb()
    },
  })
  return {
    logger: pino({ level }, sink),
    lines,
    waitFor: (match) => {
      const seen = lines.find(match)
      return seen ? Promise.resolve(seen) : new Promise((resolve) => waiting.push({ match, resolve }))
    },
  }
}
