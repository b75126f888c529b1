// Seeds for the `token` fuzz target, from the test keys in tests/fixtures/keys:
//   node fuzz/gen-token-seeds.mjs
// Good signatures on claims that expired in 2001 (so no seed verifies: the target asserts that
// nothing does), and the shapes of the attack list in tests/it/jwt_attacks.rs.
import { createHmac, createPrivateKey, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'seeds/token');
const keys = join(dir, '../../../tests/fixtures/keys');
const pem = (name) => readFileSync(join(keys, `${name}.pem`));
const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const claims = {
  iss: 'https://idp.fuzz.test', sub: 'alice', aud: 'https://api.cedargate.test',
  exp: 1000000000, iat: 999996400, nbf: 999996400, client_id: 'webapp', groups: ['admins'],
};
function jws(header, payload, alg) {
  const message = `${b64(header)}.${b64(payload)}`;
  let sig;
  if (alg === 'ES256') sig = sign('sha256', Buffer.from(message), { key: createPrivateKey(pem('ec')), dsaEncoding: 'ieee-p1363' });
  else if (alg === 'RS256') sig = sign('sha256', Buffer.from(message), createPrivateKey(pem('rsa')));
  else if (alg === 'EdDSA') sig = sign(null, Buffer.from(message), createPrivateKey(pem('ed')));
  else if (alg === 'HS256') sig = createHmac('sha256', readFileSync(join(keys, 'rsa.pub.pem'))).update(message).digest();
  else sig = Buffer.alloc(0);
  return `${message}.${sig.toString('base64url')}`;
}
const es = jws({ alg: 'ES256', typ: 'at+jwt', kid: 'test-ec' }, claims, 'ES256');
const seeds = {
  es256: es,
  rs256: jws({ alg: 'RS256', kid: 'test-rsa' }, claims, 'RS256'),
  eddsa: jws({ alg: 'EdDSA', kid: 'test-ed' }, claims, 'EdDSA'),
  'no-kid': jws({ alg: 'ES256' }, claims, 'ES256'),
  'alg-none': jws({ alg: 'none' }, claims, 'none'),
  'hs256-public-key': jws({ alg: 'HS256', kid: 'test-rsa' }, claims, 'HS256'),
  crit: jws({ alg: 'ES256', kid: 'test-ec', crit: ['exp'] }, claims, 'ES256'),
  'embedded-jwk': jws({ alg: 'RS256', jwk: { kty: 'RSA', e: 'AQAB', n: 'AQAB' } }, claims, 'RS256'),
  'unknown-kid': jws({ alg: 'ES256', kid: '../../etc/passwd' }, claims, 'ES256'),
  'exp-string': jws({ alg: 'ES256', kid: 'test-ec' }, { ...claims, exp: '1000000000' }, 'ES256'),
  'aud-list': jws({ alg: 'ES256', kid: 'test-ec' }, { ...claims, aud: ['a', 'https://api.cedargate.test'] }, 'ES256'),
  'iss-untrusted': jws({ alg: 'ES256', kid: 'test-ec' }, { ...claims, iss: 'https://evil.example' }, 'ES256'),
  psychic: `${es.slice(0, es.lastIndexOf('.'))}.${Buffer.alloc(64).toString('base64url')}`,
  jwe: [b64({ alg: 'RSA-OAEP', enc: 'A256GCM' }), b64('k'), b64('iv'), b64('ct'), b64('tag')].join('.'),
};
for (const [name, token] of Object.entries(seeds)) writeFileSync(join(dir, name), token);
