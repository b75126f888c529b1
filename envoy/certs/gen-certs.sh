#!/usr/bin/env bash
# Regenerate the TEST-ONLY certificates in this folder (used by envoy/envoy-mtls.yaml and tests).
#   ca.crt / ca.key          test CA (EC P-256)
#   server.crt / server.key  Envoy's listener cert: SAN DNS:localhost, IP:127.0.0.1
#   client.crt / client.key  client cert: SAN URI:spiffe://cedargate.test/ns/default/sa/orders
# Valid for 10 years. Running this replaces every file; commit them together.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
DAYS=3650
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" -subj "/O=cedargate test/CN=cedargate test CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt

issue() { # name subject san extendedKeyUsage
  openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$tmp/$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$4" "$3" > "$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial "$tmp/ca.srl" \
    -days "$DAYS" -sha256 -extfile "$tmp/$1.ext" -out "$1.crt" 2>/dev/null
}
issue server "/O=cedargate test/CN=localhost" "DNS:localhost,IP:127.0.0.1" serverAuth
issue client "/O=cedargate test/CN=orders" "URI:spiffe://cedargate.test/ns/default/sa/orders" clientAuth
chmod 644 ./*.key ./*.crt
openssl verify -CAfile ca.crt server.crt client.crt >/dev/null
