// The chat protocol shared by the JavaScript baselines (bun, uws, ws): Django
// Channels' ChatConsumer as roomcast's SPEC section 2 states it.
//   ws://HOST/ws/chat/<room>/   <room> is one path segment (Channels' <str:...>),
//                               the trailing slash optional
//   client -> {"message": <any JSON value>, ...}
//   server -> {"message": <that value>} to every member of the room, sender included
// Bad input is never broadcast: the sender alone gets {"error": "..."}.

const CHAT_PATH = /^\/ws\/chat\/([^/?#]+)\/?$/;

// roomOf("/ws/chat/lobby/?x=1") -> "lobby"; null when the path is not a chat path.
export function roomOf(url) {
    const q = url.indexOf("?");
    const m = CHAT_PATH.exec(q < 0 ? url : url.slice(0, q));
    return m ? m[1] : null;
}

// The Autobahn TestSuite echo endpoint (tests/autobahn/compare.sh), as roomcast's
// /ws/echo/ (SPEC section 3): every message comes back to its sender, same opcode.
// No chat path matches it, so the chat behaviour is unchanged.
const ECHO_PATH = /^\/ws\/echo\/?$/;
export function isEchoPath(url) {
    const q = url.indexOf("?");
    return ECHO_PATH.test(q < 0 ? url : url.slice(0, q));
}

// Channels' group name for a room (also used as the pub/sub topic).
export const topicOf = (room) => `chat_${room}`;

// handleText(text) -> { broadcast: "<frame for the room>" } or { error: "<frame for the sender>" }
export function handleText(text) {
    let obj;
    try {
        obj = JSON.parse(text);
    } catch (e) {
        return { error: JSON.stringify({ error: `invalid JSON: ${e.message}` }) };
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
        return { error: JSON.stringify({ error: "expected a JSON object with a \"message\" field" }) };
    }
    if (!Object.prototype.hasOwnProperty.call(obj, "message")) {
        return { error: JSON.stringify({ error: "missing \"message\" field" }) };
    }
    return { broadcast: JSON.stringify({ message: obj.message }) };
}

export const BINARY_ERROR = JSON.stringify({ error: "binary messages are not supported; send JSON text" });

// Largest message accepted, the same for every JS baseline (Bun's default).
export const MAX_PAYLOAD = 16 * 1024 * 1024;

// The port from argv[2] (run.sh passes it).
export function portArg() {
    const port = Number(process.argv[2]);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
        console.error(`usage: ${process.argv[1]} PORT`);
        process.exit(2);
    }
    return port;
}

// Exit 0 on SIGTERM/SIGINT after running stop() (best effort).
export function exitOnSignals(stop) {
    for (const sig of ["SIGTERM", "SIGINT"]) {
        process.on(sig, () => {
            try {
                stop?.();
            } finally {
                process.exit(0);
            }
        });
    }
}
