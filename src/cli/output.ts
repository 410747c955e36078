// Writing to stdout with back-pressure, so listing a million entries keeps memory flat.

import { once } from 'node:events'

/** Writes text to stdout, waiting when the pipe is full. */
export async function writeOut(text: string | Buffer): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain')
}
