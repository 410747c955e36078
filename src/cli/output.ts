// Writing to stdout with back-pressure, so listing a million entries keeps memory flat.

import { once } from 'node:events'

/** Writes text to stdout, waiting when the pipe is full. */
export async function writeOut(text: string | Buffer): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain')
}

/**
 * Text for one line of stderr: its control characters (a newline in a
 * database value or an S3 key) written as escapes, so that a value cannot
 * end the line and forge the next one. C1 controls and U+2028/9 too: NEL and
 * the separators end a line for some readers of logs, CSI starts a terminal's
 * escape; JSON leaves them (and DEL) as they are.
 */
export function oneLine(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => {
    const short = JSON.stringify(c).slice(1, -1)
    return short !== c ? short : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
  })
}
