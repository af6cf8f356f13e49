// embedkit serve: the collection map page. Hand-written, no dependencies, no network beyond this server.
// The map is drawn into one ImageData buffer (a few ms for 100k points), zoomed and panned in place;
// clicks are resolved through a uniform grid over the [0, 1]^2 layout. Everything it shows comes
// from the JSON API documented in docs/serve.md.
"use strict";

const $ = (id) => document.getElementById(id);
const ek = (window.__ek = { ready: false, firstPaintMs: null, n: 0, selected: null, list: [], errors: [] });

const PALETTE = [
  0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf,
  0xaec7e8, 0xffbb78, 0x98df8a, 0xff9896, 0xc5b0d5, 0xc49c94, 0xf7b6d2, 0xc7c7c7, 0xdbdb8d, 0x9edae5,
];
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const NONE_RGB = 0xcccccc;

const st = {
  ids: null, x: null, y: null, n: 0, col: null, pos: new Map(),
  scale: 1, tx: 0, ty: 0, dpr: 1, w: 0, h: 0,
  grid: null, gridN: 128, marks: new Set(), selected: null, field: null,
};

function abgr(rgb) { // 0xRRGGBB -> little-endian ABGR for a Uint32 view of ImageData
  return (0xff000000 | ((rgb & 0xff) << 16) | (rgb & 0xff00) | ((rgb >> 16) & 0xff)) >>> 0;
}
function viridis(t) {
  t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  const c = a.map((v, k) => Math.round(v + (b[k] - v) * f));
  return (c[0] << 16) | (c[1] << 8) | c[2];
}
function hex(rgb) { return "#" + rgb.toString(16).padStart(6, "0"); }

async function api(url, opts) {
  const r = await fetch(url, opts);
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: `${r.status} ${r.statusText}` }; }
  if (!r.ok) throw new Error(body && body.error ? body.error : `${r.status} ${r.statusText}`);
  return body;
}

// ---- map ----------------------------------------------------------------------------------------

const canvas = $("map");
const ctx = canvas.getContext("2d");
let image = null, buf32 = null, pending = false;

function resize() {
  const r = canvas.getBoundingClientRect();
  st.dpr = window.devicePixelRatio || 1;
  st.w = Math.max(1, Math.round(r.width * st.dpr));
  st.h = Math.max(1, Math.round(r.height * st.dpr));
  canvas.width = st.w; canvas.height = st.h;
  image = ctx.createImageData(st.w, st.h);
  buf32 = new Uint32Array(image.data.buffer);
}

function fit() {
  const side = Math.min(st.w, st.h) * 0.94;
  st.scale = side; st.tx = (st.w - side) / 2; st.ty = (st.h - side) / 2;
  draw();
}

// data [0,1]^2 -> device pixels (y up)
function toScreen(x, y) { return [x * st.scale + st.tx, (1 - y) * st.scale + st.ty]; }
function toData(px, py) { return [(px - st.tx) / st.scale, 1 - (py - st.ty) / st.scale]; }

function draw() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

function render() {
  if (!buf32 || !st.n) return;
  const t0 = performance.now();
  buf32.fill(0xffffffff);
  const { x, y, col, n, w, h, scale, tx, ty } = st;
  const r = Math.round((n > 20000 ? 1 : n > 2000 ? 2 : n > 200 ? 3 : 5) * Math.min(2, st.dpr)); // half-size, device px
  for (let i = 0; i < n; i++) {
    const px = (x[i] * scale + tx) | 0, py = ((1 - y[i]) * scale + ty) | 0;
    if (px < r || py < r || px >= w - r || py >= h - r) continue;
    const c = col[i];
    for (let dy = -r + 1; dy < r; dy++) {
      const o = (py + dy) * w + px;
      for (let dx = -r + 1; dx < r; dx++) buf32[o + dx] = c;
    }
  }
  ctx.putImageData(image, 0, 0);
  // neighbours and selection on top
  ctx.lineWidth = 2 * st.dpr;
  for (const id of st.marks) ring(id, "#ff6f00", 6);
  if (st.selected !== null) ring(st.selected, "#000", 9);
  if (ek.firstPaintMs === null) {
    ek.firstPaintMs = performance.now();
    ek.renderMs = performance.now() - t0;
  }
  ek.lastRenderMs = performance.now() - t0;
}

function ring(id, color, radius) {
  const i = st.pos.get(id);
  if (i === undefined) return;
  const [px, py] = toScreen(st.x[i], st.y[i]);
  ctx.strokeStyle = color;
  ctx.beginPath(); ctx.arc(px, py, radius * st.dpr, 0, 2 * Math.PI); ctx.stroke();
}

function buildGrid() {
  const G = st.gridN, cells = new Array(G * G);
  for (let i = 0; i < st.n; i++) {
    const gx = Math.min(G - 1, Math.max(0, (st.x[i] * G) | 0)), gy = Math.min(G - 1, Math.max(0, (st.y[i] * G) | 0));
    const k = gy * G + gx;
    (cells[k] || (cells[k] = [])).push(i);
  }
  st.grid = cells;
}

function nearest(px, py, maxPx) { // index of the point nearest to device pixel (px, py) within maxPx
  const [dx, dy] = toData(px, py), rad = maxPx / st.scale, G = st.gridN;
  const x0 = Math.max(0, Math.floor((dx - rad) * G)), x1 = Math.min(G - 1, Math.floor((dx + rad) * G));
  const y0 = Math.max(0, Math.floor((dy - rad) * G)), y1 = Math.min(G - 1, Math.floor((dy + rad) * G));
  let best = -1, bd = rad * rad;
  for (let gy = y0; gy <= y1; gy++) for (let gx = x0; gx <= x1; gx++) {
    const c = st.grid[gy * G + gx];
    if (!c) continue;
    for (const i of c) {
      const ex = st.x[i] - dx, ey = st.y[i] - dy, d = ex * ex + ey * ey;
      if (d <= bd) { bd = d; best = i; }
    }
  }
  return best;
}

// one synchronous full redraw (benchmarks time it)
ek.redraw = () => render();

// screen position (CSS px, relative to the canvas) of an item: used by tests and the search list
ek.screenPos = (id) => {
  const i = st.pos.get(id);
  if (i === undefined) return null;
  const [px, py] = toScreen(st.x[i], st.y[i]);
  return [px / st.dpr, py / st.dpr];
};

let drag = null;
canvas.addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY, tx: st.tx, ty: st.ty, moved: false };
  canvas.setPointerCapture(e.pointerId);
});
canvas.addEventListener("pointermove", (e) => {
  if (!drag) return;
  const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
  if (drag.moved) { st.tx = drag.tx + dx * st.dpr; st.ty = drag.ty + dy * st.dpr; draw(); }
});
canvas.addEventListener("pointerup", (e) => {
  const d = drag; drag = null;
  if (!d || d.moved) return;
  const r = canvas.getBoundingClientRect();
  const i = nearest((e.clientX - r.left) * st.dpr, (e.clientY - r.top) * st.dpr, 10 * st.dpr);
  if (i >= 0) select(st.ids[i], true);
});
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const r = canvas.getBoundingClientRect();
  const px = (e.clientX - r.left) * st.dpr, py = (e.clientY - r.top) * st.dpr;
  const f = Math.exp(-e.deltaY * 0.0015);
  st.tx = px - (px - st.tx) * f; st.ty = py - (py - st.ty) * f; st.scale *= f;
  draw();
}, { passive: false });
window.addEventListener("resize", () => { resize(); fit(); });
$("reset-view").addEventListener("click", fit);

// ---- colours ------------------------------------------------------------------------------------

async function colourBy(name) {
  const f = await api(`/api/fields/${encodeURIComponent(name)}`);
  st.field = f;
  const col = new Uint32Array(st.n), legend = $("legend");
  legend.innerHTML = "";
  if (f.kind === "category") {
    const pal = f.categories.map((c, k) => (c === "other" ? 0x999999 : PALETTE[k % PALETTE.length]));
    for (let i = 0; i < st.n; i++) col[i] = abgr(f.codes[i] < 0 ? NONE_RGB : pal[f.codes[i]]);
    f.categories.forEach((c, k) => {
      const d = document.createElement("div");
      d.innerHTML = `<span class="sw" style="background:${hex(pal[k])}"></span>`;
      d.appendChild(document.createTextNode(c));
      legend.appendChild(d);
    });
  } else {
    const lo = f.min ?? 0, hi = f.max ?? 1, span = hi - lo || 1;
    for (let i = 0; i < st.n; i++) {
      const v = f.values[i];
      col[i] = abgr(v === null ? NONE_RGB : viridis((v - lo) / span));
    }
    legend.innerHTML = `<div>${f.label}</div><div><span class="sw" style="background:${hex(viridis(0))}"></span>${lo.toFixed(3)}
      <span class="sw" style="background:${hex(viridis(1))}"></span>${hi.toFixed(3)}</div>`;
  }
  st.col = col;
  draw();
}

// ---- item panel ---------------------------------------------------------------------------------

function bars(ul, rows) {
  ul.innerHTML = "";
  for (const [label, p] of rows) {
    const li = document.createElement("li");
    li.innerHTML = `<div class="bar" style="width:${Math.round(100 * Math.min(1, p))}%"></div><span></span>`;
    li.querySelector("span").textContent = `${label}  ${p.toFixed(3)}`;
    ul.appendChild(li);
  }
}

function play(url, startS) {
  const a = $("player");
  if (a.getAttribute("src") !== url) a.src = url;
  if (startS) { a.currentTime = startS; }
  const p = a.play();
  if (p && p.catch) p.catch((e) => ek.errors.push(String(e)));
}

async function select(id, autoplay) {
  st.selected = id; ek.selected = id; ek.itemLoaded = false;
  draw();
  try {
    const it = await api(`/api/items/${id}`);
    $("sel-name").textContent = it.name;
    $("sel-path").textContent = it.path + (it.duration_s ? `  (${it.duration_s.toFixed(1)} s)` : "");
    if (autoplay) play(it.audio); else $("player").src = it.audio;
    bars($("tags"), (it.tags || []).map((t) => [t.tag, t.p]));
    if (!it.tags) $("tags").innerHTML = "<li>store keeps no tags (embed with --tags)</li>";
    const hl = $("sel-highlight");
    hl.innerHTML = "";
    if (it.highlight && !it.highlight.whole_file) {
      const b = document.createElement("button");
      b.textContent = `▶ highlight ${it.highlight.start_s.toFixed(0)}–${it.highlight.end_s.toFixed(0)} s`;
      b.onclick = () => play(it.audio, it.highlight.start_s);
      hl.appendChild(b);
    }
    const preds = it.predictions || [];
    $("predictions-wrap").hidden = preds.length === 0;
    const pu = $("predictions");
    pu.innerHTML = "";
    for (const p of preds) {
      const li = document.createElement("li");
      const what = p.error ? p.error : p.top ? p.top.map((t) => `${t.label} ${t.p.toFixed(2)}`).join(", ")
        : p.values ? Object.entries(p.values).map(([k, v]) => `${k} ${v}`).join(", ") : p.prediction;
      li.textContent = `${p.head}: ${what}`;
      pu.appendChild(li);
    }
    ek.itemLoaded = true;
    const nb = await api(`/api/items/${id}/neighbors?k=10`);
    showList(`Nearest neighbours of ${it.name}`, nb.results);
  } catch (e) { status(String(e.message || e), true); }
}

function showList(title, rows) {
  $("list-title").textContent = title;
  const ol = $("neighbors");
  ol.innerHTML = "";
  st.marks = new Set(rows.map((r) => r.id));
  for (const r of rows) {
    const li = document.createElement("li");
    li.dataset.id = r.id;
    const b = document.createElement("button");
    b.textContent = "▶"; b.title = "play";
    b.onclick = () => play(r.audio);
    const a = document.createElement("a");
    a.textContent = r.name; a.title = r.path;
    a.onclick = () => select(r.id, true);
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = r.score !== undefined ? r.score.toFixed(3) + (r.cold ? " cold" : "") : "";
    li.append(b, a, s);
    ol.appendChild(li);
  }
  ek.list = rows;
  draw();
}

function status(msg, isError) {
  const s = $("status");
  s.textContent = msg;
  s.className = "status" + (isError ? " error" : "");
  if (isError) ek.errors.push(msg);
}

// ---- search -------------------------------------------------------------------------------------

let searchTimer = null;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = $("search").value.trim(), ul = $("search-results");
    if (!q) { ul.hidden = true; return; }
    const res = await api(`/api/search?q=${encodeURIComponent(q)}&limit=20`);
    ul.innerHTML = "";
    for (const r of res.results) {
      const li = document.createElement("li");
      li.textContent = r.name; li.title = r.path; li.dataset.id = r.id;
      li.onclick = () => { ul.hidden = true; select(r.id, true); };
      ul.appendChild(li);
    }
    if (!res.results.length) ul.innerHTML = "<li>no match</li>";
    ul.hidden = false;
  }, 150);
});
$("search").addEventListener("keydown", (e) => {
  if (e.key === "Enter") { const li = $("search-results").querySelector("li[data-id]"); if (li) li.click(); }
  if (e.key === "Escape") $("search-results").hidden = true;
});

// ---- query by audio file ------------------------------------------------------------------------

async function queryFile(file) {
  const qs = $("query-status");
  qs.className = "status-line"; qs.textContent = `embedding ${file.name}…`;
  try {
    const res = await api(`/api/query?name=${encodeURIComponent(file.name)}&k=10`, { method: "POST", body: file });
    qs.textContent = res.same_as !== null ? `${file.name} is a stored track (same bytes)` : `${file.name}: ${res.results.length} similar tracks`;
    ek.lastQuery = res;
    showList(`Similar to ${file.name}`, res.results);
  } catch (e) {
    qs.className = "status-line error"; qs.textContent = String(e.message || e);
    ek.lastQuery = { error: String(e.message || e) };
  }
}
$("query-file").addEventListener("change", (e) => { if (e.target.files[0]) queryFile(e.target.files[0]); });
const wrap = $("map-wrap");
for (const t of ["dragenter", "dragover"]) wrap.addEventListener(t, (e) => { e.preventDefault(); wrap.classList.add("dragover"); });
wrap.addEventListener("dragleave", () => wrap.classList.remove("dragover"));
// a file dropped anywhere else on the page is a query too (instead of the browser navigating to it)
for (const t of ["dragover", "drop"]) document.addEventListener(t, (e) => {
  e.preventDefault();
  if (t === "drop" && !wrap.contains(e.target) && e.dataTransfer && e.dataTransfer.files[0]) queryFile(e.dataTransfer.files[0]);
});
wrap.addEventListener("drop", (e) => {
  e.preventDefault(); wrap.classList.remove("dragover");
  const f = e.dataTransfer && e.dataTransfer.files[0];
  if (f) queryFile(f);
});

// ---- recommendations ----------------------------------------------------------------------------

$("history-file").addEventListener("change", async (e) => {
  const f = e.target.files[0];
  if (f) $("history").value = await f.text();
});
$("recommend").addEventListener("click", async () => {
  const hs = $("history-status");
  hs.className = "status-line"; hs.textContent = "recommending…";
  const user = encodeURIComponent($("history-user").value.trim());
  const div = encodeURIComponent($("history-div").value || "0");
  try {
    const res = await api(`/api/recommend?k=20&user=${user}&diversity=${div}`, { method: "POST", body: $("history").value });
    hs.textContent = `for ${res.user}: scorer ${res.scorer}; ${res.history.items} history items used` +
      (res.history.unknown ? `, ${res.history.unknown} unknown` : "");
    ek.lastRecommend = res;
    showList(`Recommended for ${res.user}`, res.recommendations);
  } catch (e) {
    hs.className = "status-line error"; hs.textContent = String(e.message || e);
    ek.lastRecommend = { error: String(e.message || e) };
  }
});

// ---- start --------------------------------------------------------------------------------------

async function start() {
  ek.t0 = performance.now();
  resize();
  const [info, bin] = await Promise.all([api("/api/info"), fetch("/api/map.bin").then((r) => r.arrayBuffer())]);
  const n = bin.byteLength / 12;
  st.n = ek.n = n;
  st.ids = new Int32Array(bin, 0, n);
  st.x = new Float32Array(bin, 4 * n, n);
  st.y = new Float32Array(bin, 8 * n, n);
  for (let i = 0; i < n; i++) st.pos.set(st.ids[i], i);
  st.col = new Uint32Array(n).fill(abgr(0x1f77b4));
  $("store-name").textContent = `${info.store} — ${info.items} tracks, ${info.model}, map: ${info.layout.method}`;
  fit();
  render();
  status(`${n} tracks`);
  buildGrid();
  const sel = $("field");
  for (const f of info.fields) {
    const o = document.createElement("option");
    o.value = f.name; o.textContent = f.label;
    sel.appendChild(o);
  }
  const names = info.fields.map((f) => f.name);
  const first = names.find((f) => f.startsWith("head:") || f.startsWith("label:")) ||
    (names.includes("tag:top") ? "tag:top" : "folder");
  sel.value = first;
  sel.addEventListener("change", () => colourBy(sel.value).catch((e) => status(e.message, true)));
  await colourBy(first);
  ek.ready = true;
}
start().catch((e) => status(String(e.message || e), true));
