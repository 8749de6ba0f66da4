// Django login decides who joins roomcast's rooms, in a real browser
// (tests/django_auth/run.sh starts Django and roomcast and passes their
// addresses in the environment; README.md says what each check is for).
//
// Django (runserver, tests/django_auth/authsite) serves a login form and
// /roomcast/auth/; roomcast runs with --auth-url pointing there. Cookies are
// per host, not per port, so the session cookie Django sets for 127.0.0.1
// goes with the WebSocket upgrade to roomcast on another port of 127.0.0.1,
// and roomcast passes it on to Django. Headless Chromium (playwright-core
// from tests/browser/node_modules) holds one browser context per person:
// ann (staff), bob, and an anonymous visitor.
// Each check prints "ok N - ..." or fails the run (exit 1). Every wait is bounded.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const require = createRequire(path.join(ROOT, 'tests/browser/package.json'));
const { chromium } = require('playwright-core');
const {
  CHROMIUM, CHROMIUM_ARGS, WAIT, get, metric, parseMetrics, say, sleep, uniq, waitState,
} = await import(path.join(ROOT, 'tests/browser/harness.mjs'));

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run tests/django_auth/run.sh)`);
  return v;
};
const DJANGO = env('DJANGO_URL');     // http://127.0.0.1:D
const ROOMCAST = env('ROOMCAST_URL'); // http://127.0.0.1:R, --auth-url DJANGO/roomcast/auth/
const PASSWORD = env('DJANGO_AUTH_PASSWORD');
const SEED_SNIPPET = path.join(ROOT, 'tests/browser/seed_snippet.html');
const WHOLE_RUN = 150_000;

let browser;
const pageErrors = [];
const watchdog = setTimeout(() => {
  console.error(`not ok - the Django auth check ran over ${WHOLE_RUN / 1000}s`);
  process.exit(1);
}, WHOLE_RUN);
watchdog.unref();

let checks = 0;
function ok(what) {
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

async function until(what, fn, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function rejections() {
  const res = await get(`${ROOMCAST}/metrics`);
  const m = parseMetrics(res.body);
  return {
    unauthorized: metric(m, 'roomcast_auth_rejections_total{reason="backend_unauthorized"}'),
    forbidden: metric(m, 'roomcast_auth_rejections_total{reason="backend_forbidden"}'),
  };
}

// One person: a browser context of their own (their own cookie jar).
async function person(name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  context.setDefaultTimeout(WAIT);
  return { name, context };
}

// Logs in through Django's own LoginView form, as a person would.
async function login(who) {
  const page = await who.context.newPage();
  await page.goto(`${DJANGO}/accounts/login/`);
  await page.fill('#id_username', who.name);
  await page.fill('#id_password', PASSWORD);
  await Promise.all([page.waitForURL(`${DJANGO}/whoami/`), page.click('#login')]);
  assert.equal(await page.textContent('#user'), who.name, 'Django says who is logged in');
  const cookies = await who.context.cookies(ROOMCAST);
  assert.ok(cookies.some((c) => c.name === 'sessionid'), "Django's session cookie also applies to roomcast's port");
  await page.close();
}

// A page of roomcast's that records every text frame its WebSockets receive
// (parsed) and the console lines Chromium writes about failed handshakes.
async function newPage(who) {
  const page = await who.context.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${who.name} ${page.url()}: ${err.message}`));
  const frames = [];
  const consoleErrors = [];
  page.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => {
    if (typeof payload === 'string') frames.push(JSON.parse(payload));
  }));
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  return { page, frames, consoleErrors };
}

async function openRoom(who, room) {
  const p = await newPage(who);
  await p.page.goto(`${ROOMCAST}/chat/${room}/`);
  return p;
}

const chats = (frames) => frames.filter((f) => 'message' in f);

// Opens a raw WebSocket from inside PAGE to ROOM: 'opened' or 'closed <code>'.
async function tryJoin(page, room) {
  return page.evaluate((r) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/ws/chat/${r}/`);
    const timer = setTimeout(() => resolve('no outcome within 5s'), 5_000);
    ws.onopen = () => { clearTimeout(timer); resolve('opened'); ws.close(); };
    ws.onclose = (e) => { clearTimeout(timer); resolve(`closed ${e.code}`); };
  }), room);
}

// Chromium writes why a handshake failed to the console: "Unexpected response
// code: N" for most statuses; a 401 is taken for an HTTP authentication
// challenge, which it reports as "HTTP Authentication failed; no valid
// credentials available".
const REFUSED = {
  401: /failed: (HTTP Authentication failed|Error during WebSocket handshake: Unexpected response code: 401)/,
  403: /failed: Error during WebSocket handshake: Unexpected response code: 403/,
};
async function handshakeRefusedWith(p, status) {
  await until(`a console line about HTTP ${status}`, () => p.consoleErrors.some((t) => REFUSED[status].test(t)));
  for (const [other, re] of Object.entries(REFUSED)) {
    if (Number(other) !== status) assert.ok(!p.consoleErrors.some((t) => re.test(t)), `a ${other} where ${status} was expected: ${p.consoleErrors}`);
  }
}

try {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  const ann = await person('ann');
  const bob = await person('bob');
  const anon = await person('anonymous');
  await login(ann);
  await login(bob);
  ok('ann and bob logged in through Django\'s LoginView; the session cookie is host-wide (127.0.0.1, any port)');

  // --- logged-in members chat; the relay names the sender ------------------
  const lobby = uniq('lobby');
  const a = await openRoom(ann, lobby);
  const b = await openRoom(bob, lobby);
  await Promise.all([waitState(a.page, 'live'), waitState(b.page, 'live')]);
  ok('ann and bob, logged in, join a room: Django answered 200 for both');

  await say(b.page, 'hello from bob');
  await say(a.page, 'hello from ann');
  for (const p of [a, b]) await until('both messages on both pages', () => chats(p.frames).length >= 2);
  await sleep(200);
  const want = [{ message: 'hello from bob', user: 'bob' }, { message: 'hello from ann', user: 'ann' }];
  assert.deepEqual(chats(a.frames), want, 'ann gets both messages, once each, with Django\'s usernames');
  assert.deepEqual(chats(b.frames), want, 'bob gets the same, in the same order');
  ok('each message arrives at both members once, as {"message": ..., "user": <Django username>}');

  // The identity is the relay's, never the client's.
  await a.page.evaluate(() => window.roomcast.socket.send(JSON.stringify({ message: 'forged?', user: 'mallory' })));
  await until('the forged message at bob', () => chats(b.frames).length >= 3);
  assert.deepEqual(chats(b.frames)[2], { message: 'forged?', user: 'ann' });
  ok('a client-supplied "user" is replaced by the one Django gave (mallory -> ann)');

  // --- the anonymous visitor is refused before the upgrade ------------------
  let before = await rejections();
  const z = await openRoom(anon, lobby);
  await handshakeRefusedWith(z, 401);
  await waitState(z.page, 'reconnecting');
  assert.equal(await tryJoin(z.page, lobby), 'closed 1006', 'a raw WebSocket never opens either');
  let after = await rejections();
  assert.ok(after.unauthorized - before.unauthorized >= 2, `backend_unauthorized ${before.unauthorized} -> ${after.unauthorized}`);
  assert.equal(after.forbidden, before.forbidden);
  await sleep(300);
  assert.equal(chats(a.frames).length, 3, 'nothing reached the room from the refused visitor');
  await z.page.close();
  ok('an anonymous page is refused with 401 (Chromium: "HTTP Authentication failed"), never goes live, and roomcast counts backend_unauthorized');

  // --- a room the user may not join: 403 ------------------------------------
  const staff = uniq('staff');
  before = await rejections();
  const bs = await openRoom(bob, staff);
  await handshakeRefusedWith(bs, 403);
  assert.equal(await tryJoin(bs.page, staff), 'closed 1006');
  after = await rejections();
  assert.ok(after.forbidden - before.forbidden >= 2, `backend_forbidden ${before.forbidden} -> ${after.forbidden}`);
  await bs.page.close();
  const as = await openRoom(ann, staff);
  await waitState(as.page, 'live');
  await as.page.close();
  ok('bob (not staff) gets 403 for a staff-* room and roomcast counts backend_forbidden; ann (staff) joins it');

  // --- read-only membership ("write": false) --------------------------------
  const news = uniq('news');
  const an = await openRoom(ann, news);
  const bn = await openRoom(bob, news);
  await Promise.all([waitState(an.page, 'live'), waitState(bn.page, 'live')]);
  await say(bn.page, 'bob tries to post news');
  await until("bob's error", () => bn.frames.some((f) => 'error' in f));
  await say(an.page, 'news from ann');
  await until("ann's news at bob", () => chats(bn.frames).length >= 1);
  await sleep(200);
  assert.deepEqual(chats(an.frames), [{ message: 'news from ann', user: 'ann' }], "ann never sees bob's refused post");
  assert.deepEqual(chats(bn.frames), [{ message: 'news from ann', user: 'ann' }], 'bob still receives the room');
  const errors = bn.frames.filter((f) => 'error' in f);
  assert.equal(errors.length, 1);
  assert.deepEqual(Object.keys(errors[0]), ['error']);
  assert.equal(await bn.page.getAttribute('#state', 'data-state'), 'live', 'the read-only member stays connected');
  ok('Django\'s "write": false makes bob read-only in news-*: his message gets {"error": ...} and is not broadcast; he still receives');
  await Promise.all([a.page.close(), b.page.close(), an.page.close(), bn.page.close()]);

  // --- the seed's snippet, unchanged, for a logged-in browser --------------
  const html = fs.readFileSync(SEED_SNIPPET, 'utf8');
  const script = /<script>([\s\S]*)<\/script>/.exec(html)[1];
  const logged = { ann: [], anonymous: [] };
  for (const who of [ann, anon]) {
    const p = await newPage(who);
    p.page.on('console', (msg) => { if (msg.text().startsWith('Message from server')) logged[who.name].push(msg.text()); });
    await p.page.goto(`${ROOMCAST}/`);
    await p.page.addScriptTag({ content: script });
    if (who === ann) {
      await until('the snippet\'s message back', () => logged.ann.length > 0);
    } else {
      await handshakeRefusedWith(p, 401);
    }
    who.snippetPage = p.page;
  }
  await sleep(300);
  assert.equal(logged.ann.length, 1);
  assert.deepEqual(JSON.parse(logged.ann[0].slice('Message from server'.length).trim()), { message: 'Hello, server!', user: 'ann' });
  assert.deepEqual(logged.anonymous, []);
  ok("the seed's snippet, unchanged, works for a browser logged in to Django (its message comes back with \"user\": \"ann\") and is refused for an anonymous one");

  assert.deepEqual(pageErrors, [], 'no page raised a script error');
  ok('no page raised a script error');
  console.log(`django_auth browser: ${checks} passed, 0 failed`);
  await browser.close();
  clearTimeout(watchdog);
} catch (e) {
  console.error(`not ok - ${e.stack || e}`);
  console.log(`django_auth browser: ${checks} passed, 1 failed`);
  try { await browser?.close(); } catch { /* best effort */ }
  process.exit(1);
}
