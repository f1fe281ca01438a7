// The preview page: one file at a time, every decision sent to the local fastanon process.
// Plain JavaScript, no libraries; all state lives in `state` and is drawn by the render functions.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const ROW_LIMIT = 200;
const CHUNK_ROWS = 256;      // table rows per contained block
const LARGE_TABLE = 1000;    // rows beyond which blocks out of sight are not laid out

const state = {
  meta: null,          // presets, categories, action labels, limits
  doc: null,           // {id, summary, image}
  preset: "research",
  overrides: {},       // tag "(gggg,eeee)" -> action
  rows: [],
  warnings: [],
  showAll: false,
  masks: [],           // {id, x, y, width, height, frames: null | [n], enabled}
  nextMask: 1,
  frame: 0,
  center: 0,
  width: 1,
  result: null,        // last preview answer
  resultKey: "",       // the choices it was made with
  rowNodes: new Map(), // path -> the table row drawn for it
  lookup: null,        // {id, name, patients, key, columns}: a lookup table loaded
  refreshing: 0,       // the number of the newest table refresh asked for
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function slug(text) {
  return String(text || "none").toLowerCase().replace(/[^a-z0-9]+/g, "-");
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

function categoryTitle(name) {
  const found = (state.meta?.categories || []).find((c) => c.name === name);
  return found ? found.title : (name || "");
}

function actionLabel(action, row = null) {
  return row?.labels?.[action] || (state.meta?.actions || {})[action] || action;
}

// -- talking to the server -------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { "X-Fastanon-Token": TOKEN, ...(options.headers || {}) };
  let body = options.body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function choices(withMasks = true) {
  const out = { preset: state.preset, overrides: state.overrides };
  if (state.lookup) out.lookup = state.lookup.id;
  if (withMasks) {
    out.masks = state.masks.filter((m) => m.enabled)
      .map(({ x, y, width, height, frames }) => ({ x, y, width, height, frames }));
  }
  return out;
}

function choicesKey() {
  return JSON.stringify(choices(true));
}

function upload(file) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", `/api/files?preset=${encodeURIComponent(state.preset)}`);
    request.setRequestHeader("X-Fastanon-Token", TOKEN);
    request.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) $("progress-bar").style.width = `${(100 * event.loaded) / event.total}%`;
    };
    request.onload = () => {
      let payload = null;
      try { payload = JSON.parse(request.responseText); } catch (e) { /* not JSON */ }
      if (request.status === 200 && payload) resolve(payload);
      else reject(new Error((payload && payload.error) || `${request.status} ${request.statusText}`));
    };
    request.onerror = () => reject(new Error("the upload failed (is fastanon serve still running?)"));
    request.send(file);
  });
}

function setStatus(id, text, kind = "") {
  const node = $(id);
  node.textContent = text || "";
  node.className = `status ${kind}`;
}

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// -- step 1: the file ------------------------------------------------------------------------

async function openFile(file) {
  if (!file) return;
  if (state.meta && file.size > state.meta.max_size) {
    setStatus("file-status", `${file.name} is ${bytes(file.size)}; this server accepts at most ${bytes(state.meta.max_size)} (fastanon serve --max-size).`, "error");
    return;
  }
  closeDocument();
  $("progress").hidden = false;
  $("progress-bar").style.width = "0%";
  setStatus("file-status", `Reading ${file.name}…`);
  try {
    const payload = await upload(file);
    state.doc = { id: payload.id, summary: payload.summary, image: payload.image };
    state.overrides = {};
    state.masks = [];
    state.nextMask = 1;                     // a new file: its masks count from 1
    state.result = null;
    state.showAll = false;
    state.frame = 0;
    $("filter").value = "";                 // and its table is not filtered by the last one's
    setStatus("mask-form-status", "");
    setStatus("preset-status", "");
    applyRows(payload);
    setStatus("file-status", `${payload.summary.name} (${bytes(payload.summary.size)}) is open.`, "ok");
    showSteps(true);
    renderSummary();
    setupImage(payload.image);
    setStatus("suggest-status", state.meta?.detect_text ? "" : "Suggesting masks needs the text detector: pip install 'fastanon[ocr]'.");
    setupSuggest();
    renderMasks();
    renderResult();
    $("saved").hidden = true;
  } catch (error) {
    setStatus("file-status", error.message, "error");
    showSteps(false);
  } finally {
    $("progress").hidden = true;
  }
}

function closeDocument() {
  if (!state.doc) return;
  const url = `/api/files/${state.doc.id}/close?token=${encodeURIComponent(TOKEN)}`;
  navigator.sendBeacon(url);
  state.doc = null;
}

function showSteps(visible) {
  for (const id of ["step-review", "step-image", "step-result", "step-save"]) $(id).hidden = !visible;
}

// -- step 2: warnings, summary, the table ----------------------------------------------------

function applyRows(payload, merge = false) {
  const before = state.rows;
  state.rows = payload.rows;
  state.warnings = payload.warnings;
  state.categories = payload.categories;
  state.actions = payload.actions;
  renderWarnings();
  renderPresetSwitch();
  if (merge && samePaths(before, payload.rows)) mergeTable(before, payload.rows);
  else renderTable();
  renderSummary();
}

function samePaths(a, b) {
  return a.length === b.length && a.every((row, i) => row.path === b[i].path);
}

// A change redraws only the rows whose content changed, each in place: focus stays where it
// is, the scroll position too, and a table of 10,000 rows answers at once.
function mergeTable(before, after) {
  for (let i = 0; i < after.length; i++) {
    if (JSON.stringify(before[i]) !== JSON.stringify(after[i])) redrawRow(after[i]);
  }
  renderTableCounts();
}

function redrawRow(row) {
  const old = state.rowNodes.get(row.path);
  if (!old) return;
  const node = tableRow(row);
  if (!old.contains(document.activeElement)) {
    old.replaceWith(node);
    state.rowNodes.set(row.path, node);
    return;
  }
  // The user is on this row: the row and the element they are on stay (focus is not lost, no
  // layout is forced now); the other cells, the menu's entries and the row's marks change.
  old.className = node.className;
  const focused = document.activeElement;
  [...node.children].forEach((cell, i) => {
    const here = old.children[i];
    if (!here.contains(focused)) { here.replaceWith(cell); return; }
    const select = here.querySelector("select");
    const fresh = cell.querySelector("select");
    if (select && fresh) {
      select.replaceChildren(...fresh.childNodes);
      select.value = row.action;
      select.disabled = fresh.disabled;
      for (const child of [...here.childNodes]) if (child !== select) child.remove();
      for (const child of [...cell.childNodes]) if (child !== fresh) here.append(child);
    } else {
      here.replaceWith(cell);
      cell.querySelector("select")?.focus();      // the reset button went: its row's menu
    }
  });
}

function renderWarnings() {
  const box = $("warnings");
  box.replaceChildren();
  for (const w of state.warnings) {
    const clean = w.code === "identifying-echo" && w.tag && state.overrides[w.tag] !== "clean"
      ? el("button", { type: "button", class: "secondary small-button", onclick: () => overrideTag(w.tag, "clean") },
        `Clean echoes in ${w.path}`) : null;
    box.append(el("div", { class: `warning w-${slug(w.code)}` },
      el("span", { class: "warning-icon", "aria-hidden": "true", text: "!" }),
      el("div", {}, el("b", { text: warningTitle(w.code) }), " ", w.message, clean ? " " : null, clean)));
  }
  if (!state.warnings.length) {
    box.append(el("div", { class: "warning none" }, el("span", { class: "warning-icon ok", text: "✓" }),
      el("div", {}, "No warnings for this policy. Still look at the image and the kept values.")));
  }
}

function warningTitle(code) {
  return {
    "burned-in-annotation": "Burned-in text:",
    "compressed-pixel-data": "Compressed pixels:",
    "identifying-echo": "Identifying value in a kept field:",
    "private-tags-kept": "Private tags kept:",
    "lookup-missing": "Not in the lookup table:",
  }[code] || "Warning:";
}

function renderSummary() {
  if (!state.doc) return;
  const s = state.doc.summary;
  const box = $("summary");
  const facts = [
    ["File", `${s.name}`], ["Size", bytes(s.size)], ["Transfer syntax", s.transfer_syntax_name],
    ["Modality", s.modality || "—"], ["Frames", s.frames ?? "—"],
    ["Image", s.columns && s.rows ? `${s.columns} × ${s.rows}${s.photometric ? ", " + s.photometric : ""}` : "none"],
    ["Device", [s.manufacturer, s.model].filter(Boolean).join(" ") || "—"],
  ];
  const counts = Object.entries(state.categories || {});
  box.replaceChildren(
    el("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    el("div", { class: "counts" },
      el("div", { class: "label", text: "Sensitive attributes by category" }),
      el("div", { class: "chips" }, ...counts.map(([name, n]) =>
        el("button", { type: "button", class: `chip cat-${slug(name)}`, title: `Show only ${categoryTitle(name)}`,
          onclick: () => { $("filter").value = categoryTitle(name); state.showAll = true; renderTable(); } },
          el("span", { class: "swatch" }), `${categoryTitle(name)} `, el("b", { text: n })))),
      el("div", { class: "label", text: "Planned actions" }),
      el("div", { class: "chips" }, ...Object.entries(state.actions || {}).sort((a, b) => b[1] - a[1])
        .map(([a, n]) => el("span", { class: "chip plain" }, `${actionLabel(a)} `, el("b", { text: n }))))));
}

function renderPresetSwitch() {
  const box = $("preset-buttons");
  const hadFocus = box.contains(document.activeElement);
  box.replaceChildren(...state.meta.presets.map((p) =>
    el("button", { type: "button", role: "radio", class: `segment${p.name === state.preset ? " active" : ""}`,
      "aria-checked": String(p.name === state.preset), "data-preset": p.name,
      tabindex: p.name === state.preset ? "0" : "-1",
      onclick: () => switchPreset(p.name), onkeydown: presetKey }, p.name)));
  if (hadFocus) box.querySelector(".segment.active")?.focus();
  const current = state.meta.presets.find((p) => p.name === state.preset);
  $("preset-description").textContent = current ? firstSentence(current.description) : "";
}

// The preset switch is one radio group: arrow keys move the choice, Tab leaves the group.
function presetKey(event) {
  const names = state.meta.presets.map((p) => p.name);
  const at = names.indexOf(state.preset);
  const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
  let next = null;
  if (step) next = names[(at + step + names.length) % names.length];
  else if (event.key === "Home") next = names[0];
  else if (event.key === "End") next = names[names.length - 1];
  if (next === null) return;
  event.preventDefault();
  if (next !== state.preset) switchPreset(next);
}

function firstSentence(text) {
  const match = /^(.*?\.)\s+[A-Z]/.exec(text);
  return match ? match[1] : text;
}

async function switchPreset(name) {
  const dropped = Object.keys(state.overrides).length;
  state.preset = name;
  state.overrides = {};                     // the preset's recommendations apply to every row again
  await refreshRows();
  setStatus("preset-status", dropped ? `The ${name} preset now applies to every row; your ${dropped} change(s) were cleared.` : "");
}

async function refreshRows(merge = false) {
  if (!state.doc) return;
  const mine = ++state.refreshing;
  try {
    const response = await api(`/api/files/${state.doc.id}/inspect`, { method: "POST", json: choices(false) });
    const payload = await response.json();
    if (mine !== state.refreshing) return;       // a newer change is on its way
    applyRows(payload, merge);
    markStale();
  } catch (error) {
    setStatus("file-status", error.message, "error");
  }
}

function matches(row, needle) {
  if (!needle) return true;
  const hay = `${row.tag} ${row.path} ${row.vr} ${row.value} ${categoryTitle(row.category)} ${row.action}`.toLowerCase();
  return hay.includes(needle);
}

function renderTable() {
  const needle = $("filter").value.trim().toLowerCase();
  const rows = state.rows.filter((r) => matches(r, needle));
  const shown = state.showAll ? rows : rows.slice(0, ROW_LIMIT);
  const body = $("tags").tBodies[0];
  const focusedPath = document.activeElement?.closest?.("#tags tr")?.dataset.path;
  state.rowNodes = new Map();
  const chunks = [];
  for (let i = 0; i < shown.length; i += CHUNK_ROWS) {
    // Rows in contained blocks: a change lays out its block only, and blocks out of sight
    // are not laid out at all (the table of 10,000 rows answers at once).
    const chunk = el("div", { class: "chunk", role: "presentation" }, ...shown.slice(i, i + CHUNK_ROWS).map((row) => {
      const node = tableRow(row);
      state.rowNodes.set(row.path, node);
      return node;
    }));
    chunk.style.containIntrinsicSize = `auto ${Math.min(CHUNK_ROWS, shown.length - i) * 34}px`;
    chunks.push(chunk);
  }
  body.replaceChildren(...chunks);
  body.classList.toggle("large", shown.length > LARGE_TABLE);
  if (focusedPath) state.rowNodes.get(focusedPath)?.querySelector("select")?.focus();
  state.shownCount = shown.length;
  state.matchCount = rows.length;
  state.needle = needle;
  renderTableCounts();
}

function renderTableCounts() {
  const shown = state.shownCount, total = state.matchCount;
  $("row-count").textContent = `${shown} of ${total} row(s)` + (state.needle ? ` matching “${state.needle}”` : "");
  const more = total - shown;
  $("show-all").hidden = more <= 0;
  $("show-all").textContent = `Show all ${total} rows (${more} more)`;
  const n = Object.keys(state.overrides).length;
  $("override-count").textContent = n ? `${n} change(s) to the ${state.preset} preset` : "";
  $("reset-overrides").hidden = !n;
}

function tableRow(row) {
  const select = el("select", { "aria-label": `Action for ${row.keyword || row.tag}`, disabled: row.inherited,
    onchange: (event) => overrideRow(state.rows.find((r) => r.path === row.path) || row, event.target.value) },
  ...row.options.map((a) => el("option", { value: a, selected: a === row.action },
    actionLabel(a, row) + (a === row.recommended ? " ★" : ""))));
  const cells = [
    el("td", { class: "mono nowrap", text: row.tag }),
    el("td", { class: "path", title: row.reason },
      el("span", { text: row.path }), row.overridden ? el("span", { class: "badge changed", text: "changed" }) : null,
      el("span", { class: "inline-tag mono muted small", text: `${row.tag} ${row.vr}` })),
    el("td", { class: "mono", text: row.vr }),
    el("td", { class: "value", title: row.value, text: row.value }),
    el("td", {}, row.category ? el("span", { class: `cat-badge cat-${slug(row.category)}`, text: categoryTitle(row.category) }) : ""),
    el("td", { class: "nowrap action" }, select,
      row.overridden ? el("button", { type: "button", class: "link reset", title: `Back to the preset's ${actionLabel(row.recommended, row)}`,
        "aria-label": `Back to the preset's ${actionLabel(row.recommended, row)}`,
        onclick: () => overrideRow(state.rows.find((r) => r.path === row.path) || row, null) }, "↺") : null),
  ];
  for (const cell of cells) cell.setAttribute("role", "cell");
  return el("tr", { class: `cat-row cat-${slug(row.category)} act-${row.action}${row.overridden ? " overridden" : ""}${row.inherited ? " inherited" : ""}`,
    role: "row", "data-tag": row.tag, "data-path": row.path }, ...cells);
}

// A row's change shows at once (the row alone is redrawn); the server's answer then brings what
// else it changed (rows inside a sequence, the warnings). Each change's time is kept on the page
// (data-change-ms: to the row redrawn, data-confirm-ms: to the server's answer merged).
async function overrideRow(row, action) {
  const started = performance.now();
  if (action === null || action === row.recommended) delete state.overrides[row.tag];
  else state.overrides[row.tag] = action;
  const shown = { ...row, action: action ?? row.recommended, overridden: action !== null && action !== row.recommended };
  const index = state.rows.indexOf(row);
  if (index >= 0) state.rows[index] = shown;
  redrawRow(shown);
  renderTableCounts();
  delete document.body.dataset.changeMs;
  delete document.body.dataset.confirmMs;
  document.body.dataset.changeScriptMs = (performance.now() - started).toFixed(1);
  afterPaint(() => { document.body.dataset.changeMs = (performance.now() - started).toFixed(1); });
  await refreshRows(true);
  afterPaint(() => { document.body.dataset.confirmMs = (performance.now() - started).toFixed(1); });
}

// fn once the browser has drawn the next frame (style, layout and paint of a change included).
function afterPaint(fn) {
  requestAnimationFrame(() => setTimeout(fn, 0));
}

async function overrideTag(tag, action) {
  const row = state.rows.find((r) => r.tag === tag && !r.inherited);
  if (row) return overrideRow(row, action);
  state.overrides[tag] = action;
  await refreshRows(true);
}

// A trial's lookup table: the values the sponsor prescribes per patient, shown in the rows and
// the preview as `fastanon run --lookup` writes them. It stays loaded for the next files.
async function loadLookup(file) {
  if (!file) return;
  setStatus("lookup-status", `Reading ${file.name}…`);
  try {
    const response = await api("/api/lookup", { method: "POST", body: file,
      headers: { "X-Filename": encodeURIComponent(file.name), "Content-Type": "text/csv" } });
    state.lookup = await response.json();
    setStatus("lookup-status", `${state.lookup.name}: ${state.lookup.patients} patient(s), by ${state.lookup.key}; gives ${state.lookup.columns.join(", ")}.`, "ok");
    $("drop-lookup").hidden = false;
    await refreshRows();
  } catch (error) {
    setStatus("lookup-status", error.message, "error");
  }
}

async function dropLookup() {
  state.lookup = null;
  $("drop-lookup").hidden = true;
  setStatus("lookup-status", "");
  await refreshRows();
}

// -- step 3: the image and masks -------------------------------------------------------------

const picture = new Image();
let drawing = null;        // {x0, y0, x1, y1} while the mouse is down
let frameTimer = null;

function setupImage(image) {
  const has = image && !image.error;
  $("image-error").hidden = has;
  $("canvas").hidden = !has;
  $("image-hint").hidden = !has;
  $("frame-control").hidden = !has || image.frames <= 1;
  $("window-controls").hidden = !has || image.color;
  if (!has) {
    $("image-error").textContent = image ? `The image cannot be shown: ${image.error}.` : "This file has no image.";
    return;
  }
  const span = Math.max(image.high - image.low, 1);
  Object.assign($("frame"), { max: image.frames - 1, value: 0 });
  Object.assign($("after-frame"), { max: image.frames - 1, value: 0 });
  $("after-frame-control").hidden = image.frames <= 1;
  Object.assign($("center"), { min: Math.min(image.low - span / 2, image.center), max: Math.max(image.high + span / 2, image.center), value: image.center });
  Object.assign($("width"), { min: 1, max: Math.max(span * 2, image.width), value: image.width });
  state.center = image.center;
  state.width = image.width;
  sizeCanvas();
  $("viewer").classList.toggle("small-image", image.columns < 256);
  loadFrame();
}

// The canvas is drawn at its display size (crisp outlines); image pixel = canvas pixel / scale.
function sizeCanvas() {
  const image = state.doc?.image;
  if (!image || image.error) return;
  const canvas = $("canvas");
  const room = Math.max(($("viewer").clientWidth || 640) - 24, 200);
  const scale = Math.min(room / image.columns, (window.innerHeight * 0.7) / image.rows, 8);
  const ratio = window.devicePixelRatio || 1;
  const width = Math.floor(image.columns * scale), height = Math.floor(image.rows * scale);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  state.scale = canvas.width / image.columns;
  drawCanvas();
}

function frameUrl(which) {
  const q = new URLSearchParams({ token: TOKEN, which, center: state.center, width: state.width });
  return `/api/files/${state.doc.id}/frames/${state.frame}.png?${q}`;
}

function loadFrame() {
  if (!state.doc || !state.doc.image || state.doc.image.error) return;
  renderLabels();
  picture.onload = drawCanvas;
  picture.onerror = () => { $("image-error").hidden = false; $("image-error").textContent = "This frame cannot be shown."; };
  picture.src = frameUrl("input");
  if (state.result && !state.result.image?.error) $("after-image").src = frameUrl("output");
  renderAfterCaption();
}

function renderLabels() {
  $("frame-label").textContent = `${state.frame + 1} of ${state.doc.image.frames}`;
  $("after-frame-label").textContent = `${state.frame + 1} of ${state.doc.image.frames}`;
  $("frame").value = state.frame;
  $("after-frame").value = state.frame;
  $("canvas").setAttribute("aria-label", `Image, frame ${state.frame + 1} of ${state.doc.image.frames}. `
    + "Drag to draw a mask, or type its pixels below; arrow keys change the frame.");
  $("center-label").textContent = Math.round(state.center);
  $("width-label").textContent = Math.round(state.width);
}

function scheduleFrame() {
  renderLabels();
  clearTimeout(frameTimer);
  frameTimer = setTimeout(loadFrame, 80);
}

function maskApplies(mask) {
  return mask.frames === null || mask.frames.includes(state.frame);
}

function drawCanvas() {
  const canvas = $("canvas");
  const image = state.doc?.image;
  if (!image || image.error) return;
  const ctx = canvas.getContext("2d");
  const k = state.scale, px = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = k < 2;
  if (picture.complete && picture.naturalWidth) ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 2 * px;
  ctx.font = `600 ${12 * px}px system-ui, sans-serif`;
  for (const mask of state.masks) {
    if (!maskApplies(mask)) continue;
    const [x, y, w, h] = [mask.x * k, mask.y * k, mask.width * k, mask.height * k];
    ctx.setLineDash(mask.enabled ? [] : [5 * px, 4 * px]);
    ctx.fillStyle = mask.enabled ? "rgba(220, 38, 38, 0.30)" : "rgba(148, 163, 184, 0.12)";
    ctx.strokeStyle = mask.enabled ? "#ef4444" : "#94a3b8";
    ctx.fillRect(x, y, w, h);
    ctx.strokeRect(x, y, w, h);
    ctx.setLineDash([]);
    const label = `#${mask.id}`;
    const tw = ctx.measureText(label).width + 8 * px;
    ctx.fillStyle = mask.enabled ? "#ef4444" : "#64748b";
    ctx.fillRect(x, Math.max(y - 16 * px, 0), tw, 16 * px);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x + 4 * px, Math.max(y - 16 * px, 0) + 12 * px);
  }
  if (drawing) {
    const r = rectOf(drawing);
    ctx.setLineDash([5 * px, 4 * px]);
    ctx.strokeStyle = "#facc15";
    ctx.strokeRect(r.x * k, r.y * k, r.width * k, r.height * k);
    ctx.setLineDash([]);
  }
}

function imagePoint(event) {
  const image = state.doc.image;
  const box = $("canvas").getBoundingClientRect();
  const x = ((event.clientX - box.left) / box.width) * image.columns;
  const y = ((event.clientY - box.top) / box.height) * image.rows;
  return { x: Math.min(Math.max(x, 0), image.columns), y: Math.min(Math.max(y, 0), image.rows) };
}

function rectOf(d) {
  const x = Math.floor(Math.min(d.x0, d.x1));
  const y = Math.floor(Math.min(d.y0, d.y1));
  return { x, y, width: Math.ceil(Math.max(d.x0, d.x1)) - x, height: Math.ceil(Math.max(d.y0, d.y1)) - y };
}

function startDrawing(event) {
  if (event.button !== 0) return;
  const p = imagePoint(event);
  drawing = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
  $("canvas").setPointerCapture?.(event.pointerId);
  event.preventDefault();
}

function moveDrawing(event) {
  if (!drawing) return;
  const p = imagePoint(event);
  drawing.x1 = p.x;
  drawing.y1 = p.y;
  drawCanvas();
}

function endDrawing(event) {
  if (!drawing) return;
  moveDrawing(event);
  const r = rectOf(drawing);
  drawing = null;
  if (r.width >= 1 && r.height >= 1 && (r.width * state.scale >= 4 || r.height * state.scale >= 4)) {
    const only = document.querySelector('input[name="mask-frames"]:checked').value === "this";
    state.masks.push({ id: state.nextMask++, ...r, frames: only ? [state.frame] : null, enabled: true });
    renderMasks();
    markStale();
  }
  drawCanvas();
}

// A mask typed as pixels (x, y, width, height): the keyboard's way to draw one.
function addTypedMask(event) {
  event.preventDefault();
  const image = state.doc?.image;
  if (!image || image.error) return;
  const [x, y, width, height] = ["mask-x", "mask-y", "mask-w", "mask-h"].map((id) => Number($(id).value));
  const whole = [x, y, width, height].every((v) => Number.isInteger(v));
  if (!whole || x < 0 || y < 0 || width < 1 || height < 1) {
    setStatus("mask-form-status", "x and y are whole numbers from 0, width and height from 1.", "error");
    return;
  }
  if (x + width > image.columns || y + height > image.rows) {
    setStatus("mask-form-status", `The image is ${image.columns} × ${image.rows}: the mask must fit inside it.`, "error");
    return;
  }
  const only = document.querySelector('input[name="mask-frames"]:checked').value === "this";
  const mask = { id: state.nextMask++, x, y, width, height, frames: only ? [state.frame] : null, enabled: true };
  state.masks.push(mask);
  setStatus("mask-form-status", `Mask #${mask.id} added.`, "ok");
  renderMasks();
  drawCanvas();
  markStale();
}

function canvasKey(event) {
  const image = state.doc?.image;
  if (!image || image.error || image.frames <= 1) return;
  const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, PageDown: 10, PageUp: -10 }[event.key];
  if (!step) return;
  event.preventDefault();
  state.frame = Math.min(Math.max(state.frame + step, 0), image.frames - 1);
  scheduleFrame();
  drawCanvas();
}

// "Suggest masks": the local fastanon reads the image's text (the ocr extra) and proposes a mask
// over each line found, on every frame; each can be unticked like a drawn one.
async function suggestMasks() {
  if (!state.doc) return;
  const button = $("suggest-masks");
  const doc = state.doc;
  button.disabled = true;
  setStatus("suggest-status", "Looking for text in the image…");
  try {
    const found = await (await api(`/api/files/${doc.id}/text`, { method: "POST" })).json();
    if (state.doc !== doc) return;                       // another file was opened meanwhile
    let added = 0;
    for (const m of found.masks) {
      const same = (k) => k.x === m.x && k.y === m.y && k.width === m.width && k.height === m.height && k.frames === null;
      if (state.masks.some(same)) continue;
      state.masks.push({ id: state.nextMask++, x: m.x, y: m.y, width: m.width, height: m.height, frames: null, enabled: true, found: m.text });
      added++;
    }
    const frames = found.frames.map((f) => f + 1).join(", ");
    const text = found.masks.length
      ? `Text found in frame ${frames}: ${added} mask(s) added, on every frame${added < found.masks.length ? ` (${found.masks.length - added} already there)` : ""}. Untick any that covers no identifying text.`
      : `No text found (frame ${frames} looked at).`;
    setStatus("suggest-status", text, "ok");
    renderMasks();
    drawCanvas();
    markStale();
  } catch (error) {
    if (state.doc === doc) setStatus("suggest-status", error.message, "error");
  } finally {
    setupSuggest();
  }
}

function setupSuggest() {
  const button = $("suggest-masks");
  const ready = Boolean(state.meta?.detect_text);
  button.disabled = !ready || !state.doc?.image || Boolean(state.doc.image.error);
  button.title = ready ? "Find text burned into the image and add a mask over each line"
    : "Needs the text detector: pip install 'fastanon[ocr]'";
}

function renderMasks() {
  const list = $("masks");
  list.replaceChildren(...state.masks.map((mask) => el("li", { class: mask.enabled ? "" : "off" },
    el("label", { class: "inline" },
      el("input", { type: "checkbox", checked: mask.enabled, "aria-label": `Enable mask ${mask.id}`,
        onchange: (event) => { mask.enabled = event.target.checked; renderMasks(); drawCanvas(); markStale(); } }),
      el("span", { class: "mask-id", text: `#${mask.id}` }),
      el("span", { class: "mono", text: `${mask.x},${mask.y} · ${mask.width}×${mask.height}` }),
      el("span", { class: "muted", text: mask.frames ? `frame ${mask.frames[0] + 1}` : "every frame" }),
      mask.found !== undefined ? el("span", { class: "muted found", title: "The text the detector read under this mask", text: `suggested: “${mask.found}”` }) : null),
    el("button", { type: "button", class: "link delete", title: `Delete mask ${mask.id}`, "aria-label": `Delete mask ${mask.id}`,
      onclick: () => { state.masks = state.masks.filter((m) => m !== mask); renderMasks(); drawCanvas(); markStale(); } }, "✕"))));
  $("no-masks").hidden = state.masks.length > 0;
  $("save-rule").disabled = !state.masks.some((m) => m.enabled);
}

// -- step 4: preview and download ------------------------------------------------------------

function markStale() {
  if (state.result) $("stale").hidden = state.resultKey === choicesKey();
}

async function updatePreview() {
  if (!state.doc) return;
  const button = $("update");
  button.disabled = true;
  setStatus("result-status", "Anonymizing…");
  try {
    const key = choicesKey();
    const response = await api(`/api/files/${state.doc.id}/preview`, { method: "POST", json: JSON.parse(key) });
    state.result = await response.json();
    state.resultKey = key;
    const changed = state.result.changes.filter(isChange).length;
    const notes = state.result.notes.length ? ` Note: ${state.result.notes.join(" ")}` : "";
    setStatus("result-status", `Preview updated: ${changed} attribute(s) change, ${state.masks.filter((m) => m.enabled).length} mask(s) applied; the anonymized file has ${bytes(state.result.size)}.${notes}`, "ok");
    renderResult();
  } catch (error) {
    setStatus("result-status", error.message, "error");
  } finally {
    button.disabled = false;
  }
}

function renderResult() {
  const result = state.result;
  $("result").hidden = !result;
  if (!result) return;
  $("stale").hidden = true;
  const hasImage = result.image && !result.image.error;
  $("after-figure").hidden = !hasImage;
  if (hasImage) $("after-image").src = frameUrl("output");
  renderAfterCaption();
  renderChanges();
}

function renderAfterCaption() {
  if (!state.result || !state.doc?.image || state.doc.image.error) return;
  const frames = state.doc.image.frames;
  $("after-caption").textContent = `Anonymized image${frames > 1 ? `, frame ${state.frame + 1} of ${frames}` : ""}`
    + " (same window as above)";
}

function afterCell(c) {
  if (c.after === null) return el("span", { class: "badge removed", text: "removed" });
  if (c.status === "added") return el("span", {}, el("span", { class: "badge added", text: "added" }), " ", c.after);
  if (c.after === "") return el("span", { class: "badge emptied", text: "empty" });
  return c.after;
}

// What "changes" means, in the status line and the table alike.
function isChange(c) {
  return c.status !== "kept" && c.status !== "unchanged";
}

function renderChanges() {
  const only = $("changed-only").checked;
  const all = state.result.changes;
  const rows = only ? all.filter(isChange) : all;
  $("change-count").textContent = `${rows.length} of ${all.length} row(s)`;
  $("changes").tBodies[0].replaceChildren(...rows.map((c) => el("tr", { class: `st-${c.status} cat-row cat-${slug(c.category)}` },
    el("td", { class: "path", title: `${c.tag} ${c.path}` }, el("span", { class: "mono muted small", text: c.tag }), " ", c.path),
    el("td", { class: "value before", title: c.before ?? "", text: c.before ?? "—" }),
    el("td", { class: "arrow", text: "→" }),
    el("td", { class: "value after", title: c.after ?? "" }, afterCell(c)))));
}

async function download() {
  if (!state.doc) return;
  const button = $("download");
  button.disabled = true;
  setStatus("result-status", "Preparing the anonymized file…");
  try {
    const response = await api(`/api/files/${state.doc.id}/download`, { method: "POST", json: choices(true) });
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || "anonymized.dcm";
    saveBlob(await response.blob(), name);
    setStatus("result-status", `Downloaded ${name}.`, "ok");
  } catch (error) {
    setStatus("result-status", error.message, "error");
  } finally {
    button.disabled = false;
  }
}

// The record to keep beside the file: JSON, or the same as a page.
async function downloadRecord(format) {
  if (!state.doc) return;
  setStatus("result-status", "Preparing the record…");
  try {
    const response = await api(`/api/files/${state.doc.id}/record`, { method: "POST", json: choices(true) });
    const payload = await response.json();
    const blob = format === "html" ? new Blob([payload.html], { type: "text/html" })
      : new Blob([JSON.stringify(payload.record, null, 1) + "\n"], { type: "application/json" });
    saveBlob(blob, `${payload.filename}.${format}`);
    setStatus("result-status", `Downloaded ${payload.filename}.${format}: SHA-256 of the output ${payload.record.output.sha256.slice(0, 16)}…`, "ok");
  } catch (error) {
    setStatus("result-status", error.message, "error");
  }
}

// -- step 5: save for a whole study ----------------------------------------------------------

async function save(path, body, fallbackName) {
  try {
    const response = await api(path, { method: "POST", json: body });
    const payload = await response.json();
    saveBlob(new Blob([payload.text], { type: "application/toml" }), payload.filename || fallbackName);
    $("saved").hidden = false;
    $("saved").textContent = `# ${payload.filename}\n${payload.text}`;
  } catch (error) {
    $("saved").hidden = false;
    $("saved").textContent = error.message;
  }
}

// -- wiring ----------------------------------------------------------------------------------

function wire() {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("hover"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("hover"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    openFile(event.dataTransfer.files[0]);
  });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  $("file-input").addEventListener("change", (event) => { openFile(event.target.files[0]); event.target.value = ""; });
  drop.addEventListener("keydown", (event) => {
    if (event.target === drop && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); $("file-input").click(); }
  });
  $("choose-file").addEventListener("click", () => $("file-input").click());

  $("filter").addEventListener("input", renderTable);
  $("show-all").addEventListener("click", () => { state.showAll = true; renderTable(); });
  $("reset-overrides").addEventListener("click", () => { state.overrides = {}; refreshRows(); });

  $("frame").addEventListener("input", (event) => { state.frame = Number(event.target.value); scheduleFrame(); drawCanvas(); });
  $("after-frame").addEventListener("input", (event) => { state.frame = Number(event.target.value); scheduleFrame(); drawCanvas(); });
  $("canvas").addEventListener("keydown", canvasKey);
  $("mask-form").addEventListener("submit", addTypedMask);
  $("record-json").addEventListener("click", () => downloadRecord("json"));
  $("record-html").addEventListener("click", () => downloadRecord("html"));
  for (const link of document.querySelectorAll("a.skip")) {
    link.addEventListener("click", (event) => {
      const target = document.querySelector(link.dataset.focus);
      if (target && !target.closest("[hidden]")) { event.preventDefault(); target.focus(); target.scrollIntoView({ block: "center" }); }
    });
  }
  $("center").addEventListener("input", (event) => { state.center = Number(event.target.value); scheduleFrame(); });
  $("width").addEventListener("input", (event) => { state.width = Number(event.target.value); scheduleFrame(); });
  $("window-reset").addEventListener("click", () => {
    const image = state.doc.image;
    state.center = image.center;
    state.width = image.width;
    $("center").value = image.center;
    $("width").value = image.width;
    loadFrame();
  });
  const canvas = $("canvas");
  canvas.addEventListener("pointerdown", startDrawing);
  canvas.addEventListener("pointermove", moveDrawing);
  canvas.addEventListener("pointerup", endDrawing);
  window.addEventListener("resize", sizeCanvas);

  $("update").addEventListener("click", updatePreview);
  $("download").addEventListener("click", download);
  $("changed-only").addEventListener("change", renderChanges);
  $("save-policy").addEventListener("click", () => save("/api/policy", choices(false), "policy.toml"));
  $("suggest-masks").addEventListener("click", suggestMasks);
  $("load-lookup").addEventListener("click", () => $("lookup-input").click());
  $("lookup-input").addEventListener("change", (event) => { loadLookup(event.target.files[0]); event.target.value = ""; });
  $("drop-lookup").addEventListener("click", dropLookup);
  $("save-rule").addEventListener("click", () => state.doc && save(`/api/files/${state.doc.id}/rule`, choices(true), "mask-rule.toml"));

  // The file is forgotten when the tab goes; while it is open, the server hears from it.
  window.addEventListener("pagehide", closeDocument);
  setInterval(() => {
    if (state.doc) api(`/api/files/${state.doc.id}/ping`, { method: "POST" }).catch(() => {});
  }, 60000);
}

async function start() {
  wire();
  if (!TOKEN) {
    setStatus("file-status", "This address has no token: open the full address that fastanon serve printed.", "error");
    return;
  }
  try {
    state.meta = await (await api("/api/meta")).json();
    $("limit-note").textContent = `Up to ${bytes(state.meta.max_size)}; kept in memory while this tab is open.`;
    $("footer").textContent = `fastanon ${state.meta.version} · files are forgotten when this tab closes or after ${Math.round(state.meta.idle_timeout / 60)} idle minutes`;
    document.body.classList.add("ready");
  } catch (error) {
    setStatus("file-status", error.message, "error");
  }
}

start();
