// cedargate test upstream: echoes what Envoy forwarded, so tests can see the headers cedargate
// added or stripped. TEST-ONLY.
//
//   node upstream/upstream.mjs [--host 127.0.0.1] --port 8081 [--grpc-port 8082]
//                              [--entities FILE [--entities-delay-ms 1000]]
//   (env fallbacks: UPSTREAM_HOST, UPSTREAM_PORT, UPSTREAM_GRPC_PORT)
//
// --host ADDR binds both the HTTP and the gRPC listener (default 127.0.0.1; docker-compose.yml
// uses 0.0.0.0 inside the compose network). Port 0 picks a free port; the ready lines name it.
//
// Dependencies: `ws` from idp/node_modules (install with scripts/install-idp.sh). Node's ESM
// loader ignores NODE_PATH, so this file resolves `ws` itself through createRequire anchored at
// idp/package.json: run it from anywhere, no NODE_PATH needed.
//
// HTTP (--port, HTTP/1.1):
//   any method, any path  -> 200 application/json {"method","path","headers":{...}}
//                            (path includes the query string; headers are as received, lower-case)
//   path ending in "/ws" with an Upgrade: websocket request (e.g. /ws, /chat/ws)
//                         -> WebSocket that echoes every message back (text as text, binary as
//                            binary). Sending the text message "__headers__" returns the handshake
//                            request's headers as JSON instead. The 101 response also carries
//                            x-echo-headers: base64url(JSON of the handshake headers).
// Entities (--entities FILE, optional): cedargate's entity provider protocol
// (docs/configuration.md#entity_provider). FILE is a JSON array of Cedar entities
// ({"uid":{"type","id"},"attrs":{},"parents":[]}), read once at start.
//   GET /entities?type=T&id=I -> 200 application/json: a JSON array holding the entity of FILE
//                                whose uid is T::I, and nothing else; [] when FILE has none
//                                (a missing type or id is 400)
//   GET /entities/hits        -> 200 {"T::\"I\"": n, ...}: entity requests served so far per uid
//                                (fault paths included), so tests can count fetches
//   Test-only faults, by path (cedargate adds the query to a configured URL that has none, so a
//   fault is chosen by pointing entity_provider.url at one of these):
//   GET /entities/slow?...       -> the normal answer after --entities-delay-ms (default 1000)
//   GET /entities/garbage?...    -> 200 text that is not JSON
//   GET /entities/huge?...       -> 200 a valid JSON array of about 4 MiB, chunked (no length)
//   GET /entities/undeclared?... -> 200 the normal answer plus an entity of type Undeclared
//   GET /entities/notarray?...   -> 200 a JSON object instead of an array
//   GET /entities/nouid?...      -> 200 an array with an element that has no uid
//   GET /entities/500?...        -> 500
//   GET /entities/404?...        -> 404 (the protocol's "no data")
// Without --entities, /entities is an echo path like any other.
// gRPC (--grpc-port, cleartext HTTP/2, optional):
//   /grpc.health.v1.Health/Check (and any other gRPC method) -> a unary reply
//   HealthCheckResponse{status: SERVING}; the response's initial metadata carries
//   echo-headers: base64url(JSON of the request headers), so tests can see them over gRPC too.
//
// stdout: "upstream listening on HOST:N" once the HTTP port is ready (preceded by
// "upstream grpc listening on HOST:M" when --grpc-port is given, and by
// "upstream entities: K from FILE" when --entities is given). HOST is the address actually
// bound (127.0.0.1 by default, 0.0.0.0 with --host 0.0.0.0, [::1] style for IPv6).
import * as http from 'node:http';
import * as http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(new URL('../idp/package.json', import.meta.url));
const { WebSocketServer } = require('ws');

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: process.env.UPSTREAM_HOST ?? '127.0.0.1' },
    port: { type: 'string', default: process.env.UPSTREAM_PORT ?? '8081' },
    'grpc-port': { type: 'string', default: process.env.UPSTREAM_GRPC_PORT },
    entities: { type: 'string' },
    'entities-delay-ms': { type: 'string', default: '1000' },
  },
  strict: true,
});

// "host:port" of a listening server, IPv6 hosts in brackets.
function boundAddress(srv) {
  const { address, family, port } = srv.address();
  return family === 'IPv6' || family === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

function listenOrDie(srv, port, name, onReady) {
  const onError = (err) => {
    console.error(`upstream: cannot listen (${name}) on ${args.host}:${port}: ${err.message}`);
    process.exit(1);
  };
  srv.once('error', onError);
  srv.listen(port, args.host, () => {
    srv.off('error', onError);
    onReady();
  });
}

const b64json = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

function plainHeaders(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) {
    if (!k.startsWith(':')) out[k] = v;
  }
  return out;
}

const isWsPath = (url) => (url ?? '/').split('?')[0].endsWith('/ws');

// Cedar prints a uid as Type::"id" (the id as a JSON string).
const uidKey = (type, id) => `${type}::${JSON.stringify(id)}`;

function loadEntities(file) {
  const list = JSON.parse(readFileSync(file, 'utf8'));
  if (!Array.isArray(list)) throw new Error(`${file}: not a JSON array`);
  const byUid = new Map();
  for (const e of list) byUid.set(uidKey(e.uid.type, e.uid.id), e);
  return byUid;
}

const entities = args.entities === undefined ? undefined : loadEntities(args.entities);
const entityHits = {};
const FAULTS = new Set(['slow', 'garbage', 'huge', 'undeclared', 'notarray', 'nouid', '500', '404']);

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

// GET /entities[/<fault>]?type=T&id=I and GET /entities/hits. Returns false for other paths.
function serveEntities(req, res) {
  const url = new URL(req.url ?? '/', 'http://upstream');
  const [, first, fault, extra] = url.pathname.split('/');
  if (first !== 'entities' || extra !== undefined) return false;
  if (fault === 'hits') {
    sendJson(res, 200, entityHits);
    return true;
  }
  if (fault !== undefined && !FAULTS.has(fault)) return false;
  const type = url.searchParams.get('type');
  const id = url.searchParams.get('id');
  if (req.method !== 'GET' || type === null || id === null) {
    sendJson(res, 400, { error: 'GET /entities?type=T&id=I' });
    return true;
  }
  // A client that stops reading (cedargate past max_body_bytes) must not crash the server.
  res.on('error', () => {});
  const key = uidKey(type, id);
  entityHits[key] = (entityHits[key] ?? 0) + 1;
  const found = entities.get(key);
  const answer = found === undefined ? [] : [found];
  switch (fault) {
    case undefined:
      sendJson(res, 200, answer);
      break;
    case 'slow':
      setTimeout(() => sendJson(res, 200, answer), Number.parseInt(args['entities-delay-ms'], 10));
      break;
    case 'garbage':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('<html>this is not JSON</html>');
      break;
    case 'huge': {
      // No content-length: the client can only find out by reading.
      res.writeHead(200, { 'content-type': 'application/json' });
      const filler = JSON.stringify({ uid: { type, id: 'filler' }, attrs: { pad: 'x'.repeat(1000) }, parents: [] });
      res.write('[');
      for (let i = 0; i < 4096; i += 1) res.write(i === 0 ? filler : `,${filler}`);
      res.end(']');
      break;
    }
    case 'undeclared':
      sendJson(res, 200, [...answer, { uid: { type: 'Undeclared', id }, attrs: {}, parents: [] }]);
      break;
    case 'notarray':
      sendJson(res, 200, found ?? { uid: { type, id } });
      break;
    case 'nouid':
      sendJson(res, 200, [...answer, { attrs: {}, parents: [] }]);
      break;
    case '500':
      sendJson(res, 500, { error: 'injected fault' });
      break;
    default: // '404'
      sendJson(res, 404, { error: 'not found' });
  }
  return true;
}

const server = http.createServer((req, res) => {
  if (entities !== undefined && serveEntities(req, res)) {
    req.resume();
    return;
  }
  // Drain the body (Envoy may forward one), then answer with what we saw.
  req.resume();
  req.on('end', () => {
    const body = JSON.stringify({ method: req.method, path: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
// Envoy keeps upstream connections for an hour by default (cluster idle_timeout) and Node closes
// idle ones after 5 s: a request Envoy sends on a connection as Node closes it comes back as a
// 503 "connection termination" (seen once in 5,363 requests of the fleet test). The upstream
// must outlive Envoy's idle timeout, so Envoy is always the side that closes.
server.keepAliveTimeout = 61 * 60 * 1000;
server.headersTimeout = server.keepAliveTimeout + 1000;

const wss = new WebSocketServer({ noServer: true });
wss.on('headers', (headers, req) => headers.push(`x-echo-headers: ${b64json(req.headers)}`));
wss.on('connection', (ws, req) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === '__headers__') {
      ws.send(JSON.stringify({ method: req.method, path: req.url, headers: req.headers }));
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on('error', () => {});
});

server.on('upgrade', (req, socket, head) => {
  if (!isWsPath(req.url) || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

function startGrpc(port) {
  return new Promise((resolve) => {
    const grpc = http2.createServer();
    grpc.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      stream.resume();
      stream.on('end', () => {
        // HealthCheckResponse { status: SERVING (1) } = field 1, varint 1 -> 0x08 0x01,
        // in a gRPC length-prefixed message: flag 0, 4-byte big-endian length.
        const msg = Buffer.from([0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x01]);
        stream.respond({
          ':status': 200,
          'content-type': 'application/grpc',
          'echo-headers': b64json(plainHeaders(headers)),
        }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(msg);
      });
    });
    listenOrDie(grpc, port, 'grpc', () => {
      console.log(`upstream grpc listening on ${boundAddress(grpc)}`);
      resolve(grpc);
    });
  });
}

if (entities !== undefined) console.log(`upstream entities: ${entities.size} from ${args.entities}`);

if (args['grpc-port'] !== undefined) await startGrpc(Number.parseInt(args['grpc-port'], 10));

listenOrDie(server, Number.parseInt(args.port, 10), 'http', () => {
  console.log(`upstream listening on ${boundAddress(server)}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
