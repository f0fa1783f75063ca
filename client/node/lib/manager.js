// What the three managers share: how they get their Client, and the check
// that a keyPrefix option names the daemon's own prefix.

import { Client } from './client.js';
import { KeyPrefixError } from './errors.js';
import { isPlainObject } from './options.js';

const CLIENT_OPTIONS = ['socket', 'clientName', 'timeout', 'bigNumbers', 'maxInflight',
  'maxRequestBytes', 'maxReplyBytes', 'reconnectDelay', 'reconnectMaxDelay'];

// (client, options), (null, options), (options) or (): a Client from
// createClient is shared; without one the manager makes its own from the
// options' connection settings and owns it (its close() closes it).
// configure(options) checks the manager's own options and returns its
// settings; it runs first, so options it refuses leave no Client behind.
export function attach(client, options, configure) {
  if (isPlainObject(client) && options === undefined) {
    options = client;
    client = undefined;
  }
  const shared = client instanceof Client;
  if (!shared && client !== undefined && client !== null) {
    throw new TypeError('expected a Client from createClient() (or nothing, or options) as the first argument');
  }
  options = options ?? {};
  const settings = configure(options);
  if (shared) return { client, settings, owned: false };
  const clientOptions = {};
  for (const k of CLIENT_OPTIONS) if (options[k] !== undefined) clientOptions[k] = options[k];
  return { client: new Client(clientOptions), settings, owned: true };
}

// Key prefixes are the daemon's configuration, not a request's argument: a
// keyPrefix option is a claim about where the keys go, checked against the
// prefix the daemon's hello reported. A precheck runs as each request is
// sent, on the layout (and server name) of the connection it goes out on.
export function prefixCheck(keyPrefix, directive) {
  if (keyPrefix === undefined) return undefined;
  if (typeof keyPrefix !== 'string') throw new TypeError('keyPrefix must be a string');
  let seen;
  let verdict = null;
  return (layout, server) => {
    if (layout !== seen) {
      seen = layout;
      if (!layout || typeof layout[directive] !== 'string') {
        verdict = `keyPrefix "${keyPrefix}" cannot be checked: ${server || 'the daemon'} does not report its ${directive} (its hello has no layout); leave keyPrefix unset and set ${directive} in fmredisd.conf`;
      } else if (layout[directive] !== keyPrefix) {
        verdict = `keyPrefix "${keyPrefix}" is not the daemon's ${directive} "${layout[directive]}": key prefixes are fmredisd's configuration, so set "${directive} ${keyPrefix}" in fmredisd.conf (and reload it), or drop the keyPrefix option`;
      } else {
        verdict = null;
      }
    }
    return verdict === null ? null : new KeyPrefixError(verdict);
  };
}
