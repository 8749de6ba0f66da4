// Baseline `bun`: Bun's built-in WebSocket server (uWebSockets inside), speaking
// the chat protocol of ../protocol.mjs with Bun's pub/sub. server.publish()
// reaches every subscriber of the topic, the sender included (ws.publish()
// would skip the sender unless publishToSelf is set).
// Run with the `bun` binary from node_modules (see run.sh), not with node.
import { roomOf, isEchoPath, topicOf, handleText, BINARY_ERROR, MAX_PAYLOAD, portArg, exitOnSignals } from "../protocol.mjs";

const port = portArg();
// DEFLATE=1 (loadtest compare --deflate): Bun's permessage-deflate (its shared
// compressor and decompressor).
const deflate = process.env.DEFLATE === "1";
// TLS_CERT and TLS_KEY (loadtest compare --tls CERT,KEY): serve wss://.
const tls =
    process.env.TLS_CERT && process.env.TLS_KEY
        ? { cert: Bun.file(process.env.TLS_CERT), key: Bun.file(process.env.TLS_KEY) }
        : undefined;

const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    tls,
    fetch(req, server) {
        const url = new URL(req.url);
        // /ws/echo/ (for tests/autobahn/compare.sh): echoes every message back.
        if (isEchoPath(url.pathname) && server.upgrade(req, { data: { echo: true } })) return undefined;
        const room = roomOf(url.pathname);
        if (room !== null && server.upgrade(req, { data: { topic: topicOf(room) } })) return undefined;
        return new Response(
            room === null ? "not found: chat is at /ws/chat/<room>/ (WebSocket)\n" : "WebSocket upgrade required\n",
            { status: room === null ? 404 : 426 },
        );
    },
    websocket: {
        // Bun's defaults, stated: no compression (unless DEFLATE=1), 16 MiB messages and
        // backpressure, 120 s idle timeout with automatic pings.
        perMessageDeflate: deflate,
        maxPayloadLength: MAX_PAYLOAD,
        backpressureLimit: MAX_PAYLOAD,
        closeOnBackpressureLimit: false,
        idleTimeout: 120,
        open(ws) {
            if (!ws.data.echo) ws.subscribe(ws.data.topic);
        },
        message(ws, message) {
            if (ws.data.echo) {
                // same opcode (a string is text, a Buffer binary); compressed when
                // the connection negotiated permessage-deflate
                ws.send(message, true);
                return;
            }
            if (typeof message !== "string") {
                ws.send(BINARY_ERROR);
                return;
            }
            const r = handleText(message);
            if (r.error) ws.send(r.error, deflate);
            // compress (the 3rd argument) is passed explicitly: Bun's documented
            // default for server.publish differs between versions. It applies to the
            // subscribers that negotiated deflate.
            else server.publish(ws.data.topic, r.broadcast, deflate);
        },
    },
});

console.error(
    `[bun] Bun ${Bun.version} listening on ${server.hostname}:${server.port}${tls ? " (TLS)" : ""}${deflate ? " (permessage-deflate)" : ""}`,
);
exitOnSignals(() => server.stop(true));
