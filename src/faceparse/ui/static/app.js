// faceparse page: upload / drop / pick a photo, show every model stage. Plain JavaScript, no dependencies.
// The page server (faceparse ui page) answers /api/*; label maps arrive as base64 of raw uint8 class ids.
// The cards are the registered stages' (/api/info "cards", in registration order): nothing here knows a stage
// by name. A card answers images (PNG), label maps (painted here with the label table's palette) and lines;
// the card whose layer is "labels" is also the overlay beside the photo (re-asked by the slider), the one
// whose layer is "points" is drawn on the photo.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = {
  info: null,          // /api/info
  file: null,          // the current photo (File or Blob with a name)
  photo: null,         // its decoded <img>
  overlay: null,       // the "labels" layer: {labels: Uint8Array, width, height, resolution, faces}
  cards: {},           // stage name → its card's <article>
  enabled: [],         // per class: shown in the overlay
  controller: null,    // the request in flight (aborted by a newer one)
  analyzing: false,    // a new photo is being analysed (the slider waits for it)
};

function setState(s) { document.body.dataset.state = s; $("#busy").hidden = s !== "busy"; }

function showError(title, message) {
  $("#error-title").textContent = title;
  $("#error-message").textContent = message || "";
  $("#error").hidden = false;
  setState("error");
}

function clearError() { $("#error").hidden = true; }

function mb(n) { return (n / 1024 / 1024).toFixed(1) + " MB"; }

function decodeLabels(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// --- talking to the page's server -------------------------------------------------------------------------

class PageError extends Error {
  constructor(title, message) { super(message); this.title = title; }
}

async function call(url, options) {
  let resp;
  try {
    resp = await fetch(url, options);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new PageError("The page's server is not answering",
      `${location.origin} did not answer (${e.message}). Is \`faceparse ui page\` still running? ` +
      "Start it again and reload this page.");
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const err = (body && body.error) || {};
    throw new PageError(err.title || `HTTP ${resp.status}`, err.message || resp.statusText);
  }
  if (body === null) throw new PageError("Unreadable answer", `${url} did not answer JSON`);
  return body;
}

function form(file, resolution) {
  const f = new FormData();
  f.append("image", file, file.name || "photo");
  f.append("resolution", String(resolution));
  f.append("detect", $("#detect").checked ? "true" : "false");
  return f;
}

// --- start ------------------------------------------------------------------------------------------------

async function init() {
  try {
    state.info = await call("/api/info");
  } catch (e) {
    showError(e.title || "Error", e.message);
    return;
  }
  const info = state.info;
  const mode = $("#mode");
  mode.textContent = info.mode === "endpoint" ? `endpoint ${info.endpoint}` : "models in this process";
  if (info.mode === "endpoint") {
    const es = $("#endpoint-status");
    es.hidden = false;
    es.textContent = info.endpoint_ok ? "answering" : "not answering";
    es.className = "badge " + (info.endpoint_ok ? "ok" : "down");
    if (!info.endpoint_ok) {
      $("#warning").textContent = `The model server is not answering: ${info.endpoint_message || ""}`;
      $("#warning").hidden = false;
    }
  }
  $("#limit").textContent = mb(info.max_upload_bytes);
  $("#face-note").textContent = info.face_detection.message;
  listStages(info.registered);
  buildCards(info.cards);
  const r = $("#resolution");
  r.min = info.resolution.min; r.max = info.resolution.max; r.step = info.resolution.step;
  r.value = info.resolution.default;
  showResolution();
  state.enabled = info.classes.map(() => true);
  buildLegend();
  loadSamples();
  wire();
  setState("idle");
}

function listStages(stages) {
  // every registered stage (faceparse stages): what it answers and the metric its promotion compares
  const list = $("#stage-list");
  list.replaceChildren(...stages.map((st) => {
    const li = document.createElement("li");
    li.dataset.stage = st.name;
    const name = document.createElement("strong");
    name.textContent = st.name;
    li.append(name, ` — ${st.summary} (${st.outputs}; ${st.primary_metric}, ${st.direction === "max" ? "higher" : "lower"} is better)`);
    return li;
  }));
}

function wire() {
  $("#file").addEventListener("change", (e) => { if (e.target.files[0]) handleFile(e.target.files[0]); e.target.value = ""; });
  const drop = $("#drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) handleFile(f);
  });
  // a file dropped anywhere else must not make the browser leave the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  const r = $("#resolution");
  r.addEventListener("input", showResolution);
  r.addEventListener("change", requery);
  $("#detect").addEventListener("change", () => { if (state.file) handleFile(state.file); });
  $("#show-points").addEventListener("change", (e) => $("#points").classList.toggle("hidden", !e.target.checked));
  $("#all").addEventListener("click", () => setAll(true));
  $("#none").addEventListener("click", () => setAll(false));
}

async function loadSamples() {
  let list = [];
  try { list = await call("/api/samples"); } catch (e) { return; }
  const box = $("#samples");
  for (const s of list) {
    const b = document.createElement("button");
    b.type = "button";
    b.title = s.title;
    b.dataset.sample = s.name;
    const img = document.createElement("img");
    img.src = s.url; img.alt = s.title;
    const cap = document.createElement("span");
    cap.textContent = s.title;
    b.append(img, cap);
    b.addEventListener("click", async () => {
      try {
        const resp = await fetch(s.url);
        if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
        const blob = await resp.blob();
        $("#detect").checked = !s.aligned;     // the synthetic faces are aligned crops: nothing to detect
        handleFile(new File([blob], s.name, { type: blob.type }));
      } catch (e) {
        showError("The page's server is not answering", `the sample ${s.name} could not be fetched (${e.message})`);
      }
    });
    box.append(b);
  }
}

// --- one photo --------------------------------------------------------------------------------------------

async function handleFile(file) {
  clearError();
  const info = state.info;
  if (file.size > info.max_upload_bytes) {
    showError("The file is too large",
      `${file.name} is ${mb(file.size)}; the page takes at most ${mb(info.max_upload_bytes)}.`);
    $("#content").hidden = true; $("#empty").hidden = false;
    return;
  }
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  state.analyzing = true;
  setState("busy");
  const res = Number($("#resolution").value);
  const t0 = performance.now();
  let answer;
  try {
    answer = await call("/api/analyze", { method: "POST", body: form(file, res), signal: controller.signal });
  } catch (e) {
    if (e.name === "AbortError") return;
    state.analyzing = false;
    showError(e.title || "Error", e.message);
    $("#content").hidden = true; $("#empty").hidden = false;
    return;
  }
  if (controller !== state.controller) return;
  state.analyzing = false;
  const rtt = performance.now() - t0;
  state.file = file;
  try {
    state.photo = await loadPhoto(file);
  } catch (e) {
    showError("The browser cannot show this photo", e.message);
    return;
  }
  $("#empty").hidden = true;
  $("#content").hidden = false;
  render(answer, rtt);
  setState("ready");
  // the slider moved while this photo was being analysed: its resolution now
  if (Number($("#resolution").value) !== answer.resolution) requery();
}

function loadPhoto(file) {
  return new Promise((resolve, reject) => {
    const img = $("#photo");
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    const url = URL.createObjectURL(file);
    img.dataset.url = url;
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`${file.name} could not be decoded here`));
    img.src = url;
  });
}

// the first card drawing a layer of this kind ("labels" / "points"), or undefined
function layerCard(kind) { return state.info.cards.find((c) => c.card && c.layer === kind); }

function render(answer, rtt) {
  const { image, stages } = answer;
  $("#photo-caption").textContent = `${image.name} · ${image.width} × ${image.height}`;
  const points = layerCard("points");
  renderPoints(points ? stages[points.name] : undefined, image);
  renderOverlay(answer, rtt, true);
  for (const c of state.info.cards) renderCard(c, stages[c.name]);
}

function setSource(el, src, ms) {
  el.textContent = "";
  if (!src) return;
  const add = (label, value) => {
    if (el.childNodes.length) el.append(" · ");
    el.append(label + " ");
    const b = document.createElement("b");
    b.textContent = value;
    el.append(b);
  };
  add("model", src.model || "—");
  add("version", src.version || "—");
  if (src.arm) add("canary arm", src.arm);
  else add("answered", src.via && src.via.startsWith("http") ? `${src.via} (no canary arm header)` : (src.via || "—"));
  if (ms !== undefined) add("model time", `${Math.round(ms)} ms`);
}

function statusBox(st) {
  const p = document.createElement("p");
  p.className = st.status === "error" ? "failed" : "unavailable";
  p.dataset.status = st.status;
  p.textContent = st.message;
  return p;
}


// --- the overlay beside the photo (the "labels" layer) --------------------------------------------------

function renderOverlay(answer, rtt, full) {
  const canvas = $("#overlay");
  const msg = $("#overlay-message");
  const card = layerCard("labels");
  const st = card ? answer.stages[card.name] : { status: "no_card", message: "no stage draws a label map" };
  if (!st) return;
  if (st.status !== "ok") {
    state.overlay = null;
    canvas.hidden = true;
    msg.hidden = false;
    msg.className = st.status === "error" ? "failed" : "unavailable";
    msg.textContent = st.message;
    msg.dataset.status = st.status;
    delete canvas.dataset.resolution;
    delete canvas.dataset.faces;
    $("#timing").textContent = "";
    $("#overlay-source").textContent = "";
    updateLegendCounts();
    return;
  }
  canvas.hidden = false;
  msg.hidden = true;
  state.overlay = { labels: decodeLabels(st.labels), width: st.width, height: st.height,
                    resolution: st.resolution, faces: st.faces };
  drawOverlay();
  const what = full ? "all stages" : `${card.title.toLowerCase()} alone`;
  const t = $("#timing");
  t.textContent = "";
  const strong = document.createElement("strong");
  strong.textContent = `${st.width} × ${st.height} px`;
  const found = st.faces ? `${st.faces.length} face${st.faces.length === 1 ? "" : "s"} found · ` : "";
  t.append(found, strong, ` in ${Math.round(rtt)} ms round trip (${what}; its model time ${Math.round(st.model_ms)} ms)`);
  t.dataset.resolution = st.resolution;
  setSource($("#overlay-source"), st.source, undefined);
  $("#overlay-source").prepend(`${card.title}: `);
  updateLegendCounts();
}

function drawOverlay() {
  const p = state.overlay;
  if (!p || !state.photo) return;
  const W = p.width, H = p.height;
  const canvas = $("#overlay");
  canvas.width = W; canvas.height = H;
  canvas.style.aspectRatio = `${state.photo.naturalWidth} / ${state.photo.naturalHeight}`;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(state.photo, 0, 0, W, H);
  const img = ctx.getImageData(0, 0, W, H);
  const d = img.data, pal = state.info.palette, on = state.enabled, labels = p.labels;
  for (let i = 0, j = 0; i < labels.length; i++, j += 4) {
    const c = labels[i];
    if (c > 0 && on[c] && c < pal.length) {
      const col = pal[c];
      d[j] = (d[j] + col[0]) / 2; d[j + 1] = (d[j + 1] + col[1]) / 2; d[j + 2] = (d[j + 2] + col[2]) / 2;
    }
  }
  ctx.putImageData(img, 0, 0);
  drawFaces(ctx, p.faces || [], W / state.photo.naturalWidth, H / state.photo.naturalHeight);
  canvas.dataset.resolution = p.resolution;
  canvas.dataset.faces = p.faces ? p.faces.length : "";
}

// the detected faces' boxes and confidence, in the map's pixels (faces arrive in the photo's)
function drawFaces(ctx, faces, sx, sy) {
  const lw = Math.max(1, Math.round(Math.min(ctx.canvas.width, ctx.canvas.height) / 200));
  ctx.lineWidth = lw;
  ctx.strokeStyle = "#ffd400";
  ctx.fillStyle = "#ffd400";
  ctx.font = `${6 * lw + 6}px sans-serif`;
  for (const f of faces) {
    const [x0, y0, x1, y1] = f.box;
    ctx.strokeRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
    ctx.fillText(`face ${(100 * f.score).toFixed(0)}%`, x0 * sx, Math.max(6 * lw + 6, y0 * sy - 2 * lw));
  }
}

function buildLegend() {
  const ul = $("#legend");
  ul.textContent = "";
  state.info.classes.forEach((name, c) => {
    const li = document.createElement("li");
    li.dataset.class = name;
    const cb = document.createElement("input");
    cb.type = "checkbox"; cb.checked = state.enabled[c]; cb.id = `class-${c}`; cb.dataset.class = name;
    cb.disabled = c === 0;     // the background is never tinted
    cb.addEventListener("change", () => { state.enabled[c] = cb.checked; drawOverlay(); });
    const sw = document.createElement("span");
    sw.className = "swatch";
    const col = state.info.palette[c];
    sw.style.background = `rgb(${col[0]}, ${col[1]}, ${col[2]})`;
    const label = document.createElement("label");
    label.className = "name"; label.htmlFor = cb.id; label.textContent = name;
    const pct = document.createElement("span");
    pct.className = "pct";
    li.append(cb, sw, label, pct);
    ul.append(li);
  });
}

function updateLegendCounts() {
  const n = state.info.classes.length;
  const counts = new Array(n).fill(0);
  const p = state.overlay;
  if (p) for (const c of p.labels) if (c < n) counts[c]++;
  const total = p ? p.labels.length : 1;
  document.querySelectorAll("#legend li").forEach((li, c) => {
    li.querySelector(".pct").textContent = p ? `${(100 * counts[c] / total).toFixed(1)}%` : "";
    li.classList.toggle("absent", !!p && counts[c] === 0);
  });
}

function setAll(on) {
  state.enabled = state.enabled.map((_, c) => (c === 0 ? true : on));
  document.querySelectorAll("#legend input").forEach((cb, c) => { if (c > 0) cb.checked = on; });
  drawOverlay();
}

function showResolution() {
  const v = $("#resolution").value;
  $("#resolution-value").textContent = `${v} × ${v} px`;
}

async function requery() {
  if (!state.file || state.analyzing) return;   // a new photo in flight: handleFile requeries after it
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  clearError();
  setState("busy");
  const res = Number($("#resolution").value);
  const t0 = performance.now();
  let answer;
  try {
    answer = await call("/api/parse", { method: "POST", body: form(state.file, res), signal: controller.signal });
  } catch (e) {
    if (e.name === "AbortError") return;
    showError(e.title || "Error", e.message);
    return;
  }
  if (controller !== state.controller) return;
  renderOverlay(answer, performance.now() - t0, false);
  for (const c of state.info.cards) if (answer.stages[c.name]) renderCard(c, answer.stages[c.name]);
  setState("ready");
}

// --- the points on the photo (the "points" layer) ------------------------------------------------------

function renderPoints(st, image) {
  const svg = $("#points");
  svg.textContent = "";
  svg.setAttribute("viewBox", `0 0 ${image.width} ${image.height}`);
  if (!st || st.status !== "ok") return;
  for (const face of st.faces || [st.points]) {
    const xs = face.map((p) => p[0]);
    const r = Math.max(1.5, (Math.max(...xs) - Math.min(...xs)) / 90);   // scaled with the face
    for (const [x, y] of face) {
      const c = document.createElementNS("http://www.w3.org/2000/svg", "circle");
      c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", r);
      c.setAttribute("stroke-width", r / 3);
      svg.append(c);
    }
  }
}

// --- the cards ------------------------------------------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function buildCards(cards) {
  const points = cards.find((c) => c.card && c.layer === "points");
  $("#points-toggle").hidden = !points;
  if (points) $("#points-name").textContent = points.title;
  state.cards = {};
  $("#cards").replaceChildren(...cards.map((c) => {
    const art = el("article", "stage" + (c.wide ? " wide" : ""));
    art.id = `stage-${c.name}`;
    art.dataset.stage = c.name;
    const h = el("h2", "", c.title);
    h.append(" ", el("small", "", c.subtitle ? `${c.subtitle} · ${c.name}` : c.name));
    const body = el("div", "body");
    if (!c.card) body.append(statusBox({ status: "no_card", message: c.message }));
    art.append(h, el("div", "maps"), el("div", "images"), body, el("p", "source"));
    state.cards[c.name] = art;
    return art;
  }));
}

function figure(key, caption) {
  const fig = el("figure");
  fig.dataset.key = key;
  const cap = el("figcaption");
  cap.append(el("span", "", caption));
  return [fig, cap];
}

function renderCard(c, st) {
  const art = state.cards[c.name];
  if (!art || !st) return;
  const body = art.querySelector(".body"), maps = art.querySelector(".maps"), images = art.querySelector(".images");
  body.textContent = ""; maps.textContent = ""; images.textContent = "";
  art.querySelector(".source").textContent = "";
  art.dataset.status = st.status;
  if (st.status !== "ok") { body.append(statusBox(st)); return; }
  for (const m of st.maps || []) {
    const [fig, cap] = figure(m.key, m.caption);
    fig.dataset.map = m.key;
    if (m.data) {
      const canvas = el("canvas");
      paintMap(canvas, m.data, m.width, m.height, m.kind);
      fig.dataset.ready = "1";
      fig.append(canvas);
    } else {
      fig.append(el("p", "unavailable", m.missing || "not available"));
    }
    fig.append(cap);
    maps.append(fig);
  }
  for (const im of st.images || []) {
    const [fig, cap] = figure(im.key, im.caption);
    fig.dataset.image = im.key;
    const img = el("img");
    img.alt = im.caption;
    img.width = im.width; img.height = im.height;
    img.onload = () => { fig.dataset.ready = "1"; };
    img.src = `data:image/png;base64,${im.png}`;
    fig.append(img, cap);
    images.append(fig);
  }
  for (const line of st.lines || []) body.append(el("p", "hint", line));
  setSource(art.querySelector(".source"), st.source, st.model_ms);
}

function paintMap(canvas, b64, W, H, kind) {
  const labels = decodeLabels(b64);
  canvas.width = W; canvas.height = H;
  canvas.style.aspectRatio = `${W} / ${H}`;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(W, H);
  const d = img.data, pal = state.info.palette;
  for (let i = 0, j = 0; i < labels.length; i++, j += 4) {
    const c = labels[i];
    const col = kind === "mask" ? (c ? [255, 255, 255] : [0, 0, 0]) : (pal[c] || [255, 255, 255]);
    d[j] = col[0]; d[j + 1] = col[1]; d[j + 2] = col[2]; d[j + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

document.addEventListener("DOMContentLoaded", init);
