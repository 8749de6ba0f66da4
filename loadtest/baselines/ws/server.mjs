// Baseline `ws`: the npm `ws` package (8.x) on Node, speaking the chat protocol
// of ../protocol.mjs. Rooms are a Map from room name to a Set of sockets; a
// message is serialized once and sent to every open socket of the room, the
// sender included, in the order the room's messages arrive.
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import { WebSocketServer, WebSocket } from "ws";
import { roomOf, isEchoPath, handleText, BINARY_ERROR, MAX_PAYLOAD, portArg, exitOnSignals } from "../protocol.mjs";

const port = portArg();
const rooms = new Map(); // room -> Set<WebSocket>

// TLS_CERT and TLS_KEY (loadtest compare --tls CERT,KEY): serve wss:// on https.createServer.
const tls = process.env.TLS_CERT && process.env.TLS_KEY;
const notFound = (req, res) => {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found: chat is at /ws/chat/<room>/ (WebSocket)\n");
};
const server = tls
    ? https.createServer(
          { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) },
          notFound,
      )
    : http.createServer(notFound);
// DEFLATE=1 (loadtest compare --deflate): permessage-deflate without context takeover
// either way, so no connection keeps a compressor; ws's own threshold (1 KiB) and
// compression level otherwise. Default off, as ws's default.
const deflate = process.env.DEFLATE === "1";
const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: deflate ? { serverNoContextTakeover: true, clientNoContextTakeover: true } : false,
    maxPayload: MAX_PAYLOAD,
});

// /ws/echo/ (for tests/autobahn/compare.sh): echoes every message back, same
// opcode, with the chat route's options (maxPayload, deflate, ws's default
// maxFragments of 16384).
const echoWss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: deflate ? { serverNoContextTakeover: true, clientNoContextTakeover: true } : false,
    maxPayload: MAX_PAYLOAD,
});

server.on("upgrade", (req, socket, head) => {
    if (isEchoPath(req.url)) {
        echoWss.handleUpgrade(req, socket, head, (ws) => {
            ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
            ws.on("error", () => {});
        });
        return;
    }
    const room = roomOf(req.url);
    if (room === null) {
        socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => join(ws, room));
});

function join(ws, room) {
    let members = rooms.get(room);
    if (!members) rooms.set(room, (members = new Set()));
    members.add(ws);
    ws.on("message", (data, isBinary) => {
        if (isBinary) return ws.send(BINARY_ERROR);
        const r = handleText(data.toString("utf8"));
        if (r.error) return ws.send(r.error);
        const frame = Buffer.from(r.broadcast); // encode once, send as text to all
        for (const peer of members) {
            if (peer.readyState === WebSocket.OPEN) peer.send(frame, { binary: false });
        }
    });
    ws.on("close", () => {
        members.delete(ws);
        if (members.size === 0 && rooms.get(room) === members) rooms.delete(room);
    });
    ws.on("error", () => {}); // a bad client's protocol error closes it; nothing else to do
}

server.on("error", (e) => {
    console.error(`[ws] ${e.message}`);
    process.exit(1);
});
server.listen(port, "127.0.0.1", () =>
    console.error(
        `[ws] listening on 127.0.0.1:${port}${tls ? " (TLS)" : ""}${deflate ? " (permessage-deflate)" : ""}`,
    ),
);
exitOnSignals(() => server.close());
