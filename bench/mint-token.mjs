// Prints an ES256 access token for the system benchmark, signed with the TEST-ONLY fixture key
// (tests/fixtures/keys/ec.pem, kid test-ec), valid for a day: alice, group admins.
//   node bench/mint-token.mjs            one token (alice)
//   node bench/mint-token.mjs COUNT      COUNT distinct tokens, one per line (user-000000, …;
//                                         the memory benchmark's live tokens)
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
const token = (c) => {
  const input = `${b64(header)}.${b64(c)}`;
  const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
};
const count = process.argv[2] === undefined ? 0 : Number.parseInt(process.argv[2], 10);
if (count === 0) {
  process.stdout.write(`${token(claims)}\n`);
} else {
  const lines = [];
  for (let n = 0; n < count; n += 1) {
    const sub = `user-${String(n).padStart(6, '0')}`;
    lines.push(token({ ...claims, sub, jti: `bench-${now}-${n}`, groups: [`group-${String(n % 5000).padStart(4, '0')}`] }));
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
