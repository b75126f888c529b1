// cedargate test IdP: a real OpenID provider (oidc-provider, pinned in package.json), on loopback
// by default. TEST-ONLY. Never expose it: the login form accepts any password (devInteractions).
//
// Usage:
//   node idp/idp.mjs --port 9400 --keys idp/keys/demo-keys.json
//   (env fallbacks: IDP_HOST, IDP_PORT, IDP_ISSUER, IDP_KEYS, IDP_AUDIENCE, IDP_ACCESS_TOKEN_TTL)
//
//   --host ADDR             bind address (default 127.0.0.1). Any non-loopback address exposes
//                           the any-password login: only on an isolated network (docker-compose.yml
//                           binds 0.0.0.0 inside the compose network).
//   --port N                listening port (default 9400). `--port 0` picks a free port.
//   --issuer URL            the issuer to announce (discovery `issuer`, token `iss`), an origin
//                           only: scheme://host[:port], no path, no trailing slash. Default
//                           http://127.0.0.1:<port actually bound>, so with `--port 0` the ready
//                           line names the real port. An explicit issuer is announced as given
//                           (it is the name clients reach this IdP by, e.g. http://idp:9400 in
//                           docker-compose.yml), whatever --host/--port are.
//   --keys FILE             JSON `{"keys":[<private JWKs>]}` (make keys with idp/keys/gen-key.mjs).
//                           The FIRST key signs everything (access tokens pin its kid); every key
//                           is published at the JWKS endpoint.
//   --audience URL          default resource / `aud` of access tokens (https://api.cedargate.test).
//   --access-token-ttl S    access token lifetime in seconds (default 3600).
//
// stdout (machine-readable, one line each):
//   idp listening on <issuer>                once, when the provider is ready
//                                            (http://127.0.0.1:N unless --issuer is given)
//   jwks_request count=N                     per request to the JWKS endpoint (/jwks)
//   introspection_request count=N            per request to the introspection endpoint
//   keys_reloaded signing=KID published=K1,K2   after a key reload (see below)
// Everything else (oidc-provider's warnings, the Node 20 "unsupported runtime" notice) goes to stderr.
//
// Test endpoints (not part of OIDC):
//   GET  /test/jwks-hits          -> {"hits": N}   JWKS requests served since start (or reset)
//   POST /test/jwks-hits/reset    -> {"hits": 0}
//   GET  /test/introspection-hits -> {"hits": N}   introspection requests served since start
//   POST /test/reload-keys        -> same as SIGHUP, answers once the new keys are in force
//
// KEY ROTATION. Two ways, both keep the issuer and port:
//   1. Restart the IdP with a new keys file (sessions/grants are lost; issued JWTs stay verifiable
//      as long as their key is still published).
//   2. Rewrite the keys file in place and send SIGHUP (or POST /test/reload-keys). The file is
//      re-read and a fresh Provider built from it replaces the old one atomically; in-flight
//      sessions and grants survive (the in-memory adapter's storage is process-wide, cookie
//      signing keys are fixed). A file that fails to load leaves the old keys in force.
//   Safe rotation, as a relying party expects it:
//      step 1  keys = [OLD, NEW]   NEW is published but OLD still signs
//      step 2  keys = [NEW, OLD]   NEW signs; OLD stays published until its tokens expire
//      step 3  keys = [NEW]        OLD retired
//   Jumping straight to [NEW] makes new-kid tokens appear before any verifier could have seen NEW
//   in the JWKS: a verifier must then refetch on unknown kid (rate-limited), which is exactly what
//   that case is for testing.
//
// Clients (static, see CLIENTS below): orders-service / orders-service-secret and
// reporting-service / reporting-service-secret (client_credentials), webapp (public client,
// authorization code + PKCE S256, redirect http://127.0.0.1:1/callback), cedargate-sso /
// cedargate-sso-secret (cedargate's browser SSO through Envoy: redirect
// http://127.0.0.1:<any port>/_cedargate/callback, post-logout http://127.0.0.1:<any port>/orders/status).
// cedargate-introspector / cedargate-introspector-secret authenticates cedargate at the RFC 7662
// introspection endpoint (/token/introspection); it has no grant of its own.
// Users (any password): alice, bob, carol, mallory — see USERS. Access tokens are RFC 9068 JWTs
// (typ at+jwt, ES256) carrying groups, tenant and client_id — except for the resource
// https://opaque.cedargate.test (get-token.mjs --resource), whose access tokens are OPAQUE: only
// the introspection endpoint can read them (same claims: sub, client_id, groups, tenant, scope).

import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints its notices with console.info (stdout); keep stdout for the lines above.
console.info = (...a) => console.error(...a);

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: process.env.IDP_HOST ?? '127.0.0.1' },
    port: { type: 'string', default: process.env.IDP_PORT ?? '9400' },
    issuer: { type: 'string', default: process.env.IDP_ISSUER },
    keys: { type: 'string', default: process.env.IDP_KEYS },
    audience: { type: 'string', default: process.env.IDP_AUDIENCE ?? 'https://api.cedargate.test' },
    'access-token-ttl': { type: 'string', default: process.env.IDP_ACCESS_TOKEN_TTL ?? '3600' },
  },
  strict: true,
});

if (!args.keys) {
  console.error('usage: node idp.mjs [--host ADDR] [--port N] [--issuer URL] --keys FILE   (FILE: {"keys":[<private JWKs>]})');
  process.exit(2);
}
const PORT = Number(args.port);
if (!/^\d+$/.test(args.port) || PORT > 65535) {
  console.error(`idp: --port must be a port number 0-65535, got ${JSON.stringify(args.port)}`);
  process.exit(2);
}
if (args.issuer !== undefined) {
  let origin;
  try {
    const u = new URL(args.issuer);
    origin = (u.protocol === 'http:' || u.protocol === 'https:') ? u.origin : undefined;
  } catch {
    origin = undefined;
  }
  if (origin !== args.issuer) {
    console.error(`idp: --issuer must be an http(s) origin like http://idp:9400 (no path, no trailing slash, no default port), got ${JSON.stringify(args.issuer)}`);
    process.exit(2);
  }
}
const AUDIENCE = args.audience;
// A second resource server, so tests can obtain a validly signed token for the WRONG audience
// (get-token.mjs --resource https://other.cedargate.test).
const OTHER_AUDIENCE = 'https://other.cedargate.test';
// A resource server that receives opaque access tokens (RFC 7662 introspection tests).
const OPAQUE_AUDIENCE = 'https://opaque.cedargate.test';
const ACCESS_TOKEN_TTL = Number.parseInt(args['access-token-ttl'], 10);

// Every scope a resource server here understands. Clients are limited further by their `scope`.
const RESOURCE_SCOPES = [
  'orders:read', 'orders:write', 'payments:read', 'payments:write', 'reports:read', 'chat', 'health',
];

const USERS = {
  alice: { groups: ['admins', 'staff'], tenant: 'acme', name: 'Alice Admin', email: 'alice@acme.test' },
  bob: { groups: ['staff'], tenant: 'acme', name: 'Bob Staff', email: 'bob@acme.test' },
  carol: { groups: ['staff'], tenant: 'globex', name: 'Carol Globex', email: 'carol@globex.test' },
  mallory: { groups: [], tenant: 'acme', name: 'Mallory', email: 'mallory@acme.test' },
};

const CLIENTS = [
  {
    client_id: 'orders-service',
    client_secret: 'orders-service-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'orders:read orders:write payments:write',
  },
  {
    client_id: 'reporting-service',
    client_secret: 'reporting-service-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'reports:read',
  },
  {
    // cedargate's own client for RFC 7662 introspection (client_secret_basic); no grants.
    client_id: 'cedargate-introspector',
    client_secret: 'cedargate-introspector-secret',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    // Public browser-style client: no secret, PKCE (S256) required.
    client_id: 'webapp',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1:1/callback'],
    scope: `openid profile email offline_access ${RESOURCE_SCOPES.join(' ')}`,
  },
  {
    // cedargate's browser SSO (`sso` in cedargate.yaml): a confidential client (authorization
    // code + PKCE, refresh tokens, RP-initiated logout). `native` so that loopback redirect URIs
    // match on any port (RFC 8252 §7.3): tests and the demo put Envoy on a port of their own.
    client_id: 'cedargate-sso',
    client_secret: 'cedargate-sso-secret',
    application_type: 'native',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/_cedargate/callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/orders/status'],
    scope: 'openid profile email offline_access',
  },
];

function loadKeys(file) {
  const jwks = JSON.parse(readFileSync(file, 'utf8'));
  if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw new Error(`${file}: expected {"keys":[<private JWK>, ...]} with at least one key`);
  }
  for (const [i, k] of jwks.keys.entries()) {
    if (!k.kid) throw new Error(`${file}: keys[${i}] has no kid`);
    if (!k.d) throw new Error(`${file}: keys[${i}] (${k.kid}) is not a private key`);
  }
  return jwks;
}

// Signed cookies must stay valid across a key reload (a new Provider instance), so fix their keys.
const COOKIE_KEYS = ['cedargate-test-idp-cookie-key-1'];

function buildProvider(issuer, jwks) {
  const signingKey = jwks.keys[0];
  const signingAlg = signingKey.alg ?? 'ES256';

  const resourceServer = (audience) => ({
    audience,
    scope: RESOURCE_SCOPES.join(' '),
    accessTokenTTL: ACCESS_TOKEN_TTL,
    accessTokenFormat: 'jwt',
    // Pin the kid so "the first key signs" holds whatever the keystore's ordering does.
    jwt: { sign: { alg: signingAlg, kid: signingKey.kid } },
  });

  const configuration = {
    clients: CLIENTS,
    jwks,
    cookies: { keys: COOKIE_KEYS },
    scopes: ['openid', 'offline_access', ...RESOURCE_SCOPES],
    claims: {
      openid: ['sub'],
      profile: ['name', 'groups', 'tenant'],
      email: ['email'],
    },
    clientDefaults: {
      // EC-only keystore: the default RS256 would make client registration fail.
      id_token_signed_response_alg: signingAlg,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    pkce: { required: () => true },
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      ClientCredentials: ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 86400,
      Interaction: 600,
      Session: 86400,
      Grant: 86400,
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          if (resourceIndicator === AUDIENCE || resourceIndicator === OTHER_AUDIENCE) {
            return resourceServer(resourceIndicator);
          }
          if (resourceIndicator === OPAQUE_AUDIENCE) {
            return {
              audience: OPAQUE_AUDIENCE,
              scope: RESOURCE_SCOPES.join(' '),
              accessTokenTTL: ACCESS_TOKEN_TTL,
              accessTokenFormat: 'opaque',
            };
          }
          throw new errors.InvalidTarget();
        },
      },
    },
    async findAccount(_ctx, sub) {
      const user = USERS[sub];
      if (!user) throw new errors.AccessDenied(`unknown user ${sub}`);
      return {
        accountId: sub,
        async claims() {
          return {
            sub, name: user.name, email: user.email, groups: user.groups, tenant: user.tenant,
          };
        },
      };
    },
    // Custom access-token claims (sub/aud/iss/scope/client_id can't be overridden here).
    async extraTokenClaims(_ctx, token) {
      const claims = { client_id: token.clientId };
      const user = token.accountId ? USERS[token.accountId] : undefined;
      if (user) {
        claims.groups = user.groups;
        claims.tenant = user.tenant;
      }
      return claims;
    },
    renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };

  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => console.error('idp server_error:', err));
  return provider;
}

let jwksHits = 0;
let introspectionHits = 0;
let handler; // current provider's request listener; replaced atomically on key reload
let reloadKeys;

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/test/jwks-hits' && req.method === 'GET') return sendJson(res, 200, { hits: jwksHits });
  if (path === '/test/jwks-hits/reset' && req.method === 'POST') {
    jwksHits = 0;
    return sendJson(res, 200, { hits: 0 });
  }
  if (path === '/test/reload-keys' && req.method === 'POST') {
    try {
      return sendJson(res, 200, reloadKeys());
    } catch (err) {
      return sendJson(res, 500, { error: String(err.message ?? err) });
    }
  }
  if (path === '/test/introspection-hits' && req.method === 'GET') {
    return sendJson(res, 200, { hits: introspectionHits });
  }
  if (path === '/token/introspection') {
    introspectionHits += 1;
    console.log(`introspection_request count=${introspectionHits}`);
  }
  if (path === '/jwks') {
    jwksHits += 1;
    console.log(`jwks_request count=${jwksHits}`);
  }
  return handler(req, res);
});

const onListenError = (err) => {
  console.error(`idp: cannot listen on ${args.host}:${args.port}: ${err.message}`);
  process.exit(1);
};
server.once('error', onListenError);

server.listen(PORT, args.host, () => {
  server.off('error', onListenError);
  const { port } = server.address();
  const issuer = args.issuer ?? `http://127.0.0.1:${port}`;

  const install = (jwks) => {
    handler = buildProvider(issuer, jwks).callback();
    return { signing: jwks.keys[0].kid, published: jwks.keys.map((k) => k.kid) };
  };

  try {
    const info = install(loadKeys(args.keys));
    console.error(`idp keys: signing=${info.signing} published=${info.published.join(',')}`);
  } catch (err) {
    console.error(`idp: cannot start: ${err.message}`);
    process.exit(1);
  }

  reloadKeys = () => {
    const info = install(loadKeys(args.keys)); // throws before swapping if the file is bad
    console.log(`keys_reloaded signing=${info.signing} published=${info.published.join(',')}`);
    return info;
  };
  process.on('SIGHUP', () => {
    try {
      reloadKeys();
    } catch (err) {
      console.error(`idp: key reload failed, keeping the old keys: ${err.message}`);
    }
  });

  console.log(`idp listening on ${issuer}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
