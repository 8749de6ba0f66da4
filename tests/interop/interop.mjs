// Interop check, driven by tests/interop/run.sh (which starts everything and
// passes the addresses in the environment): roomcast and the seed's Django
// Channels app share one room through Redis (channels_redis's
// RedisPubSubChannelLayer). Headless Chromium (playwright-core from
// tests/browser/node_modules) holds two pages:
//   R: roomcast's own room page, /chat/<room>/ on roomcast;
//   D: the seed's browser snippet, its socket pointed at daphne's
//      ws://127.0.0.1:<django>/ws/chat/<room>/.
// Each check prints "ok - ..." or fails the run (exit 1). Every wait is bounded.
import { createRequire } from 'node:module';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
// playwright-core is installed for the browser test; reuse it from there.
const require = createRequire(path.join(ROOT, 'tests/browser/package.json'));
const { chromium } = require('playwright-core');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run tests/interop/run.sh)`);
  return v;
};
const ROOMCAST = env('ROOMCAST_URL');       // http://127.0.0.1:P
const DJANGO_HOST = env('DJANGO_HOST');     // 127.0.0.1:D
const REDIS_PORT = Number(env('REDIS_PORT'));
const PYTHON = env('INTEROP_PYTHON');       // the Channels venv's python
const REDIS_URL = env('REDIS_URL');
// tests/backplane_interop.rs, built: roomcast's backplane publishing a message with a user.
const PUBLISHER = env('INTEROP_PUBLISHER');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SEED_SNIPPET = path.join(ROOT, 'tests/browser/seed_snippet.html');

const WAIT = 15_000;
const WHOLE_RUN = 150_000;
const ROOM = `interop-${Math.random().toString(36).slice(2, 8)}`;
const CHANNEL = `asgi__group__chat_${ROOM}`;

const watchdog = setTimeout(() => {
  console.error(`not ok - the interop check ran over ${WHOLE_RUN / 1000}s`);
  process.exit(1);
}, WHOLE_RUN);
watchdog.unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
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

// PUBSUB NUMSUB over a raw socket (a RESP2 exchange small enough to write here).
function numsub(channel) {
  return new Promise((resolve, reject) => {
    const s = net.connect(REDIS_PORT, '127.0.0.1');
    const cmd = ['PUBSUB', 'NUMSUB', channel];
    let buf = '';
    s.setTimeout(5_000, () => { s.destroy(); reject(new Error('Redis did not answer PUBSUB NUMSUB')); });
    s.on('error', reject);
    s.on('data', (d) => {
      buf += d.toString('latin1');
      const m = /^\*2\r\n\$\d+\r\n[^\r]*\r\n:(\d+)\r\n/.exec(buf);
      if (m) { s.end(); resolve(Number(m[1])); }
    });
    s.write(`*${cmd.length}\r\n` + cmd.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
  });
}

function groupSend(messageJson, userJson) {
  const args = [path.join(HERE, 'group_send.py'), ROOM, messageJson];
  if (userJson !== undefined) args.push(userJson);
  return new Promise((resolve, reject) => {
    execFile(PYTHON, args,
      { timeout: 60_000, env: process.env },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`group_send.py failed: ${err.message}\n${stdout}${stderr}`));
        else resolve(stdout.trim());
      });
  });
}

// A Django-side member of the group (group_listen.py): resolves `listening`
// once it has asked Redis to subscribe, and `events` with the events it got.
function groupListen(count) {
  const child = spawn(PYTHON, [path.join(HERE, 'group_listen.py'), ROOM, String(count)],
    { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let heard;
  const listening = new Promise((resolve) => { heard = resolve; });
  child.stdout.on('data', (d) => {
    out += d.toString();
    if (out.split('\n').includes('listening')) heard();
  });
  child.stderr.on('data', (d) => { err += d.toString(); });
  const events = new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`group_listen.py timed out:\n${out}${err}`)); }, 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`group_listen.py exited with ${code}:\n${out}${err}`));
      resolve(out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)));
    });
  });
  return { listening, events };
}

// roomcast's backplane publishes `messageJson` as a member with identity `userJson`.
function roomcastPublish(messageJson, userJson) {
  return new Promise((resolve, reject) => {
    execFile(PUBLISHER, ['--ignored', '--exact', 'publish_with_a_user_for_interop', '--nocapture'], {
      timeout: 60_000,
      env: {
        ...process.env,
        ROOMCAST_INTEROP_REDIS: REDIS_URL,
        ROOMCAST_INTEROP_ROOM: ROOM,
        ROOMCAST_INTEROP_MESSAGE: messageJson,
        ROOMCAST_INTEROP_USER: userJson,
      },
    }, (err, stdout, stderr) => {
      if (err) reject(new Error(`the roomcast publisher failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout.split('\n').find((l) => l.startsWith('roomcast published')) || stdout.trim());
    });
  });
}

async function main() {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing`);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomcast-interop-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    timeout: 30_000,
  });
  const pageErrors = [];
  try {
    const newPage = async () => {
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT);
      page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
      return page;
    };

    // --- R: roomcast's room page, with its received frames recorded raw.
    const r = await newPage();
    await r.goto(`${ROOMCAST}/chat/${ROOM}/`);
    await r.waitForFunction(() => document.getElementById('state')?.dataset.state === 'live', null, { polling: 50 });
    await r.evaluate(() => {
      window.__frames = [];
      window.roomcast.socket.addEventListener('message', (e) => window.__frames.push(e.data));
    });
    await until(`roomcast to SUBSCRIBE ${CHANNEL}`, async () => (await numsub(CHANNEL)) === 1);
    ok(`roomcast's page is live in room ${ROOM} and roomcast subscribed ${CHANNEL} on Redis`);

    // --- D: the seed's snippet, verbatim except for its URL: daphne's host and our room.
    const html = fs.readFileSync(SEED_SNIPPET, 'utf8');
    const seed = /<script>([\s\S]*)<\/script>/.exec(html)[1];
    const script = seed
      .replace(/\$\{\s*location\.host\}/, DJANGO_HOST)
      .replace('/ws/chat/room-name/', `/ws/chat/${ROOM}/`);
    assert.ok(script.includes(`ws://${DJANGO_HOST}/ws/chat/${ROOM}/`), `snippet not retargeted:\n${script}`);
    const d = await newPage();
    const dFrames = [];
    d.on('console', async (msg) => {
      if (!msg.text().startsWith('Message from server')) return;
      // console.log('Message from server ', event.data): the second argument is the frame.
      dFrames.push(await msg.args()[1].jsonValue());
    });
    // A page on roomcast's origin (daphne serves no HTTP here); the socket goes to daphne.
    await d.goto(`${ROOMCAST}/`);
    await d.addScriptTag({ content: script });

    const rFrames = () => r.evaluate(() => window.__frames.slice());
    const rTexts = () => r.$$eval('#log .msg .bubble', (els) => els.map((e) => e.textContent));

    // 1. The snippet's "Hello, server!" goes daphne -> Redis -> roomcast.
    await until('the snippet to get its own message back from daphne', () => dFrames.length >= 1);
    assert.deepEqual(JSON.parse(dFrames[0]), { message: 'Hello, server!' });
    await until("roomcast's page to show the snippet's message", async () => (await rFrames()).length >= 1);
    assert.equal((await rFrames())[0], dFrames[0], 'the same frame text on both sides');
    assert.deepEqual(await rTexts(), ['Hello, server!']);
    ok(`the seed snippet on daphne sent "Hello, server!": daphne echoed ${dFrames[0]} and roomcast's page got the identical text`);

    // 2. Typed in roomcast's page -> roomcast -> Redis -> Django consumer -> the snippet.
    const typed = 'typed on roomcast: caf\u00e9 \u{1F600} <b>not bold</b> "quotes" \\ back';
    await r.fill('#input', typed);
    await r.press('#input', 'Enter');
    await until('the Django-connected page to get the typed message', () => dFrames.length >= 2);
    await until("roomcast's page to get its own message back", async () => (await rFrames()).length >= 2);
    assert.deepEqual(JSON.parse(dFrames[1]), { message: typed });
    assert.equal((await rFrames())[1], dFrames[1], 'roomcast sent the bytes the Channels consumer sent');
    assert.ok(dFrames[1].includes('\\u00e9') && dFrames[1].includes('\\ud83d\\ude00'), `json.dumps escapes: ${dFrames[1]}`);
    assert.equal((await rTexts())[1], typed);
    ok(`typed in roomcast's page, reached the Django page; both got ${dFrames[1]}`);

    // 3. Sent on the snippet's socket (Django side) -> roomcast's page.
    const fromDjango = { text: 'sent on the daphne socket \u00fcn\u00efc\u00f6de', n: [1, 2.5, null, true] };
    await d.evaluate((m) => socket.send(JSON.stringify({ message: m })), fromDjango); // eslint-disable-line no-undef
    await until('both pages to get the Django-side message', async () => dFrames.length >= 3 && (await rFrames()).length >= 3);
    assert.deepEqual(JSON.parse(dFrames[2]), { message: fromDjango });
    assert.equal((await rFrames())[2], dFrames[2]);
    assert.equal((await rTexts())[2], JSON.stringify(fromDjango), 'the page shows a non-string message as its JSON');
    ok(`sent on the Django-connected socket, reached roomcast's page; both got ${dFrames[2]}`);

    // 4. A back end's group_send from Python -> both pages. The expected text is
    // Python's json.dumps of what json.loads made of the argument.
    const announced = '{"from": "django group_send", "price": 9.99, "big": 12345678901234567890, "items": ["\\u00e9", {}]}';
    const expected = '{"message": {"from": "django group_send", "price": 9.99, "big": 12345678901234567890, "items": ["\\u00e9", {}]}}';
    const said = await groupSend(announced);
    console.log(`# ${said}`);
    await until('both pages to get the group_send', async () => dFrames.length >= 4 && (await rFrames()).length >= 4);
    assert.equal(dFrames[3], expected, "the Channels consumer's text");
    assert.equal((await rFrames())[3], expected, "roomcast's text");
    ok(`group_send("chat_${ROOM}", {"type": "chat_message", ...}) from a Python script reached both pages as ${expected}`);

    // 5. A group_send with the sender's identity (SPEC section 9): roomcast's
    // members get the "user" field; the seed's consumer forwards only "message".
    const said2 = await groupSend('"from a signed-in Django user"', '"zo\\u00eb"');
    console.log(`# ${said2}`);
    await until('both pages to get the group_send with a user', async () => dFrames.length >= 5 && (await rFrames()).length >= 5);
    assert.equal(dFrames[4], '{"message": "from a signed-in Django user"}', "the seed consumer's text");
    const withUser = '{"message": "from a signed-in Django user", "user": "zo\\u00eb"}';
    assert.equal((await rFrames())[4], withUser, "roomcast's text carries the user");
    ok(`group_send with "user" reached roomcast's page as ${withUser} (and the seed consumer as ${dFrames[4]})`);

    // 6. roomcast's backplane publishes a message with a user: a Django
    // member of the group gets the event with "user", and both pages get it.
    const before = await numsub(CHANNEL);
    const listener = groupListen(1);
    await listener.listening;
    await until(`the Django listener to SUBSCRIBE ${CHANNEL}`, async () => (await numsub(CHANNEL)) === before + 1);
    const published = await roomcastPublish('{"text": "with an identity", "n": 1.5}', '{"id": 42}');
    console.log(`# ${published}`);
    const [event] = await listener.events;
    assert.deepEqual(event, { type: 'chat_message', message: { text: 'with an identity', n: 1.5 }, user: { id: 42 } },
      "the Django consumer's event");
    await until('both pages to get the message with a user', async () => dFrames.length >= 6 && (await rFrames()).length >= 6);
    assert.equal(dFrames[5], '{"message": {"text": "with an identity", "n": 1.5}}');
    assert.equal((await rFrames())[5], '{"message": {"text": "with an identity", "n": 1.5}, "user": {"id": 42}}');
    ok(`roomcast published a message with "user": the Django consumer's event is ${JSON.stringify(event)}`);

    // 7. One order, nothing extra; the frames differ only by the user field.
    await sleep(300);
    const all = await rFrames();
    const withoutUser = all.map((f) => {
      const v = JSON.parse(f);
      return JSON.stringify({ message: v.message });
    });
    assert.deepEqual(all.slice(0, 4), dFrames.slice(0, 4), 'both sides saw the same frames in the same order');
    assert.deepEqual(withoutUser.slice(4), dFrames.slice(4).map((f) => JSON.stringify(JSON.parse(f))),
      'the frames with a user are the consumer\'s, plus the user');
    assert.equal(all.length, 6, 'no duplicates');
    assert.equal(dFrames.length, 6, 'no duplicates');
    assert.deepEqual(pageErrors, [], 'no page raised a script error');
    ok(`both sides saw the same ${all.length} frames in one order, no script errors`);
  } finally {
    try { await context.close(); } catch { /* best effort */ }
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  console.log(`interop: ${checks} checks passed`);
}

main().then(
  () => { clearTimeout(watchdog); process.exit(0); },
  (err) => {
    console.error(`not ok - ${err.stack || err}`);
    process.exit(1);
  },
);
