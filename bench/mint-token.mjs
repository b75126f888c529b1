// Prints an ES256 access token for the system benchmark, signed with the TEST-ONLY fixture key
// (tests/fixtures/keys/ec.pem, kid test-ec), valid for a day: alice, group admins.
//   node bench/mint-token.mjs
import { createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';

const root = new URL('..', import.meta.url);
const key = createPrivateKey(readFileSync(new URL('tests/fixtures/keys/ec.pem', root)));
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const header = { alg: 'ES256', typ: 'at+jwt', kid: 'test-ec' };
const claims = {
  iss: 'https://bench.cedargate.test', sub: 'alice', aud: 'https://api.cedargate.test',
  iat: now, exp: now + 86400, jti: `bench-${now}`, client_id: 'webapp',
  scope: 'orders:read', groups: ['admins'], tenant: 'acme',
};
const input = `${b64(header)}.${b64(claims)}`;
const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
process.stdout.write(`${input}.${signature.toString('base64url')}\n`);
