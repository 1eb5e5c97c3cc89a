// TLS material for the NBD tests, made with openssl: a CA, a server certificate for localhost
// and 127.0.0.1, a client certificate, and a PSK file with user alice. Laid out as QEMU's
// tls-creds objects read them: srv/ (endpoint=server), cli/ (endpoint=client), psk/keys.psk.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runOk } from '../helpers/oracle.js'

export interface TlsMaterial {
  /** ca-cert.pem, server-cert.pem, server-key.pem */
  serverDir: string
  /** ca-cert.pem, client-cert.pem, client-key.pem */
  clientDir: string
  /** keys.psk (alice) */
  pskDir: string
  /** A second CA's directory that trusts none of the above. */
  strangerDir: string
}

export async function makeTlsMaterial(dir: string): Promise<TlsMaterial> {
  const at = (name: string) => join(dir, name)
  for (const d of ['srv', 'cli', 'psk', 'stranger']) mkdirSync(at(d))
  const ssl = (args: string[]) => runOk('openssl', args)
  const ca = async (key: string, cert: string, cn: string) => ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`])
  await ca(at('ca-key.pem'), at('srv/ca-cert.pem'), 'qimg test CA')
  await ca(at('stranger-key.pem'), at('stranger/ca-cert.pem'), 'another CA')
  await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('srv/server-key.pem'), '-out', at('srv.csr'), '-subj', '/CN=localhost'])
  writeFileSync(at('ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  await ssl(['x509', '-req', '-in', at('srv.csr'), '-CA', at('srv/ca-cert.pem'), '-CAkey', at('ca-key.pem'), '-CAcreateserial', '-out', at('srv/server-cert.pem'), '-days', '2', '-extfile', at('ext')])
  await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('cli/client-key.pem'), '-out', at('cli.csr'), '-subj', '/CN=client'])
  await ssl(['x509', '-req', '-in', at('cli.csr'), '-CA', at('srv/ca-cert.pem'), '-CAkey', at('ca-key.pem'), '-CAcreateserial', '-out', at('cli/client-cert.pem'), '-days', '2'])
  writeFileSync(at('cli/ca-cert.pem'), await runOk('cat', [at('srv/ca-cert.pem')]))
  writeFileSync(at('psk/keys.psk'), `alice:${(await ssl(['rand', '-hex', '32'])).trim()}\n`)
  return { serverDir: at('srv'), clientDir: at('cli'), pskDir: at('psk'), strangerDir: at('stranger') }
}
