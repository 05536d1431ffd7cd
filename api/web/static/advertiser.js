// Advertiser pages: the campaign builder (a draft through the JSON API, then its creative
// uploaded, errors next to their fields and nothing typed lost), the live review and the
// creative's preview. Uses window.Buzzer (buzzer.js) for the API and amounts.
(() => {
  "use strict";
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const { SESSION_CODES, setPath, clearErrors, showError } = window.Buzzer;
  const csrf = () => $("meta[name=csrf-token]").content;

  // The form as the API's JSON body; [name, what to enter] for what cannot be read.
  function collect(form) {
    const body = {};
    const problems = [];
    const checks = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.dataset.skip !== undefined) continue;
      if (el.type === "radio" && !el.checked) continue;
      const kind = el.dataset.type || "text";
      const text = el.value.trim();
      if (kind === "checks") {
        checks[el.name] = checks[el.name] || [];
        if (el.checked) checks[el.name].push(el.value);
        continue;
      }
      if (kind === "bool") { setPath(body, el.name, el.checked); continue; }
      if (text === "") {
        if (el.required) problems.push([el.name, "a value"]);
        else if (el.dataset.optional === undefined && kind === "text") setPath(body, el.name, "");
        continue;
      }
      let value = text;
      if (kind === "int") {
        value = Number(text);
        if (!Number.isSafeInteger(value)) { problems.push([el.name, "a whole number"]); continue; }
      } else if (kind === "units") {
        const decimals = Number(el.dataset.decimals || 6);
        value = window.Buzzer.toUnits(text, decimals);
        if (value === null) { problems.push([el.name, `an amount like 12.50 (at most ${decimals} decimals)`]); continue; }
      } else if (kind === "list") {
        value = text.split(",").map((s) => s.trim()).filter(Boolean);
        if (el.dataset.upper !== undefined) value = value.map((s) => s.toUpperCase());
      } else if (kind === "date") {
        value = `${text}T00:00:00Z`;
      }
      setPath(body, el.name, value);
    }
    Object.entries(checks).forEach(([name, values]) => setPath(body, name, values));
    return { body, problems };
  }

  // An API error placed next to its fields; true when at least one found its field.
  function place(form, error) {
    let placed = 0;
    ((error.details && error.details.problems) || []).forEach((p) => { if (showError(form, p.field, p.problem)) placed++; });
    if (error.details && error.details.field && showError(form, error.details.field, error.message)) placed++;
    return placed > 0;
  }

  function focusFirstError(form) {
    const first = form.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  }

  async function upload(path, file) {
    const data = new FormData();
    data.append("file", file, file.name);
    let response;
    try {
      response = await fetch(path, { method: "POST", credentials: "same-origin", headers: { Accept: "application/json", "X-CSRF-Token": csrf() }, body: data });
    } catch (err) {
      return { ok: false, error: { code: "offline", message: "The server cannot be reached. Check your connection and try again.", details: {} } };
    }
    let reply = null;
    try { reply = await response.json(); } catch (err) { reply = null; }
    if (response.ok) return { ok: true, data: reply };
    const error = (reply && reply.error) || { code: `http_${response.status}`, message: `The server answered ${response.status}.`, details: {} };
    return { ok: false, error };
  }

  // The session ended: sign in again here, keeping the form as typed.
  function signInAgain(box) {
    box.textContent = "Your session has expired. Sign in again here; what you typed is kept. ";
    const again = document.createElement("button");
    again.type = "button";
    again.className = "button small";
    again.textContent = "Sign in again";
    again.addEventListener("click", async () => {
      again.disabled = true;
      try {
        await window.Buzzer.signIn();
        box.textContent = "Signed in again. Send it once more.";
        box.classList.add("ok");
      } catch (err) {
        box.textContent = err.message;
      }
    });
    box.appendChild(again);
  }

  // --- the creative: checked and previewed before anything is sent -------------------------
  function limits(form) {
    return {
      image: Number(form.dataset.imageLimit || 1000000),
      video: Number(form.dataset.videoLimit || 10000000),
      sizes: new Set((form.dataset.bannerSizes || "").split(",").filter(Boolean)),
    };
  }

  // Resolves to a problem with the file for this format, or "" when it may be uploaded.
  function checkCreative(form, file, format) {
    const limit = limits(form);
    const video = file.type.startsWith("video/");
    if (!video && !file.type.startsWith("image/")) return Promise.resolve("Choose a PNG, JPEG, GIF, WebP, MP4 or WebM file.");
    if (format === "video" && !video) return Promise.resolve("A video campaign needs an MP4 or WebM creative.");
    if (format !== "video" && video) return Promise.resolve(`A ${format} campaign needs an image creative.`);
    if (video) return Promise.resolve(file.size > limit.video ? "A video creative is at most 10 MB." : "");
    if (file.size > limit.image) return Promise.resolve(`An image creative is at most ${limit.image / 1000000} MB; this one is ${(file.size / 1000000).toFixed(2)} MB.`);
    return dimensions(file).then(([w, h]) => (format === "banner" && limit.sizes.size && !limit.sizes.has(`${w}x${h}`)
      ? `${w}×${h} is not a standard banner size.` : ""));
  }

  function dimensions(file) {
    return new Promise((resolve) => {
      const image = new Image();
      const url = URL.createObjectURL(file);
      image.onload = () => { resolve([image.naturalWidth, image.naturalHeight]); URL.revokeObjectURL(url); };
      image.onerror = () => { resolve([0, 0]); URL.revokeObjectURL(url); };
      image.src = url;
    });
  }

  function preview(form, file) {
    const box = $("[data-preview]", form);
    if (!box) return;
    const holder = $("[data-preview-box]", box);
    holder.textContent = "";
    if (!file) { box.hidden = true; return; }
    const url = URL.createObjectURL(file);
    let media;
    if (file.type.startsWith("video/")) {
      media = document.createElement("video");
      media.controls = true;
      media.muted = true;
      media.setAttribute("aria-label", "Preview of the creative");
    } else {
      media = document.createElement("img");
      media.alt = "Preview of the creative";
    }
    media.src = url;
    holder.appendChild(media);
    const caption = $("[data-preview-caption]", box);
    caption.textContent = `${file.name}, ${(file.size / 1000).toFixed(1)} kB`;
    if (media.tagName === "IMG") {
      media.addEventListener("load", () => { caption.textContent = `${file.name}, ${media.naturalWidth}×${media.naturalHeight}, ${(file.size / 1000).toFixed(1)} kB`; });
    }
    box.hidden = false;
  }

  // --- the review: what will be created, as typed ------------------------------------------
  function review(form) {
    const list = $("[data-review]", form);
    if (!list) return;
    const value = (name) => {
      const els = $$(`[name="${CSS.escape(name)}"]`, form);
      if (!els.length) return "";
      if (els[0].type === "checkbox") return els.filter((e) => e.checked).map((e) => e.value).join(", ") || "All";
      if (els[0].type === "radio") return (els.find((e) => e.checked) || {}).value || "";
      if (els[0].type === "file") return els[0].files[0] ? els[0].files[0].name : "none yet";
      if (els[0].tagName === "SELECT") return els[0].selectedOptions[0].textContent;
      return els[0].value.trim();
    };
    const model = value("bid_model");
    $$("[data-show]", list).forEach((dd) => {
      const name = dd.dataset.show;
      let text = value(name);
      if (name === "targeting.geo") text = text ? text.toUpperCase() : "All";
      if (["bid", "max_spend_per_epoch", "total_budget"].includes(name) && text) text = `${text} USDC`;
      if (name === "bid" && text) text += model === "cpc" ? " per click" : " per 1,000 impressions";
      dd.textContent = text || "—";
    });
  }

  // --- the builder ------------------------------------------------------------------------
  const builder = $("form[data-builder]");
  if (builder) {
    let draftId = null; // created on the first submit; later submits edit it
    let uploaded = null; // the file the draft has
    const fileInput = $("input[type=file]", builder);
    const message = $("[data-form-message]", builder);

    fileInput.addEventListener("change", () => { preview(builder, fileInput.files[0]); review(builder); });
    builder.addEventListener("input", () => review(builder));
    builder.addEventListener("change", () => review(builder));
    review(builder);

    builder.addEventListener("submit", async (event) => {
      event.preventDefault();
      message.textContent = "";
      message.classList.remove("ok");
      clearErrors(builder);
      const { body, problems } = collect(builder);
      const file = fileInput.files[0];
      if (!file) problems.push(["creative", "a creative: a campaign cannot serve without one"]);
      if (problems.length) {
        problems.forEach(([name, what]) => showError(builder, name, `Enter ${what}.`));
        message.textContent = "Some fields need attention.";
        focusFirstError(builder);
        return;
      }
      const bad = await checkCreative(builder, file, body.format);
      if (bad) {
        showError(builder, "creative", bad);
        message.textContent = "Some fields need attention.";
        focusFirstError(builder);
        return;
      }
      const submit = $("[type=submit]", builder);
      const label = submit.textContent;
      submit.disabled = true;
      try {
        submit.textContent = draftId ? "Saving the draft…" : "Creating the draft…";
        const saved = draftId
          ? await window.Buzzer.api("PATCH", `/api/v1/campaigns/${draftId}`, body)
          : await window.Buzzer.api("POST", "/api/v1/campaigns", body);
        if (!saved.ok) return failed(saved.error);
        draftId = saved.data.id;
        if (uploaded !== file) {
          submit.textContent = "Uploading the creative…";
          const sent = await upload(`/api/v1/campaigns/${draftId}/creatives`, file);
          if (!sent.ok) return failed(sent.error, "creative");
          uploaded = file;
        }
        message.textContent = "Draft created. Next: register it on-chain…";
        message.classList.add("ok");
        window.location.assign(`/advertiser/campaigns/${draftId}`);
      } finally {
        submit.disabled = false;
        submit.textContent = label;
      }
    });

    function failed(error, field) {
      if (SESSION_CODES.has(error.code)) return signInAgain(message);
      const placed = place(builder, error) || (field && showError(builder, field, error.message));
      message.textContent = placed
        ? (draftId ? "The draft is saved; some fields need attention." : "Some fields need attention.")
        : error.message;
      if (placed) focusFirstError(builder);
    }
  }

  // --- a draft's creative uploaded on its own page ------------------------------------------
  $$("form[data-creative-upload]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const message = $("[data-form-message]", form);
      message.textContent = "";
      const file = $("input[type=file]", form).files[0];
      if (!file) { showError(form, "creative", "Choose a file."); return; }
      const submit = $("[type=submit]", form);
      submit.disabled = true;
      submit.textContent = "Uploading…";
      const sent = await upload(form.dataset.creativeUpload, file);
      submit.disabled = false;
      submit.textContent = "Upload creative";
      if (!sent.ok) {
        if (!showError(form, "creative", sent.error.message)) message.textContent = sent.error.message;
        return;
      }
      window.location.reload();
    });
  });
})();
