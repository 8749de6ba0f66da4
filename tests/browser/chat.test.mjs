// Browser test of roomcast's embedded chat page: headless Debian Chromium driven
// by playwright-core, against a relay this file starts itself (RELAY_CMD, default
// target/release/roomcast, started as `$RELAY_CMD --bind 127.0.0.1:<port>`).
// Run it through tests/browser/run.sh, which installs what is missing. README.md
// beside this file says what each test checks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const RELAY_CMD = process.env.RELAY_CMD || 'target/release/roomcast';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'target/browser');
const SEED_SNIPPET = path.join(HERE, 'seed_snippet.html');
const PORTS = process.env.BROWSER_TEST_PORTS || '9400-9499';

const WAIT = 10_000;          // any single wait for the page or the relay
const RECONNECT_WAIT = 25_000; // back-off after a restart is at most a few seconds
const WHOLE_RUN = 115_000;    // the file must finish in under 2 minutes

const XSS = '<img src=x onerror=window.__pwned=1>';

let relay;
let context;
let userDataDir;
const pageErrors = [];

// Whatever happens, the relay this file started does not outlive it.
const watchdog = setTimeout(() => {
  console.error(`# watchdog: the browser test ran over ${WHOLE_RUN / 1000}s; stopping`);
  relay?.kill('SIGKILL');
  process.exit(1);
}, WHOLE_RUN);
watchdog.unref();
process.on('exit', () => relay?.kill('SIGKILL'));

// ---------------------------------------------------------------------------
// The relay under test
// ---------------------------------------------------------------------------

class Relay {
  constructor(port) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.proc = null;
    this.output = '';
  }

  // Starts `$RELAY_CMD --bind 127.0.0.1:<port>` and waits until it answers HTTP.
  // `exec` makes the shell become the relay, so the PID we signal is the relay's.
  async start() {
    const cmd = `exec ${RELAY_CMD} --bind 127.0.0.1:${this.port}`;
    const proc = spawn('/bin/sh', ['-c', cmd], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    const keep = (chunk) => { this.output = (this.output + chunk).slice(-16_384); };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.running = true;
    this.exited.then(() => { if (this.proc === proc) this.running = false; });

    const deadline = Date.now() + WAIT;
    for (;;) {
      if (!this.running) {
        throw new Error(`relay exited before answering (${cmd}):\n${this.output}`);
      }
      try {
        const res = await fetch(`${this.url}/`, { signal: AbortSignal.timeout(1_000) });
        await res.arrayBuffer();
        return;
      } catch { /* not up yet */ }
      if (Date.now() > deadline) throw new Error(`relay did not answer on ${this.url} within ${WAIT} ms:\n${this.output}`);
      await sleep(100);
    }
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

async function canListen(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function freePort() {
  const [lo, hi] = PORTS.split('-').map(Number);
  const span = hi - lo + 1;
  const first = Math.floor(Math.random() * span);
  for (let k = 0; k < span; k++) {
    const port = lo + ((first + k) % span);
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${PORTS}`);
}

// ---------------------------------------------------------------------------
// Page helpers
// ---------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const uniq = (name) => `${name}-${Math.random().toString(36).slice(2, 8)}`;

async function newPage() {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.setDefaultNavigationTimeout(WAIT);
  page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
  return page;
}

async function openRoom(room) {
  const page = await newPage();
  await page.goto(`${relay.url}/chat/${room}/`);
  await waitState(page, 'live');
  return page;
}

async function waitState(page, state, timeout = WAIT) {
  await page.waitForFunction(
    (s) => document.getElementById('state')?.dataset.state === s,
    state,
    { timeout, polling: 50 },
  );
}

async function say(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

async function waitMessages(page, n, timeout = WAIT) {
  await page.waitForFunction(
    (k) => document.querySelectorAll('#log .msg').length >= k,
    n,
    { timeout, polling: 50 },
  );
}

async function messages(page) {
  return page.$$eval('#log .msg', (items) => items.map((li) => ({
    text: li.querySelector('.bubble').textContent,
    mine: li.classList.contains('mine'),
  })));
}

// Sends one raw text frame on the page's own chat socket (the page exposes it
// read-only as window.roomcast.socket for debugging).
async function rawSend(page, data) {
  await page.evaluate((d) => window.roomcast.socket.send(d), data);
}

// ---------------------------------------------------------------------------
// Setup and teardown
// ---------------------------------------------------------------------------

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: run tests/browser/run.sh, which installs it`);
  relay = new Relay(await freePort());
  await relay.start();
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomcast-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
    timeout: 30_000,
  });
  fs.mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  try { await context?.close(); } catch { /* best effort */ }
  await relay?.stop();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  clearTimeout(watchdog);
});

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

test('index page: validates the room name and goes to /chat/<room>/', { timeout: 30_000 }, async () => {
  const page = await newPage();
  const res = await page.goto(`${relay.url}/`);
  assert.equal(res.status(), 200);
  await page.fill('#room', 'no spaces!');
  await page.press('#room', 'Enter');
  await page.waitForSelector('.hint.invalid');
  assert.equal(new URL(page.url()).pathname, '/', 'an invalid name must not navigate');

  const room = uniq('lobby');
  await page.fill('#room', room);
  await page.press('#room', 'Enter');
  await page.waitForURL(`${relay.url}/chat/${room}/`);
  await waitState(page, 'live');
  assert.equal(await page.textContent('#room-name'), room);
  await page.close();
});

test('a+b: two pages in a room see each other in one order; another room sees nothing', { timeout: 30_000 }, async () => {
  const room = uniq('ab');
  const [a, b, c] = await Promise.all([openRoom(room), openRoom(room), openRoom(uniq('elsewhere'))]);

  // Interleaved sends, without waiting for echoes in between.
  const sent = [];
  for (let i = 1; i <= 4; i++) {
    await say(a, `A${i} from page a`); sent.push(`A${i} from page a`);
    await say(b, `B${i} from page b`); sent.push(`B${i} from page b`);
  }
  await Promise.all([waitMessages(a, sent.length), waitMessages(b, sent.length)]);
  const seenA = await messages(a);
  const seenB = await messages(b);
  assert.deepEqual(seenA.map((m) => m.text), seenB.map((m) => m.text), 'both pages show one and the same order');
  assert.deepEqual([...seenA.map((m) => m.text)].sort(), [...sent].sort(), 'every message arrives exactly once');
  const order = (who, list) => list.filter((t) => t.startsWith(who));
  assert.deepEqual(order('A', seenA.map((m) => m.text)), order('A', sent), "page a's messages keep their send order");
  assert.deepEqual(order('B', seenA.map((m) => m.text)), order('B', sent), "page b's messages keep their send order");
  // The page marks its own messages (the relay echoes to the sender).
  assert.ok(seenA.every((m) => m.mine === m.text.startsWith('A')), 'page a marks exactly its own messages as mine');
  assert.ok(seenB.every((m) => m.mine === m.text.startsWith('B')), 'page b marks exactly its own messages as mine');
  assert.equal(await a.inputValue('#input'), '', 'the input is cleared after sending');

  // Room c: a message of its own arrives (so it is live and would have had time),
  // and nothing from the other room does.
  await say(c, 'only in the other room');
  await waitMessages(c, 1);
  await sleep(300);
  assert.deepEqual((await messages(c)).map((m) => m.text), ['only in the other room']);
  assert.equal((await messages(a)).length, sent.length, "room a+b doesn't see the other room's message");
  await Promise.all([a.close(), b.close(), c.close()]);
});

test('c: markup in a message is shown as text, never run', { timeout: 30_000 }, async () => {
  const room = uniq('xss');
  const [a, b] = await Promise.all([openRoom(room), openRoom(room)]);
  await say(a, XSS);
  // A message that is not a string is shown as its JSON, also as text.
  await rawSend(a, JSON.stringify({ message: { html: '<b>bold?</b>', n: 1 } }));
  for (const page of [a, b]) {
    await waitMessages(page, 2);
    await page.getByText(XSS, { exact: true }).waitFor({ state: 'visible' });
    const texts = (await messages(page)).map((m) => m.text);
    assert.deepEqual(texts, [XSS, '{"html":"<b>bold?</b>","n":1}']);
    await sleep(200); // an onerror handler would have fired by now
    assert.equal(await page.locator('img').count(), 0, 'no <img> element was created');
    assert.equal(await page.locator('#log b').count(), 0, 'no <b> element was created');
    assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  }
  await Promise.all([a.close(), b.close()]);
});

test('d: relay stops -> page shows reconnecting; relay back on the same port -> live, chat works', { timeout: 60_000 }, async (t) => {
  const room = uniq('restart');
  const [a, b] = await Promise.all([openRoom(room), openRoom(room)]);
  await say(a, 'before the restart');
  await waitMessages(b, 1);

  const exit = await relay.stop();
  t.diagnostic(`relay exit after SIGTERM: ${JSON.stringify(exit)}`);
  for (const page of [a, b]) {
    await waitState(page, 'reconnecting');
    assert.match(await page.textContent('#state'), /Reconnecting/);
    assert.equal(await page.isDisabled('#input'), true, 'the input is disabled while not live');
    await page.getByText(/^Disconnected:/).waitFor();
  }
  // Let it fail a couple of times so the countdown shows a real back-off.
  await a.waitForFunction(() => /Reconnecting in \d+s · try (?:[2-9]|\d\d)/.test(document.getElementById('state').textContent),
    null, { timeout: WAIT, polling: 50 });
  await a.screenshot({ path: path.join(SHOTS, 'room-reconnecting.png') });

  await relay.start();
  await Promise.all([waitState(a, 'live', RECONNECT_WAIT), waitState(b, 'live', RECONNECT_WAIT)]);
  assert.equal(await a.isDisabled('#input'), false, 'the input is enabled again once live');
  await a.getByText(/^Reconnected\./).waitFor();

  await say(b, 'after the restart');
  await Promise.all([waitMessages(a, 2), waitMessages(b, 2)]);
  assert.deepEqual((await messages(a)).map((m) => m.text), ['before the restart', 'after the restart']);
  await Promise.all([a.close(), b.close()]);
});

test("e: the relay's {\"error\": ...} answers reach the sender only, and the page shows them", { timeout: 40_000 }, async () => {
  // 1. A raw WebSocket opened in the page (same origin as the relay).
  const probe = await newPage();
  await probe.goto(`${relay.url}/`);
  const replies = await probe.evaluate(async (room) => {
    const ws = new WebSocket(`ws://${location.host}/ws/chat/${room}/`);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('raw websocket failed to open'));
    });
    const next = () => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply within 5s')), 5_000);
      ws.onmessage = (e) => { clearTimeout(timer); resolve(e.data); };
      ws.onclose = (e) => { clearTimeout(timer); reject(new Error(`closed with ${e.code}`)); };
    });
    const out = {};
    for (const [name, frame] of [
      ['not json', 'not json'],
      ['not an object', '[1, 2]'],
      ['no message field', '{"text": "hi"}'],
      ['binary', new Uint8Array([0x7b, 0x7d])],
    ]) {
      ws.send(frame);
      out[name] = await next();
    }
    ws.send(JSON.stringify({ message: 'still open' }));
    out.after = await next();
    ws.close();
    return out;
  }, uniq('raw'));
  for (const name of ['not json', 'not an object', 'no message field', 'binary']) {
    const frame = JSON.parse(replies[name]);
    assert.deepEqual(Object.keys(frame), ['error'], `${name}: the answer is {"error": ...}, got ${replies[name]}`);
    assert.equal(typeof frame.error, 'string');
    assert.ok(frame.error.length > 0, `${name}: the error says what was wrong`);
  }
  assert.deepEqual(JSON.parse(replies.after), { message: 'still open' }, 'bad input does not close the connection');
  await probe.close();

  // 2. The page's own socket gets an error frame, and the page shows it distinctly.
  const room = uniq('errors');
  const [a, b] = await Promise.all([openRoom(room), openRoom(room)]);
  await rawSend(a, 'not json');
  const shown = a.locator('#log .note.error');
  await shown.waitFor({ state: 'visible' });
  assert.equal(await shown.locator('.text').textContent(), JSON.parse(replies['not json']).error,
    "the page shows the relay's error text");
  assert.equal(await shown.getAttribute('role'), 'alert');
  await say(a, 'after the error');
  await Promise.all([waitMessages(a, 1), waitMessages(b, 1)]);
  assert.equal(await a.getAttribute('#state', 'data-state'), 'live', 'the page stays live after an error');
  assert.equal(await b.locator('#log .note.error').count(), 0, 'the other member never sees the error');
  await Promise.all([a.close(), b.close()]);
});

test("f: the seed's own browser snippet, served from the relay's origin, gets its message back", { timeout: 30_000 }, async () => {
  // Our page in the seed's room shows what the seed client sends.
  const watcher = await openRoom('room-name');

  // location.host must be the relay's: load the relay's own page, then run the
  // seed's <script> verbatim in it. (Fulfilling a made-up URL with page.route
  // would also keep the host, but Chromium then treats the document as public
  // and blocks its WebSocket to 127.0.0.1 under Local Network Access rules.)
  const html = fs.readFileSync(SEED_SNIPPET, 'utf8');
  const script = /<script>([\s\S]*)<\/script>/.exec(html)[1];
  const page = await newPage();
  const logged = [];
  page.on('console', (msg) => { if (msg.text().startsWith('Message from server')) logged.push(msg.text()); });
  await page.goto(`${relay.url}/`);
  assert.equal(await page.evaluate(() => location.host), `127.0.0.1:${relay.port}`);
  await page.addScriptTag({ content: script });

  const deadline = Date.now() + WAIT;
  while (logged.length === 0 && Date.now() < deadline) await sleep(50);
  assert.equal(logged.length, 1, "the snippet logged 'Message from server ...' once");
  const data = logged[0].slice('Message from server'.length).trim();
  assert.deepEqual(JSON.parse(data), { message: 'Hello, server!' });

  await waitMessages(watcher, 1);
  assert.deepEqual((await messages(watcher)).map((m) => m.text), ['Hello, server!']);
  await Promise.all([page.close(), watcher.close()]);
});

test('g: screenshots at a phone and a desktop size; nothing overflows sideways', { timeout: 40_000 }, async () => {
  const room = 'design-review';
  const [me, them] = await Promise.all([openRoom(room), openRoom(room)]);
  const script = [
    [them, 'Morning! Is the relay back up?'],
    [me, 'Yes, restarted it a minute ago. Reconnects came back within a couple of seconds.'],
    [them, 'Nice. Here is the long one I promised: the fan-out path shares one encoded frame '
      + 'across every recipient, so a 64 KiB message to a room of 2,000 members costs one allocation, '
      + 'not two thousand. Slow readers only ever fill their own queue and get closed with 1008 '
      + 'when they fall too far behind. https://example.invalid/a/very/long/url/that/should/wrap/nicely/instead/of/overflowing'],
    [me, XSS],
  ];
  let n = 0;
  for (const [page, text] of script) {
    await say(page, text);
    n += 1;
    await Promise.all([waitMessages(me, n), waitMessages(them, n)]);
  }
  await rawSend(me, JSON.stringify({ message: { build: 1234, status: 'green' } }));
  await waitMessages(me, n + 1);
  await rawSend(me, '{"message": oops}');
  await me.locator('#log .note.error').waitFor();
  await me.fill('#input', 'Typing a reply…');

  const sizes = [
    ['', { width: 1280, height: 800 }],
    ['-phone', { width: 390, height: 844 }],
  ];
  for (const [suffix, size] of sizes) {
    await me.setViewportSize(size);
    await me.evaluate(() => { const w = document.getElementById('log-wrap'); w.scrollTop = w.scrollHeight; });
    const overflow = await me.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `room page overflows sideways by ${overflow}px at ${size.width}px`);
    assert.ok(await me.locator('#input').isVisible(), 'the input is on screen');
    await me.screenshot({ path: path.join(SHOTS, `room${suffix}.png`) });
  }
  await me.emulateMedia({ colorScheme: 'dark' });
  await me.screenshot({ path: path.join(SHOTS, 'room-phone-dark.png') });
  await me.emulateMedia({ colorScheme: 'light' });

  const index = await newPage();
  for (const [suffix, size] of sizes) {
    await index.setViewportSize(size);
    await index.goto(`${relay.url}/`);
    const overflow = await index.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `index page overflows sideways by ${overflow}px at ${size.width}px`);
    await index.screenshot({ path: path.join(SHOTS, `index${suffix}.png`) });
  }
  await index.emulateMedia({ colorScheme: 'dark' });
  await index.screenshot({ path: path.join(SHOTS, 'index-phone-dark.png') });
  await Promise.all([me.close(), them.close(), index.close()]);
});

test('no page raised a script error', () => {
  assert.deepEqual(pageErrors, []);
});
