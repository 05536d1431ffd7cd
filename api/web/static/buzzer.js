// Buzzer Network pages: the wallet (EIP-1193, EIP-6963 discovery), sign-in with SIWE into
// the session cookie, forms sent to the JSON API with the CSRF token (errors shown next to
// their fields, nothing typed is lost), and transactions the server builds, sent by the
// wallet and followed until the indexer has seen them. Plain JavaScript, no build step.
(() => {
  "use strict";
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const chainMeta = $("meta[name=buzzer-chain]");
  const CHAIN_ID = Number(chainMeta.content);
  const CHAIN_NAME = chainMeta.dataset.name;
  const POLL_MS = 1000;
  const MINE_TIMEOUT_MS = 180000;

  const csrf = () => $("meta[name=csrf-token]").content;
  function setCsrf(token) {
    $("meta[name=csrf-token]").content = token;
    document.body.setAttribute("hx-headers", JSON.stringify({ "X-CSRF-Token": token }));
  }

  function notice(text, ok = false) {
    const box = $("[data-notice]");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
    box.classList.toggle("ok", ok);
  }

  // --- the JSON API ---------------------------------------------------------------------
  async function api(method, path, body) {
    const init = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { ok: false, status: 0, error: { code: "offline", message: "The server cannot be reached. Check your connection and try again.", details: {} } };
    }
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (err) { data = null; }
    }
    const error = response.ok ? null : (data && data.error) || { code: `http_${response.status}`, message: `The server answered ${response.status}.`, details: {} };
    return { ok: response.ok, status: response.status, data, error };
  }

  const SESSION_CODES = new Set(["no_token", "token_expired", "invalid_token", "session_ended", "csrf_failed"]);

  // --- the wallet -----------------------------------------------------------------------
  const announced = new Map(); // EIP-6963: uuid -> {info, provider}
  let chosen = null;
  window.addEventListener("eip6963:announceProvider", (event) => {
    announced.set(event.detail.info.uuid, event.detail);
    renderChoices();
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));

  function provider() {
    if (chosen) return chosen;
    const saved = sessionStorage.getItem("buzzer.wallet");
    if (saved && announced.has(saved)) return announced.get(saved).provider;
    if (announced.size === 1) return Array.from(announced.values())[0].provider;
    if (announced.size === 0 && window.ethereum) return window.ethereum;
    return null;
  }

  function renderChoices() {
    const box = $("[data-wallet-choices]");
    if (!box || announced.size < 2) return;
    const list = $("[data-wallet-list]", box);
    list.textContent = "";
    for (const [uuid, detail] of announced) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button secondary";
      button.textContent = detail.info.name;
      button.addEventListener("click", () => {
        chosen = detail.provider;
        sessionStorage.setItem("buzzer.wallet", uuid);
        $$("button", list).forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
        connect();
      });
      list.appendChild(button);
    }
    box.hidden = false;
  }

  class WalletError extends Error {}

  function walletMessage(err) {
    const code = err && (err.code ?? (err.data && err.data.code));
    if (code === 4001) return "You rejected the request in your wallet. Nothing was signed or sent.";
    if (code === 4100) return "Your wallet has not authorised this site. Connect it first.";
    if (code === 4902) return `Your wallet does not know ${CHAIN_NAME} (chain ${CHAIN_ID}). Add it in your wallet, then try again.`;
    if (code === -32002) return "Your wallet already has a request open: finish it there first.";
    const text = (err && (err.message || String(err))) || "unknown error";
    return `Your wallet refused: ${text}`;
  }

  async function request(method, params) {
    const wallet = provider();
    if (!wallet) {
      throw new WalletError(announced.size > 1
        ? "Choose one of your wallets first."
        : "No browser wallet found. Install a wallet extension (any EIP-1193 wallet) and reload this page.");
    }
    try {
      return await wallet.request(params === undefined ? { method } : { method, params });
    } catch (err) {
      throw new WalletError(walletMessage(err));
    }
  }

  async function account() {
    const accounts = await request("eth_requestAccounts");
    if (!accounts || !accounts.length) throw new WalletError("Your wallet shared no account.");
    return accounts[0];
  }

  async function onRightChain() {
    const current = parseInt(await request("eth_chainId"), 16);
    return current === CHAIN_ID ? true : current;
  }

  async function switchChain() {
    await request("wallet_switchEthereumChain", [{ chainId: "0x" + CHAIN_ID.toString(16) }]);
    const right = await onRightChain();
    if (right !== true) throw new WalletError(`Your wallet is still on chain ${right}.`);
  }

  function toHex(text) {
    return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Sign in: a message from the server for this address, signed by the wallet, exchanged for
  // the session cookie. Returns the wallet address, or throws with a message for the user.
  async function signIn() {
    const address = await account();
    const right = await onRightChain();
    if (right !== true) {
      throw new WalletError(`Your wallet is on chain ${right}; Buzzer Network runs on ${CHAIN_NAME} (chain ${CHAIN_ID}). Switch network first.`);
    }
    const draft = await api("GET", `/web/sign-in/message?address=${encodeURIComponent(address)}`);
    if (!draft.ok) throw new WalletError(draft.error.message);
    const signature = await request("personal_sign", [toHex(draft.data.message), address]);
    const opened = await api("POST", "/web/session", { message: draft.data.message, signature });
    if (!opened.ok) throw new WalletError(`Sign-in was refused: ${opened.error.message}`);
    setCsrf(opened.data.csrf_token);
    return opened.data.wallet;
  }

  // --- the sign-in page -------------------------------------------------------------------
  const signInBox = $("[data-sign-in]");
  const say = (text, ok = false) => {
    const box = $("[data-sign-in-message]");
    if (!box) return notice(text, ok);
    box.textContent = text;
    box.classList.toggle("ok", ok);
  };
  const done = (step) => { const li = $(`[data-step=${step}]`); if (li) li.dataset.done = ""; };

  async function connect() {
    if (!signInBox) return;
    say("");
    const connectButton = $("[data-connect]", signInBox);
    try {
      connectButton.disabled = true;
      await account();
      done("connect");
      const right = await onRightChain();
      if (right !== true) {
        $("[data-switch-chain]", signInBox).hidden = false;
        $("[data-sign]", signInBox).hidden = true;
        say(`Your wallet is on chain ${right}; Buzzer Network runs on ${CHAIN_NAME} (chain ${CHAIN_ID}). Switch network to continue.`);
        return;
      }
      done("chain");
      $("[data-switch-chain]", signInBox).hidden = true;
      $("[data-sign]", signInBox).hidden = false;
      $("[data-sign]", signInBox).focus();
    } catch (err) {
      say(err.message);
    } finally {
      connectButton.disabled = false;
    }
  }

  if (signInBox) {
    $("[data-connect]", signInBox).addEventListener("click", connect);
    $("[data-switch-chain]", signInBox).addEventListener("click", async () => {
      try {
        await switchChain();
        connect();
      } catch (err) { say(err.message); }
    });
    $("[data-sign]", signInBox).addEventListener("click", async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      say("Check your wallet: it asks you to sign the sign-in message.", true);
      try {
        await signIn();
        done("sign");
        say("Signed in.", true);
        window.location.assign(signInBox.dataset.next || "/app");
      } catch (err) {
        say(err.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  const signOut = $("[data-sign-out]");
  if (signOut) {
    signOut.addEventListener("click", async () => {
      await api("POST", "/web/sign-out");
      window.location.assign("/");
    });
  }

  // The wallet changed account or chain under a signed-in page: say so.
  const signedInAs = ($("[data-wallet]") || { dataset: {} }).dataset.signedIn;
  const watched = provider();
  if (watched && watched.on && signedInAs) {
    watched.on("accountsChanged", (accounts) => {
      if (accounts[0] && accounts[0].toLowerCase() !== signedInAs.toLowerCase()) {
        notice(`Your wallet switched to ${accounts[0]}, but this page is signed in as ${signedInAs}. Sign out and in again to use the new account.`);
      }
    });
    watched.on("chainChanged", (id) => {
      if (parseInt(id, 16) !== CHAIN_ID) notice(`Your wallet switched to chain ${parseInt(id, 16)}; transactions here need ${CHAIN_NAME} (chain ${CHAIN_ID}).`);
      else notice("");
    });
  }

  // --- transactions -----------------------------------------------------------------------
  const short = (hash) => `${hash.slice(0, 10)}…${hash.slice(-6)}`;

  function status(box, text, kind) {
    if (!box) return;
    box.textContent = "";
    const line = document.createElement("span");
    if (kind) line.className = kind;
    line.textContent = text;
    box.appendChild(line);
  }

  // Send transactions the API built, one after another; resolves true when all were seen
  // by the indexer, false when one failed (the status says why).
  async function sendAll(txs, box) {
    let from;
    try {
      from = await account();
      if ((await onRightChain()) !== true) {
        status(box, `Switching your wallet to ${CHAIN_NAME}…`);
        await switchChain();
      }
    } catch (err) {
      status(box, err.message, "bad");
      return false;
    }
    for (let i = 0; i < txs.length; i++) {
      const tx = txs[i];
      const step = txs.length > 1 ? `(${i + 1} of ${txs.length}) ` : "";
      status(box, `${step}Confirm in your wallet: ${tx.description || "transaction"}…`);
      let hash;
      try {
        hash = await request("eth_sendTransaction", [{ from, to: tx.to, data: tx.data, value: tx.value }]);
      } catch (err) {
        status(box, `${step}${err.message}`, "bad");
        return false;
      }
      status(box, `${step}Sent ${short(hash)}; waiting for it to be mined…`);
      const started = Date.now();
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        const reply = await api("GET", `/api/v1/tx/${hash}`);
        if (!reply.ok) {
          if (SESSION_CODES.has(reply.error.code)) { status(box, `${step}Sent ${short(hash)}. Your session ended, so its status cannot be followed here: sign in again.`, "bad"); return false; }
          continue; // the RPC hiccuped: ask again
        }
        const state = reply.data.state;
        if (state === "reverted") {
          status(box, `${step}Reverted in block ${reply.data.block}: ${reply.data.reason}. Nothing changed on-chain; only the gas was spent.`, "bad");
          return false;
        }
        if (state === "indexed") break;
        if (state === "mined") status(box, `${step}Mined in block ${reply.data.block}; waiting for the indexer…`);
        if (Date.now() - started > MINE_TIMEOUT_MS) {
          status(box, `${step}${short(hash)} is not mined after ${MINE_TIMEOUT_MS / 60000} minutes. Check it in your wallet before sending again.`, "bad");
          return false;
        }
      }
    }
    status(box, txs.length > 1 ? "Done: all transactions confirmed." : "Done: confirmed on-chain.", "ok");
    return true;
  }

  function follow(then, data) {
    if (!then || then === "stay") return;
    if (then === "reload") { window.location.reload(); return; }
    if (then.startsWith("redirect:")) {
      const target = then.slice(9).replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent((data && data[key]) ?? ""));
      window.location.assign(target);
    }
  }

  async function sessionLost(box, error) {
    // Keep what was typed: sign in again on this page, then the user sends it again.
    const text = error.code === "csrf_failed" ? error.message : "Your session has expired. Sign in again here; what you typed is kept.";
    box.textContent = "";
    const line = document.createElement("span");
    line.textContent = text + " ";
    const again = document.createElement("button");
    again.type = "button";
    again.className = "button small";
    again.textContent = "Sign in again";
    again.addEventListener("click", async () => {
      again.disabled = true;
      try {
        await signIn();
        box.textContent = "Signed in again. Send it once more.";
        box.classList.add("ok");
      } catch (err) {
        box.textContent = err.message;
      }
    });
    box.append(line, again);
  }

  $$("[data-tx]").forEach((button) => {
    button.addEventListener("click", async () => {
      const box = button.parentElement.querySelector("[data-tx-status]");
      button.disabled = true;
      status(box, "Preparing the transaction…");
      try {
        const [method, path] = splitEndpoint(button.dataset.tx);
        const reply = await api(method, path, JSON.parse(button.dataset.txBody || "{}"));
        if (!reply.ok) {
          if (SESSION_CODES.has(reply.error.code)) return sessionLost(box, reply.error);
          status(box, reply.error.message, "bad");
          return;
        }
        const txs = Array.isArray(reply.data) ? reply.data : [reply.data];
        if (!txs.length) { status(box, "Nothing to send.", "ok"); return; }
        if (await sendAll(txs, box)) follow(button.dataset.then, reply.data);
      } finally {
        button.disabled = false;
      }
    });
  });

  // --- forms ------------------------------------------------------------------------------
  function splitEndpoint(text) {
    const [method, ...rest] = text.trim().split(/\s+/);
    return [method.toUpperCase(), rest.join(" ")];
  }

  // A decimal amount ("1.5") to integer atomic units (1500000 for 6 decimals), exactly.
  function toUnits(text, decimals) {
    const clean = text.trim();
    if (!/^\d+(\.\d+)?$/.test(clean)) return null;
    const [whole, frac = ""] = clean.split(".");
    if (frac.length > decimals) return null;
    const digits = (whole + frac.padEnd(decimals, "0")).replace(/^0+(?=\d)/, "");
    const number = Number(digits);
    return Number.isSafeInteger(number) ? number : digits;
  }

  function setPath(target, dotted, value) {
    const keys = dotted.split(".");
    let node = target;
    keys.slice(0, -1).forEach((key) => { node = node[key] = node[key] || {}; });
    node[keys[keys.length - 1]] = value;
  }

  function collect(form) {
    const body = {};
    const problems = [];
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.dataset.skip !== undefined) continue;
      if ((el.type === "radio") && !el.checked) continue;
      const kind = el.dataset.type || (el.type === "checkbox" ? "bool" : "text");
      let value = el.value;
      if (kind === "bool") value = el.checked;
      else if (value.trim() === "" && kind !== "text") { if (el.required) problems.push([el.name, "required"]); continue; }
      else if (kind === "int") { value = Number(value); if (!Number.isSafeInteger(value)) { problems.push([el.name, "a whole number"]); continue; } }
      else if (kind === "units") {
        const decimals = Number(el.dataset.decimals || 6);
        value = toUnits(el.value, decimals);
        if (value === null) { problems.push([el.name, `an amount like 12.50 (at most ${decimals} decimals)`]); continue; }
      } else if (kind === "list") value = el.value.split(",").map((s) => s.trim()).filter(Boolean);
      else if (kind === "lines") value = el.value.split("\n").map((s) => s.trim()).filter(Boolean);
      else if (value === "" && el.dataset.optional !== undefined) continue;
      setPath(body, el.name, value);
    }
    return { body, problems };
  }

  function clearErrors(form) {
    $$("[data-error-for]", form).forEach((el) => { el.textContent = ""; });
    $$("[aria-invalid]", form).forEach((el) => el.removeAttribute("aria-invalid"));
  }

  function showError(form, field, text) {
    const names = String(field).split(".");
    // "body.targeting.geo" → try "targeting.geo", then "geo"
    for (let i = 0; i < names.length; i++) {
      const name = names.slice(i).join(".");
      const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
      if (slot) {
        slot.textContent = text;
        const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
        if (input) input.setAttribute("aria-invalid", "true");
        return true;
      }
    }
    return false;
  }

  $$("form[data-api]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = $("[data-form-message]", form);
      box.textContent = "";
      box.classList.remove("ok");
      clearErrors(form);
      const { body, problems } = collect(form);
      if (problems.length) {
        problems.forEach(([name, what]) => showError(form, name, `Enter ${what}.`));
        box.textContent = "Some fields need attention.";
        return;
      }
      const submit = $("[type=submit]", form);
      const label = submit.textContent;
      submit.disabled = true;
      submit.textContent = form.dataset.busy || "Saving…";
      try {
        const [method, path] = splitEndpoint(form.dataset.api);
        const reply = await api(method, path, body);
        if (!reply.ok) {
          if (SESSION_CODES.has(reply.error.code)) return sessionLost(box, reply.error);
          const listed = (reply.error.details && reply.error.details.problems) || [];
          let placed = 0;
          listed.forEach((p) => { if (showError(form, p.field, p.problem)) placed++; });
          if (reply.error.details && reply.error.details.field) {
            if (showError(form, reply.error.details.field, reply.error.message)) placed++;
          }
          box.textContent = placed ? "Some fields need attention." : reply.error.message;
          if (placed) {
            const first = form.querySelector("[aria-invalid=true]");
            if (first) first.focus();
          }
          return;
        }
        if (form.dataset.then === "tx" || form.dataset.tx) {
          const txs = Array.isArray(reply.data) ? reply.data : [reply.data];
          if (await sendAll(txs, box)) follow(form.dataset.after || "reload", reply.data);
          return;
        }
        if (form.dataset.done) { box.textContent = form.dataset.done; box.classList.add("ok"); }
        follow(form.dataset.then || "reload", reply.data);
      } finally {
        submit.disabled = false;
        submit.textContent = label;
      }
    });
  });

  // Copy buttons: `data-copy="#selector"` copies that element's text.
  $$("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = $(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch (err) {
        const range = document.createRange();
        range.selectNodeContents(source);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
    });
  });

  window.Buzzer = { api, signIn, sendAll, toUnits, notice, setPath, clearErrors, showError, SESSION_CODES };
})();
