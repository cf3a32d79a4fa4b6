// DeviceGate dashboard: plain DOM, no framework, no build step. Every call goes through the HTTP API with the
// API key from sessionStorage; device text is only ever set with textContent, never parsed as HTML.
"use strict";

const KEY = "devicegate.apiKey";
const root = document.getElementById("main");
// Each view renders into its own container. A view that is still loading when the next one starts (a slow
// overview after sign-in, then a click) finishes into a container no longer on the page, never over the new view.
let current = root;
let routeSeq = 0;
const samples = [];            // overview history: { at, nodes: NodeStats[] }
let stream = null;             // the live event stream (AbortController)
const listeners = new Set();   // event callbacks of the current view
let me = null;                 // GET /api/whoami: { name, scopes }

// The caller's scopes, as the gateway checks them: admin is everything; "scope" covers every device,
// "scope:pattern" the devices matching the pattern (exact, prefix*, *). Without a device, any grant counts
// unless `everyDevice` asks for one that covers all devices.
function can(scope, device, everyDevice = false) {
  for (const g of me?.scopes || []) {
    if (g === "admin" || g === scope) return true;
    if (!g.startsWith(scope + ":")) continue;
    const p = g.slice(scope.length + 1);
    if (device === undefined ? !everyDevice : p === "*" || p === device || (p.endsWith("*") && device.startsWith(p.slice(0, -1)))) return true;
  }
  return false;
}

// Disables every control in `node` the caller may not use, and says which scope it would need.
function guard(node, scope, device, everyDevice = false) {
  if (can(scope, device, everyDevice)) return node;
  for (const c of node.querySelectorAll("input, select, textarea, button")) c.disabled = true;
  if (node.matches("button")) node.disabled = true;
  node.classList.add("locked");
  node.title = `Needs the scope ${scope}`;
  node.append(el("span", { class: "muted needs", text: ` needs ${scope}` }));
  return node;
}

const needs = (scope) => el("p", { class: "muted needs", text: `This key cannot see this (it needs the scope ${scope}).` });

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4000);
}

class ApiError extends Error {
  constructor(status, problem) { super(problem?.detail || problem?.title || `HTTP ${status}`); this.status = status; this.problem = problem; }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { signOut("Your API key was refused. Sign in again."); throw new ApiError(401); }
  if (response.status === 429) toast("Too many requests: slow down and try again in a moment.");
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof body === "object" ? body : { title: body });
  return body;
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  me = null;
  stopStream();
  showSignIn(message);
}

function showSignIn(message) {
  routeSeq++;
  const main = (current = el("div"));
  root.replaceChildren(main);
  document.getElementById("nav").hidden = true;
  const input = el("input", { type: "password", id: "apikey", autocomplete: "off", placeholder: "API key" });
  const error = el("p", { class: "error", id: "signin-error", text: message || "" });
  main.replaceChildren(el("section", { class: "signin" },
    el("h1", { text: "Sign in" }),
    el("p", { text: "Paste an API key (DeviceGate:Auth:ApiKeys, or the key in the data folder). It is kept in this tab only." }),
    el("form", { id: "signin", onsubmit: async (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      try {
        me = await api("/api/whoami");
        location.hash = "#/overview";
        start();
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) error.textContent = err.message;
      }
    } }, el("label", {}, "API key", input), el("button", { type: "submit", text: "Sign in" })),
    error));
}

// ---- live events: fetch streaming (EventSource cannot send the Authorization header) -------------------------

function startStream() {
  if (stream) return;
  stream = new AbortController();
  (async () => {
    let lastId = null;
    while (stream && !stream.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch("/api/events", { headers, signal: stream.signal });
        if (response.status === 401) { signOut("Your API key was refused. Sign in again."); return; }
        document.getElementById("live").hidden = false;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let data = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("id: ")) lastId = line.slice(4);
              else if (line.startsWith("data: ")) data = line.slice(6);
            }
            if (data) {
              // An entry that is not JSON is skipped (and reported); the stream and its resume position go on.
              let event;
              try { event = JSON.parse(data); } catch (e) { console.warn("skipped an unreadable event", e); continue; }
              for (const f of listeners) f(event);
            }
          }
        }
      } catch (err) {
        if (stream?.signal.aborted) return;
      }
      document.getElementById("live").hidden = true;
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
}

function stopStream() { stream?.abort(); stream = null; document.getElementById("live").hidden = true; }

function onEvent(f) { listeners.add(f); return f; }

// ---- views --------------------------------------------------------------------------------------------------

const fmt = (t) => (t ? new Date(t).toLocaleString() : "—");

function spark(values) {
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * 100},${38 - (v / max) * 36}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  svg.append(line);
  return svg;
}

async function overview() {
  const main = current; // this view's container (see route)
  if (!can("devices:read", undefined, true)) {
    main.replaceChildren(el("h1", { text: "Overview" }), needs("devices:read"));
    return null;
  }
  const render = async () => {
    const stats = await api("/api/stats");
    samples.push({ at: Date.now(), nodes: stats.nodes });
    while (samples.length > 150) samples.shift();
    const total = (s, f) => s.nodes.reduce((a, n) => a + n[f], 0);
    const rate = (f) => samples.slice(1).map((s, i) => Math.max(0, (total(s, f) - total(samples[i], f)) / ((s.at - samples[i].at) / 1000)));
    const last = samples[samples.length - 1];
    const card = (label, id, value, series) => el("div", { class: "card" },
      el("div", { class: "value", id, text: value }), el("div", { class: "label", text: label }), series ? spark(series) : null);
    const inRate = rate("messagesIn"), outRate = rate("messagesOut");
    main.replaceChildren(el("h1", { text: "Overview" }),
      el("div", { class: "cards" },
        card("connected devices", "stat-connected", total(last, "connectedDevices"), samples.map((s) => total(s, "connectedDevices"))),
        card("messages in / s", "stat-in", (inRate.at(-1) ?? 0).toFixed(1), inRate),
        card("messages out / s", "stat-out", (outRate.at(-1) ?? 0).toFixed(1), outRate),
        card("queued messages", "stat-queued", total(last, "outboxDepth"), samples.map((s) => total(s, "outboxDepth"))),
        card("refused handshakes", "stat-refused", total(last, "handshakesRefused"), null)),
      el("h2", { text: "Nodes" }),
      el("table", {}, el("thead", {}, el("tr", {}, ["node", "connected", "in", "out", "refused", "queued"].map((h) => el("th", { text: h })))),
        el("tbody", {}, last.nodes.map((n) => el("tr", {}, [n.node, n.connectedDevices, n.messagesIn, n.messagesOut, n.handshakesRefused, n.outboxDepth].map((v) => el("td", { text: v })))))));
  };
  await render();
  return setInterval(() => render().catch(() => {}), 2000);
}

async function devices() {
  const main = current; // this view's container (see route)
  if (!can("devices:read", undefined, true)) return main.replaceChildren(el("h1", { text: "Devices" }), needs("devices:read"));
  const search = el("input", { id: "search", placeholder: "id prefix", value: sessionStorage.getItem("devicegate.search") || "" });
  const all = el("input", { type: "checkbox", id: "all", checked: true });
  const tags = el("input", { id: "tag-filter", placeholder: "site:berlin, model:k2", value: sessionStorage.getItem("devicegate.tags") || "" });
  const body = el("tbody", { id: "device-rows" });
  const more = el("div");
  let after = null;
  const load = async (append) => {
    const q = new URLSearchParams({ limit: "50" });
    if (all.checked) q.set("online", "false");
    if (search.value.trim()) q.set("search", search.value.trim());
    for (const t of tags.value.split(",").map((x) => x.trim()).filter(Boolean)) q.append("tag", t);
    if (append && after) q.set("after", after);
    const page = await api(`/api/devices?${q}`);
    if (!append) body.replaceChildren();
    for (const d of page.devices) {
      body.append(el("tr", { "data-device": d.id },
        el("td", {}, el("a", { href: `#/devices/${encodeURIComponent(d.id)}`, text: d.id })),
        el("td", { class: d.online ? "online" : "offline", text: d.online ? "online" : "offline" }),
        el("td", { text: d.node || "—" }),
        el("td", { text: d.online ? `since ${fmt(d.connectedAt)}` : `last seen ${fmt(d.lastSeen)}` })));
    }
    after = page.next;
    more.replaceChildren(page.next ? el("button", { class: "secondary", type: "button", text: "More", onclick: () => load(true) }) : "");
    if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: 4, class: "empty", text: "No devices yet. Connect one: devicegate connect --device <id>" })));
  };
  main.replaceChildren(el("h1", { text: "Devices" }),
    el("form", { id: "device-search", onsubmit: (e) => {
      e.preventDefault();
      sessionStorage.setItem("devicegate.search", search.value);
      sessionStorage.setItem("devicegate.tags", tags.value);
      load(false).catch((err) => toast(err.message));
    } },
      el("label", {}, "Search", search), el("label", {}, "Tags (key:value, comma-separated)", tags), el("label", {}, "Include offline", all),
      el("button", { type: "submit", text: "Search" })),
    el("table", {}, el("thead", {}, el("tr", {}, ["device", "state", "node", "when"].map((h) => el("th", { text: h })))), body), more);
  let pending = null;
  onEvent((e) => { if (e.type === "connected" || e.type === "disconnected") { clearTimeout(pending); pending = setTimeout(() => load(false).catch(() => {}), 150); } });
  await load(false);
}

async function device(id) {
  const main = current; // this view's container (see route)
  const details = el("dl", { id: "device-details" });
  const events = el("tbody", { id: "device-events" });
  if (!can("events:read", id)) events.append(el("tr", {}, el("td", { colspan: 3, class: "muted needs", text: "Live events need the scope events:read." })));
  const messages = el("tbody", { id: "device-messages" });
  const result = el("pre", { id: "result", hidden: true });
  const show = (text, isError) => { result.hidden = false; result.className = isError ? "error" : ""; result.textContent = text; };
  const refresh = async () => {
    try {
      if (!can("devices:read", id)) throw new Error("This key cannot read this device (it needs the scope devices:read).");
      const d = await api(`/api/devices/${encodeURIComponent(id)}`);
      details.replaceChildren(...[["state", d.online ? "online" : "offline"], ["node", d.node], ["connected", fmt(d.connectedAt)],
        ["last seen", fmt(d.lastSeen)], ["groups", d.groups.join(", ") || "—"], ["queued", d.queued]].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
      tagEditor.show(d.tags || {});
    } catch (err) { details.replaceChildren(el("dd", { class: "error", text: err.message })); }
    if (can("state:read", id)) await state.refresh();
    if (!can("messages:read", id)) return messages.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted needs", text: "Needs the scope messages:read." })));
    const list = await api(`/api/devices/${encodeURIComponent(id)}/messages`);
    messages.replaceChildren(...(list.messages.length ? list.messages.map((m) => el("tr", {},
      el("td", {}, el("a", { href: `#/messages/${m.id}`, text: m.id })), el("td", { text: m.status }), el("td", { text: m.attempts }), el("td", { text: fmt(m.updatedAt) })))
      : [el("tr", {}, el("td", { colspan: 4, class: "empty", text: "No stored messages." }))]));
  };
  const payload = el("textarea", { id: "payload", placeholder: "message" });
  const kind = el("select", { id: "kind" }, el("option", { value: "text", text: "text" }), el("option", { value: "json", text: "JSON" }), el("option", { value: "binary", text: "binary (base64)" }));
  const ttl = el("input", { id: "ttl", type: "number", min: "0", step: "any", placeholder: "0", size: 6 });
  const rpcPayload = el("textarea", { id: "rpc-payload", placeholder: "{\"cmd\":\"status\"}" });
  const state = stateEditor(id);
  const tagEditor = tagsEditor(id);
  const rpcTimeout = el("input", { id: "rpc-timeout", type: "number", min: "0.1", max: "60", step: "any", value: "5", size: 5 });
  const body = () => {
    if (kind.value === "binary") return [Uint8Array.from(atob(payload.value.trim()), (c) => c.charCodeAt(0)), "application/octet-stream"];
    return [payload.value, kind.value === "json" ? "application/json" : "text/plain; charset=utf-8"];
  };
  main.replaceChildren(el("h1", { id: "device-title", text: `Device ${id}` }), details,
    el("h2", { text: "Tags" }), tagEditor.node,
    el("h2", { text: "State" }), can("state:read", id) ? state.node : needs("state:read"),
    el("h2", { text: "Send a message" }),
    guardForm("messages:send", id, { id: "send-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const [data, type] = body();
        const q = ttl.value && Number(ttl.value) > 0 ? `?ttl=${encodeURIComponent(ttl.value)}` : "";
        const r = await api(`/api/devices/${encodeURIComponent(id)}/messages${q}`, { method: "POST", body: data, headers: { "Content-Type": type } });
        show(`Message ${r.id}: ${r.status}`);
        refresh();
      } catch (err) { show(err.message, true); }
    } }, el("label", {}, "Payload", payload), el("label", {}, "As", kind), el("label", {}, "ttl (s)", ttl), el("button", { type: "submit", text: "Send" })),
    el("h2", { text: "Call (rpc)" }),
    guardForm("rpc:call", id, { id: "rpc-form", onsubmit: async (e) => {
      e.preventDefault();
      show("waiting for the device…");
      try {
        const isJson = (() => { try { JSON.parse(rpcPayload.value); return true; } catch { return false; } })();
        const reply = await api(`/api/devices/${encodeURIComponent(id)}/rpc?timeout=${encodeURIComponent(rpcTimeout.value)}`,
          { method: "POST", body: rpcPayload.value, headers: { "Content-Type": isJson ? "application/json" : "text/plain; charset=utf-8" } });
        show(`Reply: ${JSON.stringify(reply)}`);
      } catch (err) {
        show(err.status === 504 ? "No reply: the device did not answer in time." : err.status === 409 ? "This device is in raw mode and cannot answer rpcs." : `Error: ${err.message}`, true);
      }
    } }, el("label", {}, "Request", rpcPayload), el("label", {}, "timeout (s)", rpcTimeout), el("button", { type: "submit", text: "Call" })),
    result,
    guard(el("p", {}, el("button", { class: "danger", type: "button", id: "disconnect", text: "Disconnect", onclick: async () => {
      try { await api(`/api/devices/${encodeURIComponent(id)}/connection`, { method: "DELETE" }); show("Disconnected (4001)."); refresh(); }
      catch (err) { show(err.message, true); }
    } })), "devices:manage", id),
    el("h2", { text: "Recent events" }),
    el("table", {}, el("thead", {}, el("tr", {}, ["when", "event", "detail"].map((h) => el("th", { text: h })))), events),
    el("h2", { text: "Messages" }),
    el("table", {}, el("thead", {}, el("tr", {}, ["id", "status", "attempts", "updated"].map((h) => el("th", { text: h })))), messages));
  // Listen before the first load, so nothing that happens while it loads is missed.
  onEvent((e) => {
    if (e.device !== id) return;
    const detail = e.type === "message" ? (e.data !== undefined ? (typeof e.data === "string" ? e.data : JSON.stringify(e.data)) : `[binary] ${e.dataBase64}`)
      : e.type === "disconnected" ? `${e.code} ${e.reason}` : e.type === "state" ? `${e.part} v${e.version}` : e.id || "";
    events.prepend(el("tr", {}, el("td", { text: fmt(e.at) }), el("td", { text: e.type }), el("td", { class: "event-detail", text: detail })));
    while (events.children.length > 50) events.lastChild.remove();
    if (e.type !== "message") refresh().catch(() => {});
  });
  await refresh();
}

// A form, disabled (and saying which scope it needs) when the caller may not use it; without a device (a group
// publish) only a grant for every device will do.
function guardForm(scope, device, attrs, ...children) {
  return guard(el("form", attrs, ...children), scope, device, device === undefined);
}

// The device's state document: desired, reported and the delta side by side, and an editor for desired that writes
// with If-Match, so an operator never overwrites a change made meanwhile without seeing it first.
function stateEditor(id) {
  const desired = el("pre", { id: "state-desired" });
  const reported = el("pre", { id: "state-reported" });
  const delta = el("pre", { id: "state-delta" });
  const versions = el("p", { id: "state-versions", class: "muted" });
  const editor = el("textarea", { id: "desired-editor", spellcheck: "false", rows: 8 });
  const note = el("p", { id: "state-note", hidden: true });
  let base = 0;        // the desired version the editor's text was loaded from (If-Match)
  let dirty = false;   // edited since loaded: a live update must not replace the operator's text
  editor.addEventListener("input", () => (dirty = true));
  const say = (text, isError) => { note.hidden = false; note.className = isError ? "error" : ""; note.textContent = text; };
  const pretty = (v) => JSON.stringify(v, null, 2);
  const refresh = async (reload = false) => {
    const doc = await api(`/api/devices/${encodeURIComponent(id)}/state`);
    desired.textContent = pretty(doc.desired);
    reported.textContent = pretty(doc.reported);
    delta.textContent = Object.keys(doc.delta).length ? pretty(doc.delta) : "{} (in sync)";
    versions.textContent = `desired v${doc.desiredVersion} (${fmt(doc.desiredAt)}) · reported v${doc.reportedVersion} (${fmt(doc.reportedAt)}) · the device acked v${doc.ackedVersion}`;
    if (!dirty || reload) {
      editor.value = pretty(doc.desired);
      base = doc.desiredVersion;
      dirty = false;
    } else if (doc.desiredVersion !== base) {
      say(`Someone else changed the desired state (now version ${doc.desiredVersion}) while you were editing version ${base}; saving would be refused. Reload to see their change, then edit again.`, true);
    }
  };
  const save = async (e) => {
    e.preventDefault();
    let body;
    try { body = JSON.parse(editor.value); } catch { return say("That is not JSON: desired is a JSON object.", true); }
    try {
      const doc = await api(`/api/devices/${encodeURIComponent(id)}/state/desired`, {
        method: "PUT", body: JSON.stringify(body), headers: { "Content-Type": "application/json", "If-Match": `"${base}"` } });
      dirty = false;
      say(`Saved: desired is version ${doc.desiredVersion}.`);
      await refresh(true);
    } catch (err) {
      if (err.status === 412) say(`Someone else changed the desired state since you loaded version ${base}; nothing was saved. Reload to see their change, then edit again.`, true);
      else if (err.status === 413) say(`Too large: ${err.message}`, true);
      else say(err.message, true);
    }
  };
  const reload = el("button", { class: "secondary", type: "button", id: "desired-reload", text: "Reload", onclick: () => { note.hidden = true; refresh(true).catch((err) => say(err.message, true)); } });
  const node = el("div", {},
    el("div", { class: "state-grid" },
      el("div", {}, el("h3", { text: "desired" }), desired),
      el("div", {}, el("h3", { text: "reported" }), reported),
      el("div", {}, el("h3", { text: "delta" }), delta)),
    versions,
    guardForm("state:write", id, { id: "desired-form", onsubmit: save }, el("label", {}, "Desired (JSON; replaces it whole)", editor),
      el("button", { type: "submit", text: "Save desired" }), reload),
    note);
  return { node, refresh };
}

// Tags as key=value lines; saving replaces them all (an empty box removes them).
function tagsEditor(id) {
  const list = el("p", { id: "device-tags" });
  const input = el("textarea", { id: "tags-editor", spellcheck: "false", rows: 3, placeholder: "site=berlin\nmodel=k2" });
  const note = el("p", { id: "tags-note", hidden: true });
  let dirty = false;
  input.addEventListener("input", () => (dirty = true));
  const show = (tags) => {
    const pairs = Object.entries(tags);
    list.replaceChildren(...(pairs.length ? pairs.map(([k, v]) => el("span", { class: "tag", text: `${k}: ${v}` })) : [el("span", { class: "empty", text: "No tags." })]));
    if (!dirty) input.value = pairs.map(([k, v]) => `${k}=${v}`).join("\n");
  };
  const save = async (e) => {
    e.preventDefault();
    const tags = {};
    for (const line of input.value.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const eq = line.indexOf("=");
      if (eq <= 0) { note.hidden = false; note.className = "error"; note.textContent = `"${line}" is not key=value.`; return; }
      tags[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
    }
    try {
      await api(`/api/devices/${encodeURIComponent(id)}/tags`, { method: "PUT", body: JSON.stringify(tags), headers: { "Content-Type": "application/json" } });
      dirty = false;
      note.hidden = false; note.className = ""; note.textContent = "Tags saved.";
      const d = await api(`/api/devices/${encodeURIComponent(id)}`);
      show(d.tags || {});
    } catch (err) { note.hidden = false; note.className = "error"; note.textContent = err.message; }
  };
  const node = el("div", {}, list, guardForm("devices:manage", id, { id: "tags-form", onsubmit: save }, el("label", {}, "key=value, one per line", input), el("button", { type: "submit", text: "Save tags" })), note);
  return { node, show };
}

async function groups(name) {
  const main = current; // this view's container (see route)
  if (!can("devices:read", undefined, true)) return main.replaceChildren(el("h1", { text: "Groups" }), needs("devices:read"));
  if (name) {
    const members = el("tbody", { id: "group-members" });
    const add = el("input", { id: "member", placeholder: "device id" });
    const text = el("textarea", { id: "group-payload", placeholder: "message" });
    const result = el("pre", { hidden: true });
    const load = async () => {
      const g = await api(`/api/groups/${encodeURIComponent(name)}`);
      const remove = (d) => async () => {
        await api(`/api/groups/${encodeURIComponent(name)}/devices/${encodeURIComponent(d)}`, { method: "DELETE" });
        load();
      };
      const row = (d) => el("tr", {},
        el("td", {}, el("a", { href: `#/devices/${encodeURIComponent(d)}`, text: d })),
        el("td", {}, guard(el("button", { class: "secondary", type: "button", text: "Remove", onclick: remove(d) }), "devices:manage", d)));
      members.replaceChildren(...(g.devices.length ? g.devices.map(row)
        : [el("tr", {}, el("td", { class: "empty", text: "No members." }))]));
    };
    main.replaceChildren(el("h1", { text: `Group ${name}` }),
      guard(el("form", { onsubmit: async (e) => { e.preventDefault(); try { await api(`/api/groups/${encodeURIComponent(name)}/devices/${encodeURIComponent(add.value.trim())}`, { method: "PUT" }); add.value = ""; load(); } catch (err) { toast(err.message); } } },
        el("label", {}, "Add device", add), el("button", { type: "submit", text: "Add" })), "devices:manage"),
      el("table", {}, members),
      el("h2", { text: "Publish" }),
      guardForm("messages:send", undefined, { id: "publish-form", onsubmit: async (e) => { e.preventDefault(); const r = await api(`/api/groups/${encodeURIComponent(name)}/messages`, { method: "POST", body: text.value, headers: { "Content-Type": "text/plain; charset=utf-8" } }); result.hidden = false; result.textContent = `Written to ${r.recipients}, queued for ${r.queued}.`; } },
        el("label", {}, "Message", text), el("button", { type: "submit", text: "Publish" })), result);
    return load();
  }
  const list = await api("/api/groups");
  const nameInput = el("input", { placeholder: "group name" });
  main.replaceChildren(el("h1", { text: "Groups" }),
    el("form", { onsubmit: (e) => { e.preventDefault(); location.hash = `#/groups/${encodeURIComponent(nameInput.value.trim())}`; } }, el("label", {}, "Open group", nameInput), el("button", { type: "submit", text: "Open" })),
    list.groups.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "group" }), el("th", { text: "members" }))),
      el("tbody", {}, list.groups.map((g) => el("tr", {}, el("td", {}, el("a", { href: `#/groups/${encodeURIComponent(g.group)}`, text: g.group })), el("td", { text: g.members })))))
      : el("p", { class: "empty", text: "No groups yet. Add a device to a group to create one." }));
}

async function messages(id) {
  const main = current; // this view's container (see route)
  const input = el("input", { id: "message-id", placeholder: "message id", value: id || "", size: 40 });
  const out = el("div", { id: "message-status" });
  const look = async () => {
    if (!input.value.trim()) return;
    try {
      const m = await api(`/api/messages/${encodeURIComponent(input.value.trim())}`);
      out.replaceChildren(el("dl", {}, [["device", m.device], ["status", m.status], ["attempts", m.attempts], ["created", fmt(m.createdAt)], ["updated", fmt(m.updatedAt)]].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
        el("table", {}, el("tbody", {}, m.history.map((h) => el("tr", {}, el("td", { text: h.status }), el("td", { text: fmt(h.at) }))))));
    } catch (err) { out.replaceChildren(el("p", { class: "error", text: err.status === 404 ? "No such message (or its status was purged)." : err.message })); }
  };
  main.replaceChildren(el("h1", { text: "Messages" }),
    el("form", { onsubmit: (e) => { e.preventDefault(); look(); } }, el("label", {}, "Message id", input), el("button", { type: "submit", text: "Look up" })), out);
  await look();
}

let timer = null;
async function route() {
  const mine = ++routeSeq;
  clearInterval(timer);
  listeners.clear();
  if (!sessionStorage.getItem(KEY)) return showSignIn();
  const container = (current = el("div"));
  root.replaceChildren(container);
  document.getElementById("nav").hidden = false;
  const [, view, arg] = (location.hash || "#/overview").split("/").map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${view}`);
  try {
    if (view === "devices" && arg) await device(arg);
    else if (view === "devices") await devices();
    else if (view === "groups") await groups(arg);
    else if (view === "messages") await messages(arg);
    else {
      const refresher = await overview();
      if (mine === routeSeq) timer = refresher;
      else clearInterval(refresher);
    }
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) container.replaceChildren(el("p", { class: "error", text: `Could not load: ${err.message}` }));
  }
}

async function start() {
  try {
    me = me || (await api("/api/whoami"));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showSignIn(err.message);
    return;
  }
  document.getElementById("whoami").textContent = `signed in as ${me.name}`;
  if (can("events:read")) startStream();
  route();
}

document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
if (sessionStorage.getItem(KEY)) start(); else showSignIn();
