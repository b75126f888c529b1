// Generate test signing keys for the cedargate test IdP (idp/idp.mjs). TEST-ONLY keys.
//
//   node idp/keys/gen-key.mjs                  print one new private EC P-256 JWK (ES256)
//   node idp/keys/gen-key.mjs --set N          print a key set {"keys":[N new keys]}
//   node idp/keys/gen-key.mjs --set 1 --out F  write it to F instead of stdout
//
// Every key gets a fresh random kid. For rotation, build the keys file for idp.mjs by hand:
// [OLD, NEW] (publish NEW), then [NEW, OLD] (NEW signs) — the first key is the signing key.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: { set: { type: 'string' }, out: { type: 'string' } },
  strict: true,
});

function newKey() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  const stamp = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  return {
    kid: `es256-${stamp}-${randomBytes(6).toString('hex')}`, alg: 'ES256', use: 'sig', ...jwk,
  };
}

const value = args.set === undefined
  ? newKey()
  : { keys: Array.from({ length: Number.parseInt(args.set, 10) }, newKey) };
const text = `${JSON.stringify(value, null, 2)}\n`;
if (args.out) writeFileSync(args.out, text, { mode: 0o600 }); else process.stdout.write(text);
