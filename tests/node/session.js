// Toxiproxy's Node client, toxiproxy-node-client 4.x from npm, in a session as its users write
// it: node session.js API_URL UPSTREAM. Prints what it saw, one fact a line, for
// tests/real_toxiproxy.rs to compare.
"use strict";
const net = require("net");
const { Toxiproxy } = require("toxiproxy-node-client");

const [apiUrl, upstream] = process.argv.slice(2);

// One echo on a new connection to `listen`: what came back and how long it took (ms).
function echo(listen) {
  const [host, port] = [listen.slice(0, listen.lastIndexOf(":")), listen.slice(listen.lastIndexOf(":") + 1)];
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect({ host, port: Number(port) }, () => socket.write("ping"));
    socket.setTimeout(5000, () => socket.destroy(new Error("no echo within 5 s")));
    socket.once("data", (data) => {
      socket.destroy();
      resolve({ data: data.toString(), took: Date.now() - started });
    });
    socket.once("error", reject);
  });
}

// How a connection attempt to `listen` ends: "connected" or the error's code.
function tryConnect(listen) {
  const i = listen.lastIndexOf(":");
  return new Promise((resolve) => {
    const socket = net.connect({ host: listen.slice(0, i), port: Number(listen.slice(i + 1)) });
    socket.once("connect", () => { socket.destroy(); resolve("connected"); });
    socket.once("error", (e) => resolve(e.code));
  });
}

// The message of the error `promise` fails with.
async function failure(promise) {
  try {
    await promise;
    return "no error";
  } catch (e) {
    return e.message;
  }
}

(async () => {
  const toxiproxy = new Toxiproxy(apiUrl);
  console.log("version", (await toxiproxy.getVersion()).trim());

  const proxy = await toxiproxy.createProxy({ name: "node_echo", listen: "127.0.0.1:0", upstream });
  console.log("created", proxy.name, proxy.upstream === upstream, !proxy.listen.endsWith(":0"));
  let r = await echo(proxy.listen);
  console.log("plain", r.data, r.took < 200);

  const toxic = await proxy.addToxic({
    name: "slow", type: "latency", stream: "downstream", toxicity: 1,
    attributes: { latency: 300, jitter: 0 },
  });
  console.log("toxic", toxic.name, toxic.type, toxic.stream, toxic.attributes.latency);
  r = await echo(proxy.listen);
  console.log("with latency", r.data, r.took >= 300);
  const seen = await proxy.getToxic("slow");
  console.log("got toxic", seen.attributes.latency, seen.toxicity);
  const faster = await toxic.update({ ...toxic.toJson(), attributes: { latency: 100, jitter: 0 } });
  console.log("updated", faster.attributes.latency);
  // The client has no call that lists toxics: its own HTTP client gets them.
  const toxics = async (name) => (await toxiproxy.getApi().get(`${apiUrl}/proxies/${name}/toxics`)).data;
  console.log("toxics", JSON.stringify((await toxics("node_echo")).map((t) => t.name)));

  // The client updates a proxy with its whole body: enabled, listen and upstream.
  const down = await proxy.update({ enabled: false, listen: proxy.listen, upstream });
  console.log("disabled", down.enabled, await tryConnect(proxy.listen));
  const up = await down.update({ enabled: true, listen: down.listen, upstream });
  r = await echo(up.listen);
  console.log("enabled", up.enabled, up.listen === proxy.listen, r.data, r.took >= 100);

  console.log("duplicate", await failure(toxiproxy.createProxy({ name: "node_echo", listen: "127.0.0.1:0", upstream })));
  const populated = await toxiproxy.populate([
    { name: "node_other", listen: "127.0.0.1:0", upstream },
    { name: "node_echo", listen: proxy.listen, upstream },
  ]);
  console.log("populated", JSON.stringify(Object.keys(populated).sort()));
  console.log("identical proxy kept its toxics", (await toxics("node_echo")).length === 1);
  console.log("all", JSON.stringify(Object.keys(await toxiproxy.getAll()).sort()));

  await toxiproxy.reset();
  const after = await toxiproxy.get("node_echo");
  console.log("after reset", after.enabled, JSON.stringify(await toxics("node_echo")));
  r = await echo(after.listen);
  console.log("fast again", r.data, r.took < 200);

  await after.remove();
  console.log("removed", await failure(toxiproxy.get("node_echo")));
  await (await toxiproxy.get("node_other")).remove();
})().catch((e) => {
  console.error("session failed:", e);
  process.exit(1);
});
