// Baseline `uws`: uWebSockets.js on Node, speaking the chat protocol of
// ../protocol.mjs with uWS's own pub/sub (app.publish reaches every subscriber
// of the room's topic, the sender included; ws.publish would skip the sender).
//
// NOTE: the module is the npm package `uwebsockets@3.0.6`, a THIRD-PARTY
// repackaging of the uWebSockets.js native addon (upstream uNetworking does not
// publish uWebSockets.js to npm). It ships prebuilt uws_<os>_<arch>_<ABI>.node
// files, and its build for this machine's Node 20 (ABI 115) loads here.
import { createRequire } from "node:module";
import { roomOf, topicOf, handleText, BINARY_ERROR, MAX_PAYLOAD, portArg, exitOnSignals } from "../protocol.mjs";

const require = createRequire(import.meta.url);
const uWS = require("uwebsockets");

const port = portArg();
// DEFLATE=1 (loadtest compare --deflate): uWS's shared compressor (no context kept per
// connection).
const deflate = process.env.DEFLATE === "1";
// TLS_CERT and TLS_KEY (loadtest compare --tls CERT,KEY): SSLApp serves wss://.
const tls = process.env.TLS_CERT && process.env.TLS_KEY;
const decoder = new TextDecoder(); // uWS has already validated text frames as UTF-8
let listenSocket = null;

const app = (
    tls ? uWS.SSLApp({ cert_file_name: process.env.TLS_CERT, key_file_name: process.env.TLS_KEY }) : uWS.App()
)
    .ws("/ws/chat/*", {
        compression: deflate ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
        maxPayloadLength: MAX_PAYLOAD, // uWS default 16 KiB; Bun's default here
        maxBackpressure: MAX_PAYLOAD, // uWS default 64 KiB skips slow subscribers; Bun's default here
        closeOnBackpressureLimit: false,
        idleTimeout: 120, // with sendPingsAutomatically (default true)
        upgrade: (res, req, context) => {
            const room = roomOf(req.getUrl());
            if (room === null) {
                res.writeStatus("404 Not Found").end("not a chat room path\n");
                return;
            }
            res.upgrade(
                { topic: topicOf(room) },
                req.getHeader("sec-websocket-key"),
                req.getHeader("sec-websocket-protocol"),
                req.getHeader("sec-websocket-extensions"),
                context,
            );
        },
        open: (ws) => {
            ws.subscribe(ws.getUserData().topic);
        },
        message: (ws, message, isBinary) => {
            if (isBinary) {
                ws.send(BINARY_ERROR, false);
                return;
            }
            const r = handleText(decoder.decode(message));
            if (r.error) ws.send(r.error, false, deflate);
            // compress: uWS compresses a publish only when asked (its 4th argument,
            // default false); with the shared compressor it deflates once per
            // recipient that negotiated it.
            else app.publish(ws.getUserData().topic, r.broadcast, false, deflate);
        },
    })
    // /ws/echo/ (for tests/autobahn/compare.sh): echoes every message back, same
    // opcode, with the chat route's limits; compressed when the connection
    // negotiated permessage-deflate (uWS compresses only sends that ask for it).
    .ws("/ws/echo/", {
        compression: deflate ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
        maxPayloadLength: MAX_PAYLOAD,
        maxBackpressure: MAX_PAYLOAD,
        closeOnBackpressureLimit: false,
        idleTimeout: 120,
        message: (ws, message, isBinary) => {
            ws.send(message, isBinary, true);
        },
    })
    .any("/*", (res) => {
        res.writeStatus("404 Not Found").end("not found: chat is at /ws/chat/<room>/ (WebSocket)\n");
    })
    .listen("127.0.0.1", port, (token) => {
        if (!token) {
            console.error(`[uws] could not listen on 127.0.0.1:${port}`);
            process.exit(1);
        }
        listenSocket = token;
        console.error(`[uws] uWebSockets.js (npm uwebsockets@3.0.6, third-party build) listening on 127.0.0.1:${port}${tls ? " (TLS)" : ""}${deflate ? " (permessage-deflate)" : ""}`);
    });

exitOnSignals(() => listenSocket && uWS.us_listen_socket_close(listenSocket));
