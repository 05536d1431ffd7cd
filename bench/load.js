// HTTP load for bench/ad_serving.py: autocannon against one path, or against /x402/ad with
// a random slot and country per request. Prints one JSON line of figures.
//   node bench/load.js <base url> <seconds> <connections> <noop|fill|agent> [slots.json]
"use strict";
const fs = require("fs");
const autocannon = require("autocannon");

const [base, seconds, connections, mode, slotsFile] = process.argv.slice(2);
const slots = slotsFile ? JSON.parse(fs.readFileSync(slotsFile, "utf8")) : [];
const countries = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "AU", "NL"];
const browser =
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " +
  "Chrome/131.0 Safari/537.36";
const agent = "python-httpx/0.28.1";
const pick = (list) => list[Math.floor(Math.random() * list.length)];

function setupRequest(request) {
  const [pub, slot] = pick(slots);
  request.path =
    `/x402/ad?pub_id=${pub}&slot_id=${slot}&format=banner&geo=${pick(countries)}`;
  request.headers = { "user-agent": mode === "agent" ? agent : browser };
  return request;
}

const options = {
  url: base,
  connections: Number(connections),
  duration: Number(seconds),
  requests: [mode === "noop" ? { method: "GET", path: "/healthz" } : { method: "GET", setupRequest }],
};
autocannon(options, (error, result) => {
  if (error) throw error;
  const codes = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats || {})) codes[code] = stats.count;
  console.log(
    JSON.stringify({
      mode,
      connections: Number(connections),
      rps: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      codes,
      errors: result.errors,
      timeouts: result.timeouts,
    }),
  );
});
