// Test harness only: starts panva/oidc-provider on 127.0.0.1 for bffgate's
// integration tests (internal/panva starts it). Never a production provider.
//
// Usage: node launcher.js CONFIG.json   (or the JSON in $PANVA_CONFIG)
//
// {
//   "fapi2": false,             // features.fapi profile 2.0
//   "requireDPoPNonce": false,  // every DPoP request must carry a server nonce
//   "requirePAR": false,        // require_pushed_authorization_requests for every client
//   "accessTokenTTL": 300,      // seconds
//   "clients": [ { ...oidc-provider client metadata... } ],
//   "port": 0,                  // listen port on 127.0.0.1; 0: any free one
//   "issuerHost": "127.0.0.1",  // host name in the issuer URL (e.g. localhost)
//   "roles": {"admin": ["admin", "user"], "*": ["user"]}
//                               // optional: a "roles" claim in access tokens
//                               // (introspection shows it), by login name
// }
//
// It listens, then prints one line to stdout:
//   {"issuer":"http://127.0.0.1:PORT"}
//
// Logins go through devInteractions (any login name, any password):
//   GET  /interaction/:uid            the login form
//   POST /interaction/:uid            prompt=login&login=NAME&password=X
// Consent is skipped (loadExistingGrant grants what was asked).
//
// A test-only endpoint shows what a token is bound to, since access tokens
// are opaque: GET /_test/token?value=TOKEN -> {"active":..,"jkt":..,"sub":..}

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const raw = process.argv[2] ? fs.readFileSync(process.argv[2], 'utf8') : process.env.PANVA_CONFIG;
if (!raw) {
  console.error('usage: node launcher.js CONFIG.json (or PANVA_CONFIG)');
  process.exit(2);
}
const cfg = JSON.parse(raw);

function signingKeys() {
  const jwk = (kp, extra) => ({ ...kp.privateKey.export({ format: 'jwk' }), ...extra });
  return [
    jwk(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }), { kid: 'es256', alg: 'ES256', use: 'sig' }),
    jwk(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }), { kid: 'rs256', alg: 'RS256', use: 'sig' }),
    jwk(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }), { kid: 'ps256', alg: 'PS256', use: 'sig' }),
    jwk(crypto.generateKeyPairSync('ed25519'), { kid: 'eddsa', alg: 'EdDSA', use: 'sig' }),
  ];
}

const clients = (cfg.clients || []).map((c) => ({
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
  response_types: ['code'],
  ...(cfg.requirePAR ? { require_pushed_authorization_requests: true } : {}),
  ...c,
}));

const configuration = {
  clients,
  jwks: { keys: signingKeys() },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'api'],
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, email_verified: true, name: id };
      },
    };
  },
  // Refresh tokens whenever the client may use the grant: without this,
  // offline_access is dropped unless the request also has prompt=consent.
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  ...(cfg.roles ? {
    // Services authorize by role (bffgate's demo): the roles of the login
    // name, else those of "*".
    async extraTokenClaims(_ctx, token) {
      if (!token.accountId) return undefined;
      return { roles: cfg.roles[token.accountId] || cfg.roles['*'] || [] };
    },
  } : {}),
  // Grant what the request asked for, so no consent page comes up.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' ') || 'openid');
    grant.addOIDCClaims(['sub', 'email', 'email_verified', 'name']);
    await grant.save();
    return grant;
  },
  pkce: { required: () => true },
  ttl: {
    AccessToken: cfg.accessTokenTTL || 300,
    ClientCredentials: cfg.accessTokenTTL || 300,
  },
  features: {
    devInteractions: { enabled: true },
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: !!cfg.requirePAR },
    dPoP: {
      enabled: true,
      nonceSecret: crypto.randomBytes(32),
      requireNonce: () => !!cfg.requireDPoPNonce,
    },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    clientCredentials: { enabled: true },
    ...(cfg.fapi2 ? { fapi: { enabled: true, profile: '2.0' } } : {}),
  },
  enabledJWA: {
    idTokenSigningAlgValues: ['ES256', 'PS256', 'RS256', 'EdDSA'],
    clientAuthSigningAlgValues: ['ES256', 'PS256', 'RS256', 'EdDSA'],
    dPoPSigningAlgValues: ['ES256', 'EdDSA'],
  },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
  // The default fetch refuses loopback and private addresses (SSRF guard);
  // the gateway under test (jwks_uri, back-channel logout) is on 127.0.0.1.
  fetch: (url, options) => {
    const { dispatcher: _ignored, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
};

const server = http.createServer();
server.on('error', (err) => {
  console.error(`listen: ${err.message}`);
  process.exit(1);
});
server.listen(cfg.port || 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://${cfg.issuerHost || '127.0.0.1'}:${port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  provider.on('backchannel.error', (_client, err) => console.error('backchannel.error', err.message));
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    if (req.url.startsWith('/_test/token?')) {
      const value = new URL(req.url, issuer).searchParams.get('value');
      const token = value && await provider.AccessToken.find(value)
        || value && await provider.ClientCredentials.find(value);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(token ? {
        active: true, jkt: token.jkt || '', sub: token.accountId || '', client_id: token.clientId, scope: token.scope,
      } : { active: false }));
      return;
    }
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
