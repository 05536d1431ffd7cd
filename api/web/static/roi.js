// The landing pages' ROI calculator: integer maths in the token's atomic units (6 decimals,
// as USDC), with BigInt, so no figure ever passes through a float. The escrow's split:
// publisher = charged × (10000 − fee_bps) / 10000 rounded down, the network gets the rest.
(() => {
  "use strict";
  const DECIMALS = 6n;
  const UNIT = 10n ** DECIMALS;

  // "2.50" → 2500000n; null when it is not a plain non-negative decimal.
  function units(text, decimals = DECIMALS) {
    const match = /^(\d{1,15})(?:\.(\d*))?$/.exec(text.trim().replace(/,/g, ""));
    if (!match || (match[2] || "").length > Number(decimals)) return null;
    return BigInt(match[1]) * 10n ** decimals + BigInt((match[2] || "").padEnd(Number(decimals), "0") || "0");
  }

  const grouped = (value) => value.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");

  // 1700000000n → "1,700.00" (at least two decimals, trailing zeros beyond them cut).
  function money(value) {
    const whole = value / UNIT;
    const frac = (value % UNIT).toString().padStart(Number(DECIMALS), "0").replace(/0+$/, "").padEnd(2, "0");
    return `${grouped(whole)}.${frac}`;
  }

  const RULES = {
    views: [(t) => (/^\d{1,12}$/.test(t.trim().replace(/,/g, "")) ? BigInt(t.trim().replace(/,/g, "")) : null), "Enter a whole number of page views."],
    fill: [(t) => { const bps = units(t, 2n); return bps !== null && bps <= 10000n ? bps : null; }, "Enter a percentage from 0 to 100 (up to two decimals)."],
    cpm: [(t) => units(t), "Enter an amount in USDC, e.g. 2.50 (up to six decimals)."],
    budget: [(t) => units(t), "Enter an amount in USDC, e.g. 500 (up to six decimals)."],
    bid: [(t) => { const v = units(t); return v ? v : null; }, "Enter a CPM above zero, e.g. 2.50."],
  };

  function read(form) {
    const values = {};
    let ok = true;
    for (const input of form.querySelectorAll("input[name]")) {
      const [parse, message] = RULES[input.name];
      const value = parse(input.value);
      const error = form.querySelector(`[data-roi-error="${input.name}"]`);
      error.textContent = value === null ? message : "";
      input.setAttribute("aria-invalid", value === null ? "true" : "false");
      if (value === null) ok = false;
      values[input.name] = value;
    }
    return ok ? values : null;
  }

  function split(charged, feeBps) {
    const publisher = (charged * (10000n - feeBps)) / 10000n;
    return [publisher, charged - publisher];
  }

  const compute = {
    publisher(v, feeBps) {
      const impressions = (v.views * v.fill) / 10000n;
      const gross = (impressions * v.cpm) / 1000n; // CPM: the bid per thousand, divided once
      const [publisher, network] = split(gross, feeBps);
      return { impressions: grouped(impressions), gross: money(gross), publisher: money(publisher), network: money(network) };
    },
    advertiser(v, feeBps) {
      const reach = (v.budget * 1000n) / v.bid;
      const [toPublishers, fee] = split(v.budget, feeBps);
      return { reach: grouped(reach), to_publishers: money(toPublishers), fee: money(fee) };
    },
  };

  function update(form) {
    const values = read(form);
    const feeBps = BigInt(form.dataset.feeBps);
    const out = values ? compute[form.dataset.roi](values, feeBps) : {};
    for (const output of form.querySelectorAll("[data-out]")) {
      output.value = out[output.dataset.out] ?? "—";
    }
  }

  for (const form of document.querySelectorAll("form[data-roi]")) {
    form.addEventListener("input", () => update(form));
    form.addEventListener("submit", (event) => event.preventDefault());
    update(form);
  }
})();
