// What `des convert` takes from the environment besides the store (env.ts):
// the test-only fault switch. Like env.ts, the only place it reads process.env.

import { DesError } from '../errors'

type Env = Record<string, string | undefined>

/** Points of a conversion where a test may have the process kill itself (SIGKILL), to prove a rerun finishes. */
export const CONVERT_FAULT_POINTS = ['convert-after-pack', 'convert-mid-delete'] as const
export type ConvertFaultPoint = (typeof CONVERT_FAULT_POINTS)[number]

/** `DES_TEST_FAULT` for `des convert` (tests only); another command's point is not ours and is ignored. */
export function loadConvertEnv(env: Env = process.env): { fault?: ConvertFaultPoint } {
  const raw = env.DES_TEST_FAULT?.trim()
  if (!raw || !raw.startsWith('convert-')) return {}
  if (!(CONVERT_FAULT_POINTS as readonly string[]).includes(raw)) {
    throw new DesError('DES_CONFIG', `DES_TEST_FAULT=${JSON.stringify(raw)} is invalid: expected one of ${CONVERT_FAULT_POINTS.join(', ')}`)
  }
  return { fault: raw as ConvertFaultPoint }
}
