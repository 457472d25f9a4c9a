// Optional: publishes one headline into the `news` room through Redis, with Node's stock
// @socket.io/redis-emitter — the way a Node.js backend already written for a socket.io cluster reaches
// the clients, without the server API. volna must run with --redis (docs/cluster.md).
//
//   node examples/price-feed/emit_headline.mjs --redis redis://127.0.0.1:6379 "Markets open higher"
//
// The two npm packages it needs (redis, @socket.io/redis-emitter) are not installed for this example:
// they are taken from a folder that has them in its node_modules, by default tests/cluster-interop
// (scripts/install-test-deps.sh installs it); --modules DIR names another one.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    redis: { type: "string", default: "redis://127.0.0.1:6379" },
    prefix: { type: "string", default: "socket.io" }, // volna's redis_prefix / the adapter's `key`
    room: { type: "string", default: "news" },
    modules: { type: "string", default: path.join(here, "../../tests/cluster-interop") },
  },
});
const text = positionals.join(" ") || "Headline from a Redis emitter";

const require = createRequire(path.join(path.resolve(values.modules), "package.json"));
let createClient, Emitter;
try {
  ({ createClient } = require("redis"));
  ({ Emitter } = require("@socket.io/redis-emitter"));
} catch (e) {
  console.error(`emit_headline: needs redis and @socket.io/redis-emitter under ${values.modules}/node_modules: ${e.message}`);
  process.exit(2);
}

const client = createClient({ url: values.redis, socket: { connectTimeout: 5000, reconnectStrategy: false } });
client.on("error", () => {}); // reported by connect() below
try {
  await client.connect();
  // Members of the room receive the event `headline` with this one argument (on /ws:
  // {"type":"event","room":"news","event":"headline","args":[{…}]}).
  new Emitter(client, { key: values.prefix }).to(values.room).emit("headline", { text, source: "redis-emitter" });
  await client.quit(); // after the PUBLISH above has been sent
  console.log(`emitted headline to ${values.room} through ${values.redis}: ${text}`);
} catch (e) {
  console.error(`emit_headline: ${e.message}`);
  process.exitCode = 1;
  await client.disconnect().catch(() => {});
}
