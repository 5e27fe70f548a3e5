/**
 * The floor's stand-in for a node agent: a Node process that dials the fixture worker's
 * `/connect` over a WebSocket (the `ws` package, as the real agent's link uses) and sends every
 * frame straight back. `node bench/floor/echo-agent.ts <worker url>`; prints "connected" when up.
 */
import WebSocket from "ws";

const base = process.argv[2];
if (base === undefined) {
  console.error("usage: node bench/floor/echo-agent.ts <worker url>");
  process.exit(2);
}

const socket = new WebSocket(`${base.replace(/^http/, "ws")}/connect`, { perMessageDeflate: false });
socket.on("open", () => console.log("echo agent: connected"));
socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
socket.on("error", (error) => {
  console.error(`echo agent: ${error.message}`);
  process.exit(1);
});
socket.on("close", () => process.exit(0));
process.on("SIGTERM", () => socket.close());
