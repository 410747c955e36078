// Why a server could not listen, as the bad setting it is: `des serve`'s
// port and host, `des migrate`'s metrics port.

import { DesError } from '../errors'

const UNRESOLVED_HOST = new Set(['ENOTFOUND', 'EAI_NONAME', 'EAI_FAIL', 'EAI_AGAIN'])

/** The flag or variable that set each, for the message. */
export interface ListenSettings {
  host: string
  port: string
}

const SERVE_SETTINGS: ListenSettings = { host: '--host or DES_HOST', port: '--port or DES_PORT' }

/**
 * A listen error as a bad argument (exit 2, naming the setting): a host
 * that does not resolve or is not this machine's, a port taken or reserved.
 * Left as they are, ENOTFOUND would read as storage unreachable (exit 6) and
 * the others as a bug (exit 1). Any other error is returned as it is.
 */
export function listenError(err: unknown, host: string, port: number, names: ListenSettings = SERVE_SETTINGS): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code ?? ''
  let why: string | undefined
  if (UNRESOLVED_HOST.has(code)) why = `the host ${JSON.stringify(host)} does not resolve to an address (${names.host})`
  else if (code === 'EADDRNOTAVAIL') why = `${JSON.stringify(host)} is not an address of this machine (${names.host})`
  else if (code === 'EADDRINUSE') why = `port ${port} is in use by another process (${names.port})`
  else if (code === 'EACCES') why = `port ${port} needs privileges this process does not have (${names.port})`
  return why === undefined ? err : new DesError('DES_BAD_ARG', `cannot listen on ${host}:${port}: ${why}`, { cause: err })
}
