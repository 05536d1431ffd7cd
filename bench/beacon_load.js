// HTTP load for bench/beacon_intake.py: autocannon against the no-op endpoint (/healthz), or
// the impression beacon with a fresh token per request (read from a file, one a line).
// Prints one JSON line of figures.
//   node bench/beacon_load.js <base url> <seconds> <connections> <noop|beacon|pixel> [tokens]
//       [first token to use]
"use strict";
const fs = require("fs");
const autocannon = require("autocannon");

const [base, seconds, connections, mode, tokensFile, first] = process.argv.slice(2);
const tokens = tokensFile ? fs.readFileSync(tokensFile, "utf8").split("\n").filter(Boolean) : [];
const browser =
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " +
  "Chrome/131.0 Safari/537.36";
let next = Number(first || 0);

function setupRequest(request) {
  const token = tokens[next++ % tokens.length];
  request.path = `/track/impression?token=${token}`;
  request.method = mode === "pixel" ? "GET" : "POST";
  request.headers = { "user-agent": browser };
  return request;
}

const options = {
  url: base,
  connections: Number(connections),
  duration: Number(seconds),
  headers: { "user-agent": browser },
  requests: [mode === "noop" ? { method: "GET", path: "/healthz" } : { setupRequest }],
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
      total: result.requests.total,
      codes,
      errors: result.errors,
      timeouts: result.timeouts,
    }),
  );
});
