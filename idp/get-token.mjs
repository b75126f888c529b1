// Get an access token (a JWT) from the cedargate test IdP (idp/idp.mjs) and print ONLY the token
// on stdout (no newline games: one line). Errors go to stderr with exit status 1.
//
// Service (client_credentials):
//   node idp/get-token.mjs --issuer http://127.0.0.1:9400 --client-credentials \
//        --client orders-service --secret orders-service-secret [--scope "orders:read orders:write"]
//   (--secret defaults to "<client>-secret", the test IdP's convention)
//
// Human user (authorization code + PKCE S256, driven over HTTP, no browser):
//   node idp/get-token.mjs --issuer http://127.0.0.1:9400 --user alice [--scope "openid orders:read"]
//   Uses the public client `webapp` (override with --client) and the dev login form (any password).
//
// Common options:
//   --resource URL   ask for a token for another resource server / audience
//                    (the IdP also knows https://other.cedargate.test, for wrong-audience tests)
//   --json           print the whole token response (access_token, id_token, refresh_token, ...)
//                    instead of only the access token
//   --verbose        trace every HTTP step on stderr
//
// Works on Node 20+ (global fetch; Headers.getSetCookie).
import { createHash, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'client-credentials': { type: 'boolean', default: false },
    client: { type: 'string' },
    secret: { type: 'string' },
    scope: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string', default: 'any-password' },
    resource: { type: 'string' },
    'redirect-uri': { type: 'string', default: 'http://127.0.0.1:1/callback' },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
  strict: true,
});

function fail(msg) {
  process.stderr.write(`get-token: ${msg}\n`);
  process.exit(1);
}
const trace = (msg) => { if (args.verbose) process.stderr.write(`get-token: ${msg}\n`); };

if (!args.issuer) fail('--issuer URL is required');
if (args['client-credentials'] === Boolean(args.user)) {
  fail('pass exactly one of --client-credentials (with --client) or --user NAME');
}
const issuer = args.issuer.replace(/\/+$/, '');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

async function discover() {
  const res = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!res.ok) fail(`discovery ${res.status} at ${issuer}`);
  const meta = await res.json();
  if (meta.issuer !== issuer) fail(`discovery issuer mismatch: ${meta.issuer} != ${issuer}`);
  return meta;
}

async function tokenRequest(meta, form, basicAuth) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (basicAuth) {
    // RFC 6749 §2.3.1: form-urlencode id and secret before base64.
    const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
    headers.authorization = `Basic ${Buffer.from(`${enc(basicAuth[0])}:${enc(basicAuth[1])}`).toString('base64')}`;
  }
  const res = await fetch(meta.token_endpoint, {
    method: 'POST', headers, body: new URLSearchParams(form).toString(),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.access_token) {
    fail(`token endpoint ${res.status}: ${body.error ?? ''} ${body.error_description ?? ''}`.trim());
  }
  return body;
}

async function clientCredentials(meta) {
  const client = args.client ?? fail('--client-credentials needs --client ID');
  const secret = args.secret ?? `${client}-secret`;
  const form = { grant_type: 'client_credentials' };
  if (args.scope) form.scope = args.scope;
  if (args.resource) form.resource = args.resource;
  return tokenRequest(meta, form, [client, secret]);
}

// --- a tiny cookie jar that honours Path (RFC 6265 §5.1.4), enough for oidc-provider's cookies:
// _interaction is scoped to /interaction/<uid>, _interaction_resume to /auth/<uid>, _session to /.
class CookieJar {
  #cookies = new Map(); // `${name};${path}` -> { name, value, path }

  store(requestUrl, setCookies) {
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path;
      let expired = false;
      for (const attr of attrs) {
        const [k, ...v] = attr.split('=');
        const key = k.toLowerCase();
        const val = v.join('=');
        if (key === 'path' && val.startsWith('/')) path = val;
        if (key === 'max-age' && Number(val) <= 0) expired = true;
        if (key === 'expires' && Date.parse(val) <= Date.now()) expired = true;
      }
      if (!path) {
        const p = new URL(requestUrl).pathname;
        path = p.lastIndexOf('/') > 0 ? p.slice(0, p.lastIndexOf('/')) : '/';
      }
      const id = `${name};${path}`;
      if (expired) this.#cookies.delete(id); else this.#cookies.set(id, { name, value, path });
    }
  }

  header(url) {
    const reqPath = new URL(url).pathname;
    const matches = [...this.#cookies.values()].filter(({ path }) => reqPath === path
      || (reqPath.startsWith(path) && (path.endsWith('/') || reqPath[path.length] === '/')));
    matches.sort((a, b) => b.path.length - a.path.length); // longer paths first (§5.4)
    return matches.map(({ name, value }) => `${name}=${value}`).join('; ');
  }
}

async function authorizationCode(meta) {
  const jar = new CookieJar();
  const request = async (url, init = {}) => {
    const headers = { ...(init.headers ?? {}) };
    const cookie = jar.header(url);
    if (cookie) headers.cookie = cookie;
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    jar.store(url, res.headers.getSetCookie());
    trace(`${init.method ?? 'GET'} ${url} -> ${res.status} ${res.headers.get('location') ?? ''}`);
    return res;
  };
  const redirectTarget = (res, from) => {
    if (res.status < 300 || res.status > 399) return undefined;
    const loc = res.headers.get('location');
    if (!loc) fail(`redirect without Location from ${from}`);
    return new URL(loc, from).toString(); // the first Location is relative
  };

  const clientId = args.client ?? 'webapp';
  const redirectUri = args['redirect-uri'];
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(16));
  const nonce = b64url(randomBytes(16));
  const scope = args.scope
    ?? 'openid profile orders:read orders:write payments:read payments:write reports:read chat health';

  const auth = new URL(meta.authorization_endpoint);
  const params = {
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  };
  if (args.resource) params.resource = args.resource;
  for (const [k, v] of Object.entries(params)) auth.searchParams.set(k, v);

  // Follow the authorization flow: GET /auth -> /interaction/<uid> (login form) -> POST ->
  // /auth/<uid> -> /interaction/<uid2> (consent form) -> POST -> /auth/<uid2> -> callback?code=...
  let url = auth.toString();
  let res = await request(url);
  for (let step = 0; step < 20; step += 1) {
    const next = redirectTarget(res, url);
    if (next) {
      if (next.startsWith(redirectUri)) {
        return finish(meta, new URL(next), { clientId, redirectUri, verifier, state });
      }
      url = next;
      res = await request(url);
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) fail(`unexpected ${res.status} at ${url}: ${html.slice(0, 300)}`);
    const form = parseForm(html, url);
    if (!form) fail(`no form at ${url}: ${html.slice(0, 300)}`);
    const fields = { ...form.hidden };
    if (fields.prompt === 'login') {
      fields.login = args.user;
      fields.password = args.password;
    } else if (fields.prompt !== 'consent') {
      fail(`unexpected interaction prompt ${fields.prompt} at ${url}`);
    }
    url = form.action;
    res = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }
  return fail('too many steps in the authorization flow');
}

function parseForm(html, base) {
  const formMatch = html.match(/<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i);
  if (!formMatch) return undefined;
  const unescape = (s) => s.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#x2F;/g, '/')
    .replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
  const hidden = {};
  for (const [input] of formMatch[2].matchAll(/<input\b[^>]*>/gi)) {
    if (!/type="hidden"/i.test(input)) continue;
    const name = input.match(/\bname="([^"]*)"/i)?.[1];
    const value = input.match(/\bvalue="([^"]*)"/i)?.[1] ?? '';
    if (name) hidden[unescape(name)] = unescape(value);
  }
  return { action: new URL(unescape(formMatch[1]), base).toString(), hidden };
}

async function finish(meta, callback, { clientId, redirectUri, verifier, state }) {
  const q = callback.searchParams;
  if (q.get('error')) fail(`authorization failed: ${q.get('error')} ${q.get('error_description') ?? ''}`.trim());
  if (q.get('state') !== state) fail('state mismatch in the callback');
  if (q.get('iss') && q.get('iss') !== issuer) fail(`iss mismatch in the callback: ${q.get('iss')}`); // RFC 9207
  const code = q.get('code') ?? fail(`no code in the callback: ${callback}`);
  const form = {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    client_id: clientId,
    code_verifier: verifier,
  };
  if (args.resource) form.resource = args.resource;
  const basic = args.secret ? [clientId, args.secret] : undefined; // public client: no secret
  if (basic) delete form.client_id;
  return tokenRequest(meta, form, basic);
}

try {
  const meta = await discover();
  const tokens = args.user ? await authorizationCode(meta) : await clientCredentials(meta);
  process.stdout.write(args.json ? `${JSON.stringify(tokens)}\n` : `${tokens.access_token}\n`);
} catch (err) {
  fail(err?.cause ? `${err.message}: ${err.cause.message ?? err.cause}` : String(err?.message ?? err));
}
