// Browser test of roomcast at the edge: TLS (https:// and wss://) and
// permessage-deflate, in headless Debian Chromium driven by playwright-core.
// Run it through tests/browser/run.sh (after chat.test.mjs); README.md beside
// this file says what each test checks.
//
// It makes a throwaway CA and server certificate (loadtest/gen-cert.sh) in a
// temp dir and starts three relays of its own ($RELAY_CMD, default
// target/release/roomcast, with --bind 127.0.0.1:<port> and):
//   tls:    --tls-cert/--tls-key               (deflate on, the default)
//   tlsOff: --tls-cert/--tls-key --deflate off
//   plain:  no extra flags                     (for the seed's ws:// snippet)
// Chromium trusts the certificate only through
// --ignore-certificate-errors-spki-list=<SHA-256 of the server key's SPKI>;
// a second Chromium without it must refuse the same page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, CHROMIUM_ARGS, HERE, WAIT, Relay, freePort, makeCerts, metric, messages, say, sleep,
  socketInfo, uniq, waitMessages, waitState, watchWebSockets,
} from './harness.mjs';

const PORTS = process.env.BROWSER_TEST_PORTS || '9400-9499';
const SEED_SNIPPET = path.join(HERE, 'seed_snippet.html');
const WHOLE_RUN = 115_000; // the file must finish in under 2 minutes
const MIN_SIZE = 256;      // the relays' --deflate-min-size (passed explicitly)

let certs;
let tls;
let tlsOff;
let plain;
let context;
let userDataDir;
let workDir;
const pageErrors = [];

const relays = () => [tls, tlsOff, plain].filter(Boolean);
const watchdog = setTimeout(() => {
  console.error(`# watchdog: the edge browser test ran over ${WHOLE_RUN / 1000}s; stopping`);
  for (const r of relays()) r.kill('SIGKILL');
  process.exit(1);
}, WHOLE_RUN);
watchdog.unref();
process.on('exit', () => { for (const r of relays()) r.kill('SIGKILL'); });

async function newPage() {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.setDefaultNavigationTimeout(WAIT);
  page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
  return page;
}

// A room page on RELAY, with Chromium's own record of its WebSocket handshakes.
async function openRoom(relay, room) {
  const page = await newPage();
  const ws = await watchWebSockets(context, page);
  const res = await page.goto(`${relay.origin}/chat/${room}/`);
  assert.equal(res.status(), 200);
  await waitState(page, 'live');
  return { page, ws };
}

// The one chat handshake a room page made: what Chromium sent and got.
function handshakeOf(ws, room) {
  const chat = ws.sockets().filter((s) => s.url?.includes(`/ws/chat/${room}/`));
  assert.equal(chat.length, 1, `one WebSocket to /ws/chat/${room}/, saw ${JSON.stringify(chat)}`);
  return chat[0];
}

// Chat between two pages: interleaved sends; both see all, once, in one order.
async function chatBothWays(a, b, n = 3) {
  const sent = [];
  for (let i = 1; i <= n; i++) {
    await say(a, `A${i} over the wire`); sent.push(`A${i} over the wire`);
    await say(b, `B${i} over the wire`); sent.push(`B${i} over the wire`);
  }
  await Promise.all([waitMessages(a, sent.length), waitMessages(b, sent.length)]);
  await sleep(200); // a duplicate would show up by now
  const seenA = await messages(a);
  const seenB = await messages(b);
  assert.deepEqual(seenA, seenB, 'both pages show one and the same order');
  assert.deepEqual([...seenA].sort(), [...sent].sort(), 'every message arrives exactly once');
  for (const who of ['A', 'B']) {
    assert.deepEqual(seenA.filter((t) => t.startsWith(who)), sent.filter((t) => t.startsWith(who)),
      `page ${who}'s messages keep their send order`);
  }
  return sent.length;
}

// A message well over --deflate-min-size that deflate shrinks a lot.
function bigMessage(tag) {
  const line = `${tag}: the quick brown fox jumps over the lazy dog; `;
  return line.repeat(Math.ceil(4_000 / line.length)).slice(0, 4_000);
}

const DEFLATE = 'roomcast_deflate_compressions_total';
const BYTES_IN = 'roomcast_deflate_bytes_in_total';
const BYTES_OUT = 'roomcast_deflate_bytes_out_total';
const NOT_TLS = 'roomcast_tls_handshake_failures_total{reason="not_tls"}';

// ---------------------------------------------------------------------------
// Setup and teardown
// ---------------------------------------------------------------------------

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: run tests/browser/run.sh, which installs it`);
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomcast-edge-'));
  certs = makeCerts(path.join(workDir, 'certs'));
  const taken = new Set();
  const tlsArgs = ['--tls-cert', certs.cert, '--tls-key', certs.key, '--deflate-min-size', String(MIN_SIZE)];
  tls = new Relay(await freePort(PORTS, taken), { name: 'tls relay', args: tlsArgs, tls: { ca: certs.caPem } });
  tlsOff = new Relay(await freePort(PORTS, taken), {
    name: 'tls relay --deflate off', args: [...tlsArgs, '--deflate', 'off'], tls: { ca: certs.caPem },
  });
  plain = new Relay(await freePort(PORTS, taken), { name: 'plain relay', args: ['--deflate-min-size', String(MIN_SIZE)] });
  await Promise.all(relays().map((r) => r.start()));

  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomcast-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    // Trust exactly this run's server key, nothing else (this flag is only
    // honoured with a --user-data-dir, which a persistent context has).
    args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${certs.spki}`],
    viewport: { width: 1280, height: 800 },
    timeout: 30_000,
  });
});

after(async () => {
  try { await context?.close(); } catch { /* best effort */ }
  await Promise.all(relays().map((r) => r.stop()));
  for (const dir of [userDataDir, workDir]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  clearTimeout(watchdog);
});

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

test('tls-a: https:// pages load with the pinned key; a Chromium without the pin refuses them', { timeout: 30_000 }, async () => {
  const page = await newPage();
  const res = await page.goto(`${tls.origin}/`);
  assert.equal(res.status(), 200);
  const sec = await res.securityDetails();
  assert.ok(sec, 'the response came over TLS');
  assert.match(sec.protocol, /^TLS 1\.[23]$/, `protocol ${sec.protocol}`);
  assert.equal(sec.subjectName, 'localhost', 'the certificate is the one this run generated');
  assert.equal(sec.issuer, 'roomcast loadtest CA');
  await page.close();

  // The control: the same URL in a Chromium that was not told about the key.
  const bare = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  try {
    const p = await bare.newPage();
    await assert.rejects(p.goto(`${tls.origin}/`, { timeout: WAIT }), /ERR_CERT_AUTHORITY_INVALID/,
      'without the SPKI pin Chromium must not trust the test certificate');
  } finally {
    await bare.close();
  }
});

test('tls-b: two pages chat over wss:// with permessage-deflate; a long message is compressed once', { timeout: 40_000 }, async () => {
  const room = uniq('wss');
  const [a, b] = await Promise.all([openRoom(tls, room), openRoom(tls, room)]);
  for (const { page, ws } of [a, b]) {
    const info = await socketInfo(page);
    assert.ok(info.url.startsWith(`wss://127.0.0.1:${tls.port}/ws/chat/${room}/`), `the page's socket is wss://, got ${info.url}`);
    // What the page's WebSocket object says was negotiated...
    assert.match(info.extensions, /^permessage-deflate\b/, `WebSocket.extensions: ${JSON.stringify(info.extensions)}`);
    // ...and what Chromium's network stack saw in the 101.
    const hs = handshakeOf(ws, room);
    assert.equal(hs.status, 101);
    assert.match(hs.request['sec-websocket-extensions'] ?? '', /permessage-deflate/, 'Chromium offered deflate');
    const ext = hs.response['sec-websocket-extensions'] ?? '';
    assert.match(ext, /^permessage-deflate\b/, `101's Sec-WebSocket-Extensions: ${JSON.stringify(ext)}`);
    assert.match(ext, /server_no_context_takeover/, ext);
    assert.match(ext, /client_no_context_takeover/, ext);
  }

  let n = await chatBothWays(a.page, b.page);

  // Short messages (under --deflate-min-size) go out plain: no compression.
  const m0 = await tls.metrics();
  assert.equal(metric(m0, DEFLATE), 0, 'nothing was compressed yet: every message so far was short');

  // One long, compressible message: both members negotiated deflate, so the
  // broadcast is compressed exactly once (SPEC section 10), and both inflate it.
  const big = bigMessage(uniq('big'));
  await say(a.page, big);
  n += 1;
  await Promise.all([waitMessages(a.page, n), waitMessages(b.page, n)]);
  for (const { page } of [a, b]) assert.equal((await messages(page)).at(-1), big, 'the long message arrives intact');
  const m1 = await tls.metrics();
  assert.equal(metric(m1, DEFLATE) - metric(m0, DEFLATE), 1, 'one compression for a broadcast to two deflate members');
  const bytesIn = metric(m1, BYTES_IN) - metric(m0, BYTES_IN);
  const bytesOut = metric(m1, BYTES_OUT) - metric(m0, BYTES_OUT);
  assert.ok(bytesIn >= big.length, `bytes in ${bytesIn} >= the message's ${big.length}`);
  assert.ok(bytesOut > 0 && bytesOut < bytesIn / 4, `deflate shrank it: ${bytesIn} -> ${bytesOut}`);

  // And a short one after it stays plain.
  await say(b.page, 'short again');
  n += 1;
  await Promise.all([waitMessages(a.page, n), waitMessages(b.page, n)]);
  assert.equal(metric(await tls.metrics(), DEFLATE), metric(m1, DEFLATE), 'a short message is not compressed');
  await Promise.all([a.page.close(), b.page.close()]);
});

test('tls-c: --deflate off: Chromium offers deflate, the relay declines it, chat still works', { timeout: 40_000 }, async () => {
  const room = uniq('nodeflate');
  const [a, b] = await Promise.all([openRoom(tlsOff, room), openRoom(tlsOff, room)]);
  for (const { page, ws } of [a, b]) {
    const info = await socketInfo(page);
    assert.ok(info.url.startsWith('wss://'), info.url);
    assert.equal(info.extensions, '', 'no extension was negotiated');
    const hs = handshakeOf(ws, room);
    assert.equal(hs.status, 101);
    assert.match(hs.request['sec-websocket-extensions'] ?? '', /permessage-deflate/, 'Chromium did offer deflate');
    assert.equal(hs.response['sec-websocket-extensions'], undefined, 'the 101 has no Sec-WebSocket-Extensions');
  }
  let n = await chatBothWays(a.page, b.page, 2);
  const big = bigMessage(uniq('plainbig'));
  await say(b.page, big);
  n += 1;
  await Promise.all([waitMessages(a.page, n), waitMessages(b.page, n)]);
  assert.equal((await messages(a.page)).at(-1), big);
  assert.equal(metric(await tlsOff.metrics(), DEFLATE), 0, 'nothing is compressed with --deflate off');
  await Promise.all([a.page.close(), b.page.close()]);
});

test('tls-d: plain http:// and ws:// to the TLS port are not served; the relay carries on', { timeout: 30_000 }, async () => {
  const before = metric(await tls.metrics(), NOT_TLS);
  const page = await newPage();
  // Navigating there ends on Chromium's error page (the relay sends no byte of HTTP).
  const failed = await page.goto(`http://127.0.0.1:${tls.port}/`).then(() => null, (e) => e);
  assert.ok(failed, 'http:// to the TLS port must not load');
  await page.waitForURL(/^chrome-error:/);
  assert.match(await page.evaluate(() => document.body.innerText), /ERR_[A-Z_]+/, 'Chromium shows a network error');

  // From a page on the plain relay: a no-cors fetch (which resolves for any
  // HTTP answer at all) and a ws:// socket to the TLS port both fail.
  await page.goto(`${plain.origin}/`);
  const fetched = await page.evaluate((url) => fetch(url, { mode: 'no-cors' }).then(() => 'answered', (e) => `failed: ${e.message}`),
    `http://127.0.0.1:${tls.port}/healthz`);
  assert.match(fetched, /^failed/, 'a plain-HTTP fetch of the TLS port gets no answer');
  const outcome = await page.evaluate((url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => resolve('no outcome within 5s'), 5_000);
    ws.onopen = () => { clearTimeout(timer); resolve('opened'); ws.close(); };
    ws.onclose = (e) => { clearTimeout(timer); resolve(`closed ${e.code}`); };
  }), `ws://127.0.0.1:${tls.port}/ws/chat/${uniq('plaintext')}/`);
  assert.equal(outcome, 'closed 1006', 'ws:// to the TLS port never opens');
  await page.close();

  const after = metric(await tls.metrics(), NOT_TLS);
  assert.ok(after - before >= 3, `not_tls failures counted: ${before} -> ${after}`);
  assert.equal((await tls.get('/healthz')).status, 200, 'https:// still answers');
});

test("seed: the seed's ws:// snippet (plain relay) gets its message back, with deflate negotiated", { timeout: 30_000 }, async () => {
  // The snippet hard-codes ws://${location.host}: on an https:// page Chromium
  // blocks that as mixed content, so it only applies to a plain relay.
  const html = fs.readFileSync(SEED_SNIPPET, 'utf8');
  const script = /<script>([\s\S]*)<\/script>/.exec(html)[1];
  const page = await newPage();
  const ws = await watchWebSockets(context, page);
  const logged = [];
  page.on('console', (msg) => { if (msg.text().startsWith('Message from server')) logged.push(msg.text()); });
  await page.goto(`${plain.origin}/`);
  await page.addScriptTag({ content: script });
  const deadline = Date.now() + WAIT;
  while (logged.length === 0 && Date.now() < deadline) await sleep(50);
  assert.equal(logged.length, 1, "the snippet logged 'Message from server ...' once");
  assert.deepEqual(JSON.parse(logged[0].slice('Message from server'.length).trim()), { message: 'Hello, server!' });
  const hs = handshakeOf(ws, 'room-name');
  assert.ok(hs.url.startsWith('ws://'), hs.url);
  assert.match(hs.response['sec-websocket-extensions'] ?? '', /^permessage-deflate\b/,
    'the unchanged snippet gets deflate too: Chromium offers it on every WebSocket');
  await page.close();
});

test('no page raised a script error', () => {
  assert.deepEqual(pageErrors, []);
});
