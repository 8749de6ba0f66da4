// Shared helpers for the browser tests that start relays with flags of their
// own (edge.test.mjs here, tests/django_auth/django_auth.mjs): a relay started
// and stopped by its PID, free ports, GETs over http:// or https:// (trusting
// a given CA, verification on), Prometheus text parsing, test certificates.
// chat.test.mjs keeps its own copies (it predates this file).
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const RELAY_CMD = process.env.RELAY_CMD || 'target/release/roomcast';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const WAIT = 10_000; // any single wait for a page or a relay

// The flags every headless Chromium of these tests gets (the same as chat.test.mjs).
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const uniq = (name) => `${name}-${Math.random().toString(36).slice(2, 8)}`;

// ---------------------------------------------------------------------------
// A relay this process starts and stops by its own PID
// ---------------------------------------------------------------------------

export class Relay {
  // args: extra flags after --bind; tls: { ca } (a PEM buffer) when the relay
  // is started with --tls-cert/--tls-key, so its URL is https:// and GETs to it
  // verify its certificate against that CA.
  constructor(port, { args = [], tls = null, name = 'relay' } = {}) {
    this.port = port;
    this.args = args;
    this.tls = tls;
    this.name = name;
    this.origin = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    this.proc = null;
    this.running = false;
    this.output = '';
  }

  // Starts `$RELAY_CMD --bind 127.0.0.1:<port> ARGS...` and waits until it
  // answers GET /healthz. `exec` makes the shell become the relay, so the PID
  // we signal is the relay's.
  async start() {
    const quoted = this.args.map((a) => `'${String(a).replaceAll("'", "'\\''")}'`).join(' ');
    const cmd = `exec ${RELAY_CMD} --bind 127.0.0.1:${this.port} ${quoted}`;
    const proc = spawn('/bin/sh', ['-c', cmd], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    const keep = (chunk) => { this.output = (this.output + chunk).slice(-16_384); };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.running = true;
    this.exited.then(() => { if (this.proc === proc) this.running = false; });

    const deadline = Date.now() + WAIT;
    let last = '';
    for (;;) {
      if (!this.running) throw new Error(`${this.name} exited before answering (${cmd}):\n${this.output}`);
      try {
        const res = await this.get('/healthz', 1_000);
        if (res.status === 200) return;
        last = `status ${res.status}`;
      } catch (e) { last = e.message; }
      if (Date.now() > deadline) {
        throw new Error(`${this.name} did not answer on ${this.origin} within ${WAIT} ms (${last}):\n${this.output}`);
      }
      await sleep(100);
    }
  }

  // GET a path of this relay: { status, headers, body }.
  get(pathname, timeout = 5_000) {
    return get(`${this.origin}${pathname}`, { ca: this.tls?.ca, timeout });
  }

  async metrics() {
    const res = await this.get('/metrics');
    if (res.status !== 200) throw new Error(`${this.name}: GET /metrics answered ${res.status}`);
    return parseMetrics(res.body);
  }

  // SIGTERM to the PID we started; SIGKILL if it hasn't gone within the wait.
  async stop() {
    if (!this.proc || !this.running) return null;
    this.proc.kill('SIGTERM');
    let timer;
    const done = await Promise.race([
      this.exited,
      new Promise((resolve) => { timer = setTimeout(() => resolve(null), WAIT); }),
    ]);
    clearTimeout(timer);
    if (done) return done;
    this.proc.kill('SIGKILL');
    await this.exited;
    return { code: null, signal: 'SIGKILL (did not stop on SIGTERM)' };
  }

  kill(signal) {
    if (this.proc && this.running) {
      try { this.proc.kill(signal); } catch { /* already gone */ }
    }
  }
}

// ---------------------------------------------------------------------------
// Ports, HTTP, metrics
// ---------------------------------------------------------------------------

async function canListen(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// A port in RANGE ("lo-hi") that nothing listens on and that `taken` does not hold.
export async function freePort(range, taken = new Set()) {
  const [lo, hi] = range.split('-').map(Number);
  const span = hi - lo + 1;
  const first = Math.floor(Math.random() * span);
  for (let k = 0; k < span; k++) {
    const port = lo + ((first + k) % span);
    if (!taken.has(port) && await canListen(port)) {
      taken.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${range}`);
}

// GET url over http:// or https:// (then verified against `ca`, the system's
// roots never being consulted): { status, headers, body }.
export function get(url, { ca, timeout = 5_000, headers = {} } = {}) {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  const opts = { headers, timeout };
  if (u.protocol === 'https:') { opts.ca = ca; opts.rejectUnauthorized = true; opts.agent = false; }
  return new Promise((resolve, reject) => {
    const req = mod.get(url, opts, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeout} ms`)));
    req.on('error', reject);
  });
}

// Prometheus text -> Map of `name` or `name{labels}` (as written) -> number.
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

// One sample; a missing one fails loudly rather than reading as 0.
export function metric(map, key) {
  if (!map.has(key)) throw new Error(`metric ${key} is missing from /metrics`);
  return map.get(key);
}

// ---------------------------------------------------------------------------
// Test certificates (loadtest/gen-cert.sh) and the SPKI pin Chromium trusts
// ---------------------------------------------------------------------------

// Makes a throwaway CA and a server certificate for 127.0.0.1/::1/localhost in
// DIR: { dir, ca, cert, key, caPem, spki } (spki: the base64 SHA-256 of the
// server key's SubjectPublicKeyInfo, what --ignore-certificate-errors-spki-list takes).
export function makeCerts(dir) {
  const r = spawnSync('bash', [path.join(ROOT, 'loadtest/gen-cert.sh'), dir], {
    encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0) throw new Error(`loadtest/gen-cert.sh failed (${r.status ?? r.signal}):\n${r.stderr}`);
  const cert = path.join(dir, 'server.pem');
  const key = path.join(dir, 'server.key');
  const ca = path.join(dir, 'ca.pem');
  const spkiDer = crypto.createPublicKey(fs.readFileSync(key)).export({ type: 'spki', format: 'der' });
  const spki = crypto.createHash('sha256').update(spkiDer).digest('base64');
  return { dir, ca, cert, key, caPem: fs.readFileSync(ca), spki };
}

// ---------------------------------------------------------------------------
// What Chromium itself saw of each WebSocket handshake (DevTools protocol)
// ---------------------------------------------------------------------------

// Records, for one page, every WebSocket the page opens: its URL, the request
// and response headers of its handshake (names lower-cased), the response
// status, and any failure. Attach before the page navigates.
export async function watchWebSockets(context, page) {
  const cdp = await context.newCDPSession(page);
  const sockets = new Map();
  const lower = (h) => Object.fromEntries(Object.entries(h || {}).map(([k, v]) => [k.toLowerCase(), v]));
  const entry = (id) => {
    if (!sockets.has(id)) sockets.set(id, { url: null, request: null, status: null, response: null, error: null, closed: false });
    return sockets.get(id);
  };
  cdp.on('Network.webSocketCreated', (e) => { entry(e.requestId).url = e.url; });
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => { entry(e.requestId).request = lower(e.request.headers); });
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    const s = entry(e.requestId);
    s.status = e.response.status;
    s.response = lower(e.response.headers);
  });
  cdp.on('Network.webSocketFrameError', (e) => { entry(e.requestId).error = e.errorMessage; });
  cdp.on('Network.webSocketClosed', (e) => { entry(e.requestId).closed = true; });
  await cdp.send('Network.enable');
  return { cdp, sockets: () => [...sockets.values()] };
}

// ---------------------------------------------------------------------------
// roomcast's room page (src/chat/page/room.js)
// ---------------------------------------------------------------------------

export async function waitState(page, state, timeout = WAIT) {
  await page.waitForFunction(
    (s) => document.getElementById('state')?.dataset.state === s,
    state,
    { timeout, polling: 50 },
  );
}

export async function say(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

export async function waitMessages(page, n, timeout = WAIT) {
  await page.waitForFunction(
    (k) => document.querySelectorAll('#log .msg').length >= k,
    n,
    { timeout, polling: 50 },
  );
}

export async function messages(page) {
  return page.$$eval('#log .msg', (items) => items.map((li) => li.querySelector('.bubble').textContent));
}

// The page's own chat socket (window.roomcast.socket, a read-only debug handle):
// its URL and the extensions the browser negotiated.
export async function socketInfo(page) {
  return page.evaluate(() => {
    const s = window.roomcast.socket;
    return s ? { url: s.url, extensions: s.extensions, readyState: s.readyState } : null;
  });
}
