// empanada_nb Viewer: hand-written ES module for anywidget (no build step, no imports).
//
// Pixels arrive as binary buffers in custom messages ("data", "labels_update"); the browser keeps an
// LRU cache of slices and prefetches neighbours. Mouse moves, drags, zoom/pan and previews stay here;
// Python receives committed results (a pick, a stroke, a region, a fill) on mouse-up.

const AXES = ["xy", "xz", "yz"];
const AXIS_DIMS = { xy: [0, [1, 2]], xz: [1, [0, 2]], yz: [2, [0, 1]] };
const AXIS_NAMES = ["z", "y", "x"];
const TYPED = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, float32: Float32Array, float64: Float64Array };
const TOOLS = [
  ["pan", "Pan/zoom (V)", "✥"],
  ["pick", "Pick patch (B)", "▣"],
  ["rect", "Rectangle region (R)", "▭"],
  ["polygon", "Polygon region (G)", "⬠"],
  ["paint", "Paint (P)", "✎"],
  ["erase", "Erase (E)", "⌫"],
  ["fill", "Fill (F)", "▨"],
  ["picker", "Pick label under cursor (L)", "⊙"],
  ["select", "Select labels for proofreading (S)", "☝"],
];
const TOOL_KEYS = { v: "pan", b: "pick", r: "rect", g: "polygon", p: "paint", e: "erase", f: "fill", l: "picker", s: "select" };
const PREFETCH_INFLIGHT = 1;

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function u8view(b) {
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function typed(dtype, u8) {
  const C = TYPED[dtype];
  if (!C) throw new Error("unsupported dtype " + dtype);
  if (u8.byteOffset % C.BYTES_PER_ELEMENT) u8 = u8.slice();
  return new C(u8.buffer, u8.byteOffset, u8.byteLength / C.BYTES_PER_ELEMENT);
}

async function inflate(u8) {
  const stream = new Blob([u8]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// run-length decoding: uint32 run lengths, then the run values
function decodeRle(p, u8) {
  const n = p.nruns, C = TYPED[p.dtype];
  const lengths = typed("uint32", u8.subarray(0, 4 * n));
  const values = typed(p.dtype, u8.subarray(4 * n, 4 * n + n * C.BYTES_PER_ELEMENT));
  let total = 0;
  for (let i = 0; i < n; i++) total += lengths[i];
  const out = new C(total);
  for (let i = 0, pos = 0; i < n; i++) {
    const len = lengths[i], v = values[i];
    if (v !== 0) { if (len > 16) out.fill(v, pos, pos + len); else for (let k = pos; k < pos + len; k++) out[k] = v; }
    pos += len;
  }
  return out;
}

// colour of a label id: a hash of the id -> hue/saturation/lightness -> packed ABGR (little endian RGBA)
const colorCache = new Map();
function labelColor(id) {
  let c = colorCache.get(id);
  if (c !== undefined) return c;
  let x = (Math.imul((id >>> 0) ^ Math.floor(id / 4294967296), 0x9e3779b1) >>> 0);
  x ^= x >>> 15; x = Math.imul(x, 0x85ebca77) >>> 0; x ^= x >>> 13; x = Math.imul(x, 0xc2b2ae3d) >>> 0; x ^= x >>> 16;
  const hue = (x % 360) / 360, s = 0.6 + ((x >>> 9) % 35) / 100, l = 0.45 + ((x >>> 17) % 20) / 100;
  const q = l < 0.5 ? l * (1 + s) : l + s - l * s, p = 2 * l - q;
  const f = (t) => {
    t = (t + 1) % 1;
    const v = t < 1 / 6 ? p + (q - p) * 6 * t : t < 1 / 2 ? q : t < 2 / 3 ? p + (q - p) * (2 / 3 - t) * 6 : p;
    return Math.round(v * 255);
  };
  c = ((255 << 24) | (f(hue - 1 / 3) << 16) | (f(hue) << 8) | f(hue + 1 / 3)) >>> 0;
  if (colorCache.size > 100000) colorCache.clear();
  colorCache.set(id, c);
  return c;
}
function cssColor(id, alpha = 1) {
  const c = labelColor(id);
  return `rgba(${c & 255},${(c >>> 8) & 255},${(c >>> 16) & 255},${alpha})`;
}

function fmtValue(v) {
  return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
}

function patchStart(c, size, n) {
  const s = Math.min(Math.max(0, c - Math.floor(size / 2)), Math.max(0, n - size));
  return [s, Math.min(n, s + size)];
}
function clampCenter(v, size, n) {
  v = Math.min(Math.max(Math.floor(v), 0), n - 1);
  return n >= size ? patchStart(v, size, n)[0] + Math.floor(size / 2) : Math.floor(n / 2);
}

function throttle(fn, ms) {
  let last = 0, timer = null, args = null;
  const run = () => { last = performance.now(); timer = null; fn(...args); };
  const t = (...a) => {
    args = a;
    const wait = ms - (performance.now() - last);
    if (wait <= 0 && !timer) run();
    else if (!timer) timer = setTimeout(run, Math.max(0, wait));
  };
  t.flush = () => { if (timer) { clearTimeout(timer); run(); } };
  t.cancel = () => { if (timer) clearTimeout(timer); timer = null; };
  t.pending = () => timer !== null;
  return t;
}

class ViewerView {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.cache = new Map(); // key -> entry (Map order = LRU order)
    this.cacheBytes = 0;
    this.inflight = new Map(); // rid -> {key, t}
    this.inflightKeys = new Map(); // key -> {image: bool, layers: Set}
    this.rid = Math.floor(Math.random() * 1e9); // request ids unique across views of one widget
    this.view = { scale: 1, tx: 0, ty: 0 };
    this.fitted = null;
    this.pendingTiming = null;
    this.stats = { switches: [], hits: 0, misses: 0, rtts: [], renders: [] };
    this.rendered = { image: null, contrast: null, labels: new Map() };
    this.labelCanvases = new Map();
    this.pendingStrokes = [];
    this.stroke = null;
    this.polygon = null;
    this.drag = null;
    this.cursor = null;
    this.selection = [];
    this.lastDir = 1;
    this.axisIndex = {};
    this.msgChain = Promise.resolve();
    this.disposers = [];
    this.axis = model.get("axis");
    this.index = model.get("slice_index");
    this.contrast = model.get("contrast_limits").slice();
    this.syncSlice = throttle(() => {
      this.model.set("axis", this.axis);
      this.model.set("slice_index", this.index);
      this.model.save_changes();
    }, 150);
    this.build();
    this.bindModel();
    this.resize();
    this.goto(this.axis, this.index, null);
    const reg = (window.__enb = window.__enb || { views: [] });
    reg.views.push(this);
    this.send({ type: "ready" });
  }

  // ----------------------------------------------------------------------------------- DOM
  build() {
    const m = this.model;
    this.root = h("div", { class: "enb-viewer", tabindex: "0", "data-lm-suppress-shortcuts": "true", "data-jp-suppress-context-menu": "true" });
    // toolbar
    this.axisSel = h("select", { class: "enb-axis", title: "Viewing axis" }, ...AXES.map((a) => h("option", { value: a }, a)));
    this.axisSel.addEventListener("change", () => this.setAxis(this.axisSel.value));
    this.toolButtons = {};
    const tools = h("span", { class: "enb-tools" });
    for (const [name, title, icon] of TOOLS) {
      const b = h("button", { class: "enb-btn enb-tool", title, "data-tool": name }, icon);
      b.addEventListener("click", () => this.setTool(name));
      this.toolButtons[name] = b;
      tools.append(b);
    }
    this.brushInput = h("input", { type: "number", min: "1", max: "500", class: "enb-num", title: "Brush size ([ and ])" });
    this.brushInput.addEventListener("change", () => this.setTrait("brush_size", Math.max(1, parseInt(this.brushInput.value) || 1)));
    this.labelInput = h("input", { type: "number", min: "0", class: "enb-num enb-label-input", title: "Label id to paint" });
    this.labelInput.addEventListener("change", () => this.setTrait("current_label", Math.max(0, parseInt(this.labelInput.value) || 0)));
    this.labelSwatch = h("span", { class: "enb-swatch" });
    const newLabel = h("button", { class: "enb-btn", title: "New label id (M)" }, "new");
    newLabel.addEventListener("click", () => this.send({ type: "new_label" }));
    this.undoBtn = h("button", { class: "enb-btn", title: "Undo (Ctrl+Z)" }, "↶");
    this.undoBtn.addEventListener("click", () => this.send({ type: "undo" }));
    this.redoBtn = h("button", { class: "enb-btn", title: "Redo (Ctrl+Shift+Z)" }, "↷");
    this.redoBtn.addEventListener("click", () => this.send({ type: "redo" }));
    const fit = h("button", { class: "enb-btn", title: "Fit to view (0)" }, "⤢");
    fit.addEventListener("click", () => { this.fit(); this.requestDraw(); });
    this.loInput = h("input", { type: "range", class: "enb-contrast", title: "Contrast minimum", step: "any" });
    this.hiInput = h("input", { type: "range", class: "enb-contrast", title: "Contrast maximum", step: "any" });
    const onContrast = () => {
      let lo = parseFloat(this.loInput.value), hi = parseFloat(this.hiInput.value);
      if (hi <= lo) hi = lo + (this.rangeStep() || 1);
      this.setContrast([lo, hi], true);
    };
    this.loInput.addEventListener("input", onContrast);
    this.hiInput.addEventListener("input", onContrast);
    const auto = h("button", { class: "enb-btn", title: "Auto contrast from this slice (A)" }, "auto");
    this.contrastLabel = h("span", { class: "enb-contrast-label" });
    auto.addEventListener("click", () => this.autoContrast());
    this.toolbar = h("div", { class: "enb-toolbar" },
      this.axisSel, tools,
      h("span", { class: "enb-group" }, h("label", {}, "brush "), this.brushInput),
      h("span", { class: "enb-group" }, h("label", {}, "label "), this.labelSwatch, this.labelInput, newLabel),
      h("span", { class: "enb-group" }, this.undoBtn, this.redoBtn, fit),
      h("span", { class: "enb-group" }, h("label", {}, "contrast "), this.loInput, this.hiInput, this.contrastLabel, auto));
    // canvases
    this.canvas = h("canvas", { class: "enb-canvas" });
    this.overlay = h("canvas", { class: "enb-canvas enb-overlay" });
    this.loading = h("div", { class: "enb-loading" }, "loading…");
    this.wrap = h("div", { class: "enb-canvas-wrap" }, this.canvas, this.overlay, this.loading);
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.octx = this.overlay.getContext("2d");
    this.imgCanvas = document.createElement("canvas");
    this.imgCtx = this.imgCanvas.getContext("2d", { willReadFrequently: false });
    // slice bar
    this.slider = h("input", { type: "range", class: "enb-slider", min: "0", step: "1", title: "Slice (← → , . ; Shift = 10)" });
    this.slider.addEventListener("input", (e) => this.goto(this.axis, parseInt(this.slider.value), e));
    this.sliceLabel = h("span", { class: "enb-slice-label" });
    this.sliceBar = h("div", { class: "enb-slicebar" }, this.sliceLabel, this.slider);
    // side panel
    this.layersList = h("div", { class: "enb-list" });
    this.picksList = h("div", { class: "enb-list" });
    this.regionsList = h("div", { class: "enb-list" });
    this.patchInput = h("input", { type: "number", min: "8", step: "8", class: "enb-num", title: "Patch size" });
    this.patchInput.addEventListener("change", () => this.setTrait("patch_size", Math.max(1, parseInt(this.patchInput.value) || 256)));
    this.nRandom = h("input", { type: "number", min: "1", value: "8", class: "enb-num", title: "How many random patches" });
    const fill = h("button", { class: "enb-btn", title: "Add random patches inside the context regions" }, "random");
    fill.addEventListener("click", () => this.send({ type: "random_picks", n: parseInt(this.nRandom.value) || 1 }));
    const clear = h("button", { class: "enb-btn", title: "Delete all picks" }, "clear");
    clear.addEventListener("click", () => this.send({ type: "clear_picks" }));
    const newLayer = h("button", { class: "enb-btn", title: "Add an empty label layer" }, "+ layer");
    newLayer.addEventListener("click", () => this.send({ type: "new_layer" }));
    this.dirInput = h("input", { type: "text", class: "enb-text", placeholder: "dataset folder" });
    this.nameInput = h("input", { type: "text", class: "enb-text", placeholder: "name" });
    const saveBtn = h("button", { class: "enb-btn", title: "Write the picked patches (images + masks)" }, "save patches");
    saveBtn.addEventListener("click", () => this.send({ type: "save_patches", dataset_dir: this.dirInput.value, name: this.nameInput.value }));
    this.confine = h("input", { type: "checkbox", title: "Confine inference and metrics to the regions" });
    this.confine.addEventListener("change", () => this.setTrait("confine_to_regions", this.confine.checked));
    this.proofPanel = h("div", { class: "enb-proof" });
    this.side = h("div", { class: "enb-side" },
      h("div", { class: "enb-section" }, h("div", { class: "enb-head" }, "Layers ", newLayer), this.layersList),
      h("div", { class: "enb-section" },
        h("div", { class: "enb-head" }, "Patches"),
        h("div", { class: "enb-row" }, h("label", {}, "size "), this.patchInput, this.nRandom, fill, clear),
        this.picksList),
      h("div", { class: "enb-section" },
        h("div", { class: "enb-head" }, "Context regions"),
        h("div", { class: "enb-row" }, h("label", {}, this.confine, " confine inference to regions")),
        this.regionsList),
      this.proofPanel,
      h("div", { class: "enb-section" },
        h("div", { class: "enb-head" }, "Save"),
        h("div", { class: "enb-row" }, this.dirInput), h("div", { class: "enb-row" }, this.nameInput, saveBtn)));
    this.hover = h("span", { class: "enb-hover" });
    this.msg = h("span", { class: "enb-msg" });
    this.status = h("div", { class: "enb-status" }, this.hover, this.msg);
    this.main = h("div", { class: "enb-main" }, h("div", { class: "enb-left" }, this.wrap, this.sliceBar), this.side);
    this.root.append(this.toolbar, this.main, this.status);
    this.el.append(this.root);

    // events
    const ov = this.overlay;
    const on = (t, ev, fn, opt) => { t.addEventListener(ev, fn, opt); this.disposers.push(() => t.removeEventListener(ev, fn, opt)); };
    on(ov, "pointerdown", (e) => this.onDown(e));
    on(ov, "pointermove", (e) => this.onMove(e));
    on(ov, "pointerup", (e) => this.onUp(e));
    on(ov, "pointercancel", (e) => this.onUp(e));
    on(ov, "pointerleave", () => { this.cursor = null; this.drawOverlay(); this.hover.textContent = ""; });
    on(ov, "dblclick", (e) => { if (this.tool() === "polygon") { e.preventDefault(); this.finishPolygon(true); } });
    on(ov, "contextmenu", (e) => e.preventDefault());
    on(ov, "wheel", (e) => this.onWheel(e), { passive: false });
    on(this.root, "keydown", (e) => this.onKey(e));
    on(this.root, "keyup", (e) => { if (e.key === " ") this.spaceDown = false; e.stopPropagation(); });
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.wrap);
    this.disposers.push(() => this.ro.disconnect());
  }

  bindModel() {
    const m = this.model;
    const on = (ev, fn) => { m.on(ev, fn); this.disposers.push(() => m.off(ev, fn)); };
    on("msg:custom", (msg, buffers) => {
      if (msg.type === "data" && msg.rid === this.priorityRid) this.trace = { arrived: performance.now(), rid: msg.rid };
      this.msgChain = this.msgChain.then(() => this.onMsg(msg, buffers || [])).catch((err) => {
        console.error("empanada_nb viewer:", err);
        this.msg.textContent = "viewer error: " + err;
      });
    });
    on("change:slice_index", () => {
      const i = m.get("slice_index");
      if (i !== this.index && !this.syncPendingFor()) this.goto(m.get("axis"), i, null, true);
    });
    on("change:axis", () => { if (m.get("axis") !== this.axis) this.goto(m.get("axis"), m.get("slice_index"), null, true); });
    on("change:contrast_limits", () => {
      const c = m.get("contrast_limits");
      if (c[0] !== this.contrast[0] || c[1] !== this.contrast[1]) this.setContrast(c.slice(), false);
    });
    on("change:data_range", () => this.updateContrastInputs());
    on("change:layers", () => this.onLayers());
    on("change:active_layer", () => this.renderLayersList());
    on("change:tool", () => this.updateToolbar());
    on("change:brush_size", () => this.updateToolbar());
    on("change:current_label", () => this.updateToolbar());
    on("change:patch_size", () => { this.updateToolbar(); this.drawOverlay(); });
    on("change:can_undo", () => this.updateToolbar());
    on("change:can_redo", () => this.updateToolbar());
    on("change:picks", () => { this.renderPicks(); this.requestDraw(); });
    on("change:regions", () => { this.renderRegions(); this.requestDraw(); });
    on("change:message", () => { this.msg.textContent = m.get("message"); });
    on("change:height", () => this.resize());
    on("change:proofreading", () => this.renderProof());
    on("change:selection", () => { this.selection = m.get("selection").slice(); this.renderProof(); });
    on("change:confine_to_regions", () => { this.confine.checked = m.get("confine_to_regions"); });
    on("change:dataset_dir", () => { this.dirInput.value = m.get("dataset_dir"); });
    on("change:dataset_name", () => { this.nameInput.value = m.get("dataset_name"); });
    this.dirInput.value = m.get("dataset_dir");
    this.nameInput.value = m.get("dataset_name");
    this.confine.checked = m.get("confine_to_regions");
    this.msg.textContent = m.get("message");
    this.selection = (m.get("selection") || []).slice();
    this.updateToolbar();
    this.updateContrastInputs();
    this.onLayers();
    this.renderPicks();
    this.renderRegions();
    this.renderProof();
  }

  destroy() {
    for (const d of this.disposers) d();
    this.syncSlice.cancel();
    const reg = window.__enb;
    if (reg) reg.views = reg.views.filter((v) => v !== this);
    this.cache.clear();
    this.root.remove();
  }

  send(content, buffers) { this.model.send(content, undefined, buffers); }
  setTrait(name, value) { this.model.set(name, value); this.model.save_changes(); }
  tool() { return this.model.get("tool"); }
  shape3() { return this.model.get("shape"); }
  syncPendingFor() { return this.syncSlice.pending(); }

  layers() { return this.model.get("layers") || []; }
  activeLayer() {
    const uid = this.model.get("active_layer");
    return this.layers().find((l) => l.uid === uid) || null;
  }

  planeShape(axis = this.axis) {
    const s = this.shape3(), [, [r, c]] = AXIS_DIMS[axis];
    return [s[r], s[c]];
  }
  nSlices(axis = this.axis) { return this.shape3()[AXIS_DIMS[axis][0]]; }
  key(axis, index) { return axis + ":" + index; }

  // -------------------------------------------------------------------------- toolbar state
  updateToolbar() {
    const m = this.model, tool = m.get("tool");
    for (const [n, b] of Object.entries(this.toolButtons)) b.classList.toggle("enb-active", n === tool);
    this.brushInput.value = m.get("brush_size");
    this.labelInput.value = m.get("current_label");
    this.labelSwatch.style.background = m.get("current_label") ? cssColor(m.get("current_label")) : "transparent";
    this.patchInput.value = m.get("patch_size");
    this.undoBtn.disabled = !m.get("can_undo");
    this.redoBtn.disabled = !m.get("can_redo");
    this.overlay.dataset.tool = tool;
    const is2d = m.get("ndim") === 2;
    this.axisSel.style.display = is2d ? "none" : "";
    this.sliceBar.style.display = is2d ? "none" : "";
    this.axisSel.value = this.axis;
  }

  rangeStep() {
    const [a, b] = this.model.get("data_range");
    return this.model.get("dtype").startsWith("float") ? (b - a) / 1000 : 1;
  }
  updateContrastInputs() {
    const [a, b] = this.model.get("data_range");
    for (const inp of [this.loInput, this.hiInput]) {
      inp.min = a; inp.max = b; inp.step = this.rangeStep();
    }
    this.loInput.value = this.contrast[0];
    this.hiInput.value = this.contrast[1];
    this.contrastLabel.textContent = `${fmtValue(this.contrast[0])}–${fmtValue(this.contrast[1])}`;
  }
  setContrast(c, fromUser) {
    this.contrast = c;
    this.lut = null;
    this.loInput.value = c[0];
    this.hiInput.value = c[1];
    this.contrastLabel.textContent = `${fmtValue(c[0])}–${fmtValue(c[1])}`;
    this.requestDraw();
    if (fromUser) {
      if (!this.syncContrast) this.syncContrast = throttle(() => this.setTrait("contrast_limits", this.contrast.slice()), 200);
      this.syncContrast();
    }
  }
  autoContrast() {
    const e = this.cache.get(this.key(this.axis, this.index));
    if (!e || !e.image || e.image.left) return;
    const a = e.image.arr, n = a.length, step = Math.max(1, Math.floor(n / 262144));
    const vals = new Float64Array(Math.ceil(n / step));
    for (let i = 0, j = 0; i < n; i += step, j++) vals[j] = a[i];
    vals.sort();
    const q = (p) => vals[Math.min(vals.length - 1, Math.max(0, Math.round(p * (vals.length - 1))))];
    let lo = q(0.005), hi = q(0.995);
    if (hi <= lo) hi = lo + (this.rangeStep() || 1);
    this.setContrast([lo, hi], true);
  }

  setTool(name) {
    if (this.polygon && name !== "polygon") this.polygon = null;
    this.setTrait("tool", name);
    this.drawOverlay();
  }

  // --------------------------------------------------------------------------- navigation
  setAxis(axis) {
    if (axis === this.axis) return;
    this.axisIndex[this.axis] = this.index;
    const idx = this.axisIndex[axis] ?? Math.floor(this.nSlices(axis) / 2);
    this.goto(axis, idx, null);
  }

  step(delta, e) {
    this.lastDir = delta > 0 ? 1 : -1;
    this.goto(this.axis, this.index + delta, e);
  }

  goto(axis, index, e, fromModel = false) {
    const n = this.nSlices(axis);
    index = Math.max(0, Math.min(n - 1, index | 0));
    const axisChanged = axis !== this.axis;
    if (!axisChanged && index === this.index && this.fitted) { this.requestDraw(); return; }
    if (!axisChanged && index !== this.index) this.lastDir = index > this.index ? 1 : -1;
    this.axis = axis;
    this.index = index;
    if (axisChanged || !this.fitted) { this.polygon = null; this.fit(); }
    const key = this.key(axis, index);
    const t0 = e && e.timeStamp > 0 ? Math.min(e.timeStamp, performance.now()) : performance.now();
    const entry = this.cache.get(key);
    const hit = !!(entry && entry.image && !entry.image.left);
    if (e) { this.pendingTiming = { key, t0, hit }; hit ? this.stats.hits++ : this.stats.misses++; }
    this.slider.max = n - 1;
    this.slider.value = index;
    this.sliceLabel.textContent = `${AXIS_NAMES[AXIS_DIMS[axis][0]]} ${index} / ${n - 1}`;
    this.axisSel.value = axis;
    this.ensure(axis, index, true);
    this.prefetch();
    if (hit) this.drawNow();
    else this.requestDraw();
    if (!fromModel) this.syncSlice();
  }

  // ------------------------------------------------------------------------------- cache
  touch(key) {
    const e = this.cache.get(key);
    if (e) { this.cache.delete(key); this.cache.set(key, e); }
    return e;
  }
  entry(axis, index) {
    const key = this.key(axis, index);
    let e = this.touch(key);
    if (!e) {
      e = { axis, index, key, image: null, labels: new Map(), bytes: 0 };
      this.cache.set(key, e);
    }
    return e;
  }
  evict() {
    const budget = (this.model.get("cache_mb") || 512) * 1048576;
    const keep = this.key(this.axis, this.index);
    for (const [k, e] of this.cache) {
      if (this.cacheBytes <= budget) break;
      if (k === keep || this.inflightKeys.has(k)) continue;
      this.cacheBytes -= e.bytes;
      this.cache.delete(k);
    }
  }
  account(e, bytes) { e.bytes += bytes; this.cacheBytes += bytes; }

  layerWanted(l, axis, index) {
    if (!l.visible && l.uid !== this.model.get("active_layer")) return false;
    if (l.plane) return l.plane[0] === axis && l.plane[1] === index;
    return true;
  }

  // which parts of (axis, index) are missing or stale and not already requested
  missing(axis, index) {
    const key = this.key(axis, index), e = this.cache.get(key), fl = this.inflightKeys.get(key);
    const image = !(e && e.image) && !(fl && fl.image);
    const layers = [];
    for (const l of this.layers()) {
      if (!this.layerWanted(l, axis, index)) continue;
      const c = e && e.labels.get(l.uid);
      if (c && !c.left && c.version >= l.version) continue;
      if (fl && fl.layers.has(l.uid + ":" + l.version)) continue;
      layers.push(l);
    }
    return { image, layers };
  }

  ensure(axis, index, priority) {
    const { image, layers } = this.missing(axis, index);
    if (!image && !layers.length) return false;
    const busy = this.priorityRid != null && this.inflight.has(this.priorityRid);
    if (priority && busy) {
      // one request for the shown slice at a time: when the slider races ahead, only the latest
      // slice is asked for once the one in flight arrives (no backlog in the kernel)
      this.wantCurrent = true;
      return true;
    }
    if (!priority && (busy || this.inflight.size >= PREFETCH_INFLIGHT)) return true;
    const rid = ++this.rid, key = this.key(axis, index);
    if (priority) this.priorityRid = rid;
    this.inflight.set(rid, { key, t: performance.now() });
    let fl = this.inflightKeys.get(key);
    if (!fl) { fl = { image: false, layers: new Set(), n: 0 }; this.inflightKeys.set(key, fl); }
    fl.n++;
    if (image) fl.image = true;
    for (const l of layers) fl.layers.add(l.uid + ":" + l.version);
    this.send({ type: "get", rid, axis, index, image, layers: layers.map((l) => l.uid) });
    return true;
  }

  prefetch() {
    const n = this.nSlices(this.axis), P = this.model.get("prefetch") ?? 4, d = this.lastDir;
    const order = [];
    for (let k = 1; k <= P; k++) order.push(this.index + d * k);
    for (let k = 1; k <= Math.ceil(P / 2); k++) order.push(this.index - d * k);
    for (const i of order) {
      if (i < 0 || i >= n) continue;
      if (this.inflight.size >= PREFETCH_INFLIGHT) break;
      this.ensure(this.axis, i, false);
    }
  }

  expireInflight() {
    const now = performance.now();
    for (const [rid, r] of this.inflight) {
      if (now - r.t > 15000) { this.inflight.delete(rid); this.inflightKeys.delete(r.key); }
    }
  }

  // ---------------------------------------------------------------------------- messages
  async onMsg(msg, buffers) {
    if (msg.type === "data") await this.onData(msg, buffers);
    else if (msg.type === "labels_update") await this.onLabelsUpdate(msg, buffers);
    else if (msg.type === "invalidate") {
      if (msg.image) { this.cache.clear(); this.cacheBytes = 0; this.rendered.image = null; }
      this.ensure(this.axis, this.index, true);
      this.requestDraw();
    } else if (msg.type === "goto") {
      this.goto(msg.axis, msg.index, null);
      if (msg.center) this.centerOn(msg.center[0], msg.center[1]);
    }
  }

  async decodePart(p, buf) {
    let u8 = u8view(buf);
    const enc = p.encoding || "raw";
    if (enc === "rle") return decodeRle(p, u8);
    if (enc === "zlib") u8 = await inflate(u8);
    return typed(p.dtype, u8);
  }

  async onData(msg, buffers) {
    const e = this.entry(msg.axis, msg.index);
    let bi = 0;
    for (const p of msg.parts) {
      const buf = p.empty ? null : buffers[bi++];
      if (p.kind === "image") {
        if (!e.image || !e.image.left) {
          if (e.image && e.image.arr) this.account(e, -e.image.arr.byteLength);
          e.image = { dtype: p.dtype, shape: p.shape, arr: null, left: p.nchunks };
        }
        const arr = await this.decodePart(p, buf);
        if (p.nchunks === 1) e.image.arr = arr;
        else {
          if (!e.image.arr) e.image.arr = new TYPED[p.dtype](p.shape[0] * p.shape[1]);
          e.image.arr.set(arr, p.row0 * p.shape[1]);
        }
        e.image.left -= 1;
        if (!e.image.left) this.account(e, e.image.arr.byteLength);
      } else if (p.kind === "labels") {
        let c = e.labels.get(p.layer);
        if (!c || c.version !== p.version || !c.left) {
          if (c && c.arr && !c.left) this.account(e, -c.arr.byteLength);
          c = { version: p.version, dtype: p.dtype, shape: p.shape, arr: null, left: p.nchunks, empty: !!p.empty, canvasStamp: Math.random() };
          e.labels.set(p.layer, c);
        }
        if (p.empty) { c.arr = null; c.left = 0; continue; }
        const arr = await this.decodePart(p, buf);
        if (p.nchunks === 1) c.arr = arr;
        else {
          if (!c.arr) c.arr = new TYPED[p.dtype](p.shape[0] * p.shape[1]);
          c.arr.set(arr, p.row0 * p.shape[1]);
        }
        c.left -= 1;
        if (!c.left) { this.account(e, c.arr.byteLength); c.stamp = Math.random(); }
      }
    }
    if (msg.last) {
      const r = this.inflight.get(msg.rid);
      if (r) {
        this.stats.rtts.push(performance.now() - r.t);
        if (this.stats.rtts.length > 1000) this.stats.rtts.shift();
        this.inflight.delete(msg.rid);
        const fl = this.inflightKeys.get(r.key);
        if (fl && --fl.n <= 0) this.inflightKeys.delete(r.key);
      }
    }
    this.evict();
    if (this.trace && this.trace.rid === msg.rid) this.trace.decoded = performance.now();
    if (msg.axis === this.axis && msg.index === this.index) this.drawNow();
    if (msg.last && (this.wantCurrent || (msg.axis === this.axis && msg.index === this.index))) {
      this.wantCurrent = false;
      this.ensure(this.axis, this.index, true);
    }
    this.expireInflight();
    this.prefetch();
  }

  async onLabelsUpdate(msg, buffers) {
    const uid = msg.layer, v = msg.version;
    if (msg.noop || msg.stale) {
      if (msg.stroke != null) this.pendingStrokes = this.pendingStrokes.filter((s) => s.id !== msg.stroke);
      if (msg.stale) for (const e of this.cache.values()) { const c = e.labels.get(uid); if (c) c.version = -1; }
      this.ensure(this.axis, this.index, true);
      this.requestDraw();
      this.drawOverlay();
      return;
    }
    // slices of the same axis that are not the edited one are unchanged by a slice edit
    for (const e of this.cache.values()) {
      const c = e.labels.get(uid);
      if (!c || c.left) continue;
      if (msg.scope === "slice" && e.axis === msg.axis && e.index !== msg.index && c.version === v - 1) c.version = v;
    }
    const e = this.entry(msg.axis, msg.index);
    const c = e.labels.get(uid);
    if (msg.full) {
      if (c && c.arr && !c.left) this.account(e, -c.arr.byteLength);
      let arr = null;
      if (!msg.empty) arr = await this.decodePart(msg, buffers[0]);
      e.labels.set(uid, { version: v, dtype: msg.dtype, shape: msg.shape, arr, left: 0, empty: !!msg.empty, stamp: Math.random() });
      if (arr) this.account(e, arr.byteLength);
    } else if (c && !c.left && c.version === v - 1) {
      const patch = await this.decodePart(msg, buffers[0]);
      const [H, W] = c.shape;
      let arr = c.arr;
      const C = TYPED[msg.dtype];
      if (!arr || C.BYTES_PER_ELEMENT > arr.BYTES_PER_ELEMENT) {
        const grown = new C(H * W);
        if (arr) { grown.set(arr); this.account(e, -arr.byteLength); }
        this.account(e, grown.byteLength);
        arr = grown;
        c.dtype = msg.dtype;
      }
      const [r0, c0, hh, ww] = [msg.r0, msg.c0, msg.h, msg.w];
      for (let r = 0; r < hh; r++) arr.set(patch.subarray(r * ww, (r + 1) * ww), (r0 + r) * W + c0);
      c.arr = arr;
      c.empty = false;
      c.version = v;
      c.stamp = Math.random();
    } else if (c) {
      c.version = -1; // stale: re-request when shown
    }
    // drop the stroke previews that this update answers
    if (msg.stroke != null) this.pendingStrokes = this.pendingStrokes.filter((s) => s.id !== msg.stroke);
    if (msg.axis === this.axis && msg.index === this.index) this.ensure(this.axis, this.index, true);
    this.requestDraw();
    this.drawOverlay();
  }

  // ----------------------------------------------------------------------------- drawing
  resize() {
    const dpr = window.devicePixelRatio || 1;
    const H = this.model.get("height") || 560;
    this.wrap.style.height = H + "px";
    const w = Math.max(1, Math.round(this.wrap.clientWidth * dpr)), hh = Math.max(1, Math.round(H * dpr));
    if (this.canvas.width !== w || this.canvas.height !== hh) {
      const had = this.fitted && this.canvas.width > 1;
      for (const c of [this.canvas, this.overlay]) { c.width = w; c.height = hh; }
      if (!had) this.fit();
      this.requestDraw();
      this.drawOverlay();
    }
  }

  fit() {
    const [ph, pw] = this.planeShape();
    const W = this.canvas.width, H = this.canvas.height;
    const s = Math.min(W / pw, H / ph);
    this.view = { scale: s, tx: (W - pw * s) / 2, ty: (H - ph * s) / 2 };
    this.fitted = W > 1;
  }

  centerOn(row, col) {
    const W = this.canvas.width, H = this.canvas.height, s = this.view.scale;
    this.view.tx = W / 2 - (col + 0.5) * s;
    this.view.ty = H / 2 - (row + 0.5) * s;
    this.requestDraw();
  }

  requestDraw() {
    if (this.drawQueued) return;
    this.drawQueued = requestAnimationFrame(() => { this.drawQueued = 0; this.draw(); });
  }

  // draw at once (a slice that just became available), instead of at the next animation frame
  drawNow() {
    if (this.drawQueued) { cancelAnimationFrame(this.drawQueued); this.drawQueued = 0; }
    this.draw();
  }

  buildLut(dtype) {
    const [lo, hi] = this.contrast, scale = 255 / Math.max(1e-12, hi - lo);
    const n = dtype === "uint8" ? 256 : 65536;
    const lut = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const v = Math.max(0, Math.min(255, Math.round((i - lo) * scale)));
      lut[i] = (0xff000000 | (v << 16) | (v << 8) | v) >>> 0;
    }
    this.lut = { dtype, lut, contrast: this.contrast };
  }

  renderImage(e) {
    const img = e.image, [hh, ww] = img.shape;
    if (this.imgCanvas.width !== ww || this.imgCanvas.height !== hh) {
      this.imgCanvas.width = ww; this.imgCanvas.height = hh; this.imageData = null;
    }
    if (!this.imageData || this.imageData.width !== ww || this.imageData.height !== hh) this.imageData = this.imgCtx.createImageData(ww, hh);
    const out = new Uint32Array(this.imageData.data.buffer), a = img.arr, n = a.length;
    if (img.dtype === "uint8" || img.dtype === "uint16") {
      if (!this.lut || this.lut.dtype !== img.dtype || this.lut.contrast !== this.contrast) this.buildLut(img.dtype);
      const lut = this.lut.lut;
      for (let i = 0; i < n; i++) out[i] = lut[a[i]];
    } else {
      const [lo, hi] = this.contrast, scale = 255 / Math.max(1e-12, hi - lo);
      for (let i = 0; i < n; i++) {
        let v = (a[i] - lo) * scale;
        v = v < 0 ? 0 : v > 255 ? 255 : v | 0;
        out[i] = (0xff000000 | (v << 16) | (v << 8) | v) >>> 0;
      }
    }
    this.imgCtx.putImageData(this.imageData, 0, 0);
    this.rendered.image = e.image;
    this.rendered.contrast = this.contrast;
  }

  renderLabels(uid, c) {
    let lc = this.labelCanvases.get(uid);
    const [hh, ww] = c.shape;
    if (!lc) {
      const cv = document.createElement("canvas");
      lc = { canvas: cv, ctx: cv.getContext("2d"), data: null, stamp: null };
      this.labelCanvases.set(uid, lc);
    }
    if (lc.canvas.width !== ww || lc.canvas.height !== hh) { lc.canvas.width = ww; lc.canvas.height = hh; lc.data = null; }
    if (!lc.data) lc.data = lc.ctx.createImageData(ww, hh);
    const out = new Uint32Array(lc.data.data.buffer);
    const a = c.arr;
    if (!a) out.fill(0);
    else {
      let last = 0, lastC = 0;
      for (let i = 0, n = a.length; i < n; i++) {
        const id = a[i];
        if (id === 0) out[i] = 0;
        else if (id === last) out[i] = lastC;
        else { last = id; lastC = labelColor(id); out[i] = lastC; }
      }
    }
    lc.ctx.putImageData(lc.data, 0, 0);
    lc.stamp = c.stamp;
    lc.key = c;
    return lc;
  }

  draw() {
    const t0 = performance.now();
    const e = this.cache.get(this.key(this.axis, this.index));
    const ctx = this.ctx, W = this.canvas.width, H = this.canvas.height;
    const ready = e && e.image && !e.image.left;
    this.loading.style.display = ready ? "none" : "";
    if (!ready && !this.rendered.image) { ctx.fillStyle = "#111"; ctx.fillRect(0, 0, W, H); return; }
    if (ready && (this.rendered.image !== e.image || this.rendered.contrast !== this.contrast)) this.renderImage(e);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, W, H);
    const { scale, tx, ty } = this.view;
    ctx.imageSmoothingEnabled = scale < 1;
    ctx.setTransform(scale, 0, 0, scale, tx, ty);
    ctx.drawImage(this.imgCanvas, 0, 0);
    if (ready) {
      for (const l of this.layers()) {
        if (!l.visible || l.opacity <= 0) continue;
        if (l.plane && (l.plane[0] !== this.axis || l.plane[1] !== this.index)) continue;
        const c = e.labels.get(l.uid);
        if (!c || c.left || c.empty || !c.arr) continue;
        let lc = this.labelCanvases.get(l.uid);
        if (!lc || lc.key !== c || lc.stamp !== c.stamp) lc = this.renderLabels(l.uid, c);
        ctx.imageSmoothingEnabled = false;
        ctx.globalAlpha = l.opacity;
        ctx.drawImage(lc.canvas, 0, 0);
        ctx.globalAlpha = 1;
      }
    }
    this.drawShapes(ctx);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.stats.renders.push(performance.now() - t0);
    if (this.stats.renders.length > 1000) this.stats.renders.shift();
    if (ready && this.pendingTiming && this.pendingTiming.key === e.key) {
      const now = performance.now(), dt = now - this.pendingTiming.t0, tr = this.trace;
      const sw = { ms: dt, hit: this.pendingTiming.hit, key: e.key };
      if (!sw.hit && tr && tr.decoded) Object.assign(sw, { wait: tr.arrived - this.pendingTiming.t0, decode: tr.decoded - tr.arrived, paint: now - tr.decoded });
      this.stats.switches.push(sw);
      if (this.stats.switches.length > 5000) this.stats.switches.shift();
      this.pendingTiming = null;
    }
    this.root.dataset.shown = ready ? e.key : "";
  }

  // picks and regions on the current slice, in image coordinates
  drawShapes(ctx) {
    const lw = 1.5 / this.view.scale;
    const shape3 = this.shape3();
    const [, [rd, cd]] = AXIS_DIMS[this.axis], fixed = AXIS_DIMS[this.axis][0];
    ctx.lineWidth = lw;
    ctx.font = `${12 / this.view.scale}px sans-serif`;
    const picks = this.model.get("picks") || [];
    picks.forEach((p, i) => {
      if (p.axis !== this.axis) return;
      const c = [p.z, p.y, p.x];
      if (c[fixed] !== this.index) return;
      const [r0, r1] = patchStart(c[rd], p.size, shape3[rd]), [c0, c1] = patchStart(c[cd], p.size, shape3[cd]);
      ctx.strokeStyle = "rgba(255,220,0,0.95)";
      ctx.lineWidth = lw;
      ctx.strokeRect(c0, r0, c1 - c0, r1 - r0);
      this.label(ctx, String(i + 1), c0 + 3 * lw, r0 + 13 / this.view.scale, "rgba(255,220,0,1)");
    });
    const regions = this.model.get("regions") || [];
    for (const g of regions) {
      if (g.axis !== this.axis || (!g.all_slices && g.slice !== this.index)) continue;
      ctx.strokeStyle = "rgba(0,230,255,0.95)";
      ctx.fillStyle = "rgba(0,230,255,0.12)";
      ctx.lineWidth = lw;
      this.shapePath(ctx, g.shape, g.points);
      ctx.fill();
      ctx.stroke();
      this.label(ctx, g.name, Math.min(...g.points.map((p) => p[1])) + 3 * lw,
        Math.min(...g.points.map((p) => p[0])) + 13 / this.view.scale, "rgba(0,230,255,1)");
    }
  }

  // text with a dark outline, 12 CSS px whatever the zoom
  label(ctx, text, x, y, color) {
    const s = this.view.scale;
    ctx.font = `600 ${12 / s}px sans-serif`;
    ctx.lineWidth = 3 / s;
    ctx.strokeStyle = "rgba(0,0,0,0.8)";
    ctx.strokeText(text, x, y);
    ctx.fillStyle = color;
    ctx.fillText(text, x, y);
  }

  shapePath(ctx, kind, pts) {
    ctx.beginPath();
    if (kind === "rectangle") {
      const [a, b] = pts;
      ctx.rect(Math.min(a[1], b[1]), Math.min(a[0], b[0]), Math.abs(b[1] - a[1]), Math.abs(b[0] - a[0]));
    } else {
      pts.forEach((p, i) => (i ? ctx.lineTo(p[1], p[0]) : ctx.moveTo(p[1], p[0])));
      ctx.closePath();
    }
  }

  drawOverlay() {
    if (this.overlayQueued) return;
    this.overlayQueued = true;
    requestAnimationFrame(() => { this.overlayQueued = false; this._drawOverlay(); });
  }

  _drawOverlay() {
    const ctx = this.octx, W = this.overlay.width, H = this.overlay.height;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const { scale, tx, ty } = this.view;
    ctx.setTransform(scale, 0, 0, scale, tx, ty);
    const lw = 1.5 / scale, tool = this.tool();
    ctx.lineWidth = lw;
    const strokes = this.pendingStrokes.filter((s) => s.axis === this.axis && s.index === this.index);
    if (this.stroke) strokes.push(this.stroke);
    for (const s of strokes) {
      ctx.lineCap = "round"; ctx.lineJoin = "round";
      ctx.lineWidth = s.size;
      ctx.strokeStyle = s.erase ? "rgba(0,0,0,0.55)" : cssColor(s.label, 0.6);
      ctx.beginPath();
      s.points.forEach((p, i) => (i ? ctx.lineTo(p[1], p[0]) : ctx.moveTo(p[1], p[0])));
      if (s.points.length === 1) ctx.lineTo(s.points[0][1] + 0.001, s.points[0][0]);
      ctx.stroke();
    }
    ctx.lineWidth = lw;
    const cur = this.cursor;
    if (this.drag && this.drag.mode === "rect" && cur) {
      ctx.strokeStyle = "rgba(0,230,255,0.95)";
      this.shapePath(ctx, "rectangle", [this.drag.start, [cur.row, cur.col]]);
      ctx.stroke();
    }
    if (this.polygon && this.polygon.axis === this.axis && this.polygon.index === this.index) {
      const pts = this.polygon.points.slice();
      if (cur) pts.push([cur.row, cur.col]);
      ctx.strokeStyle = "rgba(0,230,255,0.95)";
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo(p[1], p[0]) : ctx.moveTo(p[1], p[0])));
      ctx.stroke();
      const p0 = this.polygon.points[0];
      ctx.strokeRect(p0[1] - 4 * lw, p0[0] - 4 * lw, 8 * lw, 8 * lw);
    }
    if (cur && !this.drag) {
      if (tool === "pick") {
        const size = this.model.get("patch_size"), [ph, pw] = this.planeShape();
        const rc = clampCenter(cur.row, size, ph), cc = clampCenter(cur.col, size, pw);
        const [r0, r1] = patchStart(rc, size, ph), [c0, c1] = patchStart(cc, size, pw);
        ctx.strokeStyle = "rgba(255,220,0,0.8)";
        ctx.setLineDash([6 * lw, 4 * lw]);
        ctx.strokeRect(c0, r0, c1 - c0, r1 - r0);
        ctx.setLineDash([]);
      } else if (tool === "paint" || tool === "erase") {
        const r = Math.max(0.5, this.model.get("brush_size") / 2);
        ctx.strokeStyle = "rgba(255,255,255,0.9)";
        ctx.beginPath();
        ctx.arc(cur.col, cur.row, r, 0, 2 * Math.PI);
        ctx.stroke();
      }
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  // ------------------------------------------------------------------------------- mouse
  toImage(e) {
    const rect = this.overlay.getBoundingClientRect();
    const px = (e.clientX - rect.left) * (this.overlay.width / this.overlay.clientWidth);
    const py = (e.clientY - rect.top) * (this.overlay.height / this.overlay.clientHeight);
    const { scale, tx, ty } = this.view;
    return { col: (px - tx) / scale, row: (py - ty) / scale, px, py };
  }
  inside(p) {
    const [ph, pw] = this.planeShape();
    return p.row >= 0 && p.col >= 0 && p.row < ph && p.col < pw;
  }
  round2(v) { return Math.round(v * 100) / 100; }

  onDown(e) {
    this.root.focus({ preventScroll: true });
    const p = this.toImage(e);
    this.cursor = p;
    this.overlay.setPointerCapture(e.pointerId);
    const tool = this.tool();
    const panning = e.button === 1 || e.button === 2 || this.spaceDown || (e.button === 0 && tool === "pan");
    if (panning) {
      this.drag = { mode: "pan", x: p.px, y: p.py, tx: this.view.tx, ty: this.view.ty };
      return;
    }
    if (e.button !== 0) return;
    e.preventDefault();
    if (tool === "paint" || tool === "erase") {
      const l = this.activeLayer();
      if (l && !l.editable) { this.msg.textContent = `layer ${l.name} is not editable`; return; }
      this.stroke = {
        id: ++this.rid, axis: this.axis, index: this.index, erase: tool === "erase", size: this.model.get("brush_size"),
        label: this.model.get("current_label"), points: [[this.round2(p.row), this.round2(p.col)]],
      };
      this.drag = { mode: "stroke" };
      this.drawOverlay();
    } else if (tool === "rect") {
      this.drag = { mode: "rect", start: [this.round2(p.row), this.round2(p.col)] };
    } else {
      this.drag = { mode: "click", x: p.px, y: p.py };
    }
  }

  onMove(e) {
    const p = this.toImage(e);
    this.cursor = p;
    const d = this.drag;
    if (d && d.mode === "pan") {
      this.view.tx = d.tx + (p.px - d.x);
      this.view.ty = d.ty + (p.py - d.y);
      this.requestDraw();
    } else if (d && d.mode === "stroke" && this.stroke) {
      const pts = this.stroke.points, last = pts[pts.length - 1];
      const evs = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const ev of evs.length ? evs : [e]) {
        const q = this.toImage(ev);
        if (Math.hypot(q.row - last[0], q.col - last[1]) >= 0.5) pts.push([this.round2(q.row), this.round2(q.col)]);
      }
    }
    this.drawOverlay();
    this.updateHover(p);
  }

  onUp(e) {
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    const p = this.toImage(e);
    if (d.mode === "stroke" && this.stroke) {
      const s = this.stroke;
      this.stroke = null;
      const l = this.activeLayer();
      this.pendingStrokes.push(s);
      setTimeout(() => { this.pendingStrokes = this.pendingStrokes.filter((x) => x !== s); this.drawOverlay(); }, 5000);
      this.send({ type: "stroke", stroke: s.id, layer: l ? l.uid : null, axis: s.axis, index: s.index, points: s.points,
        size: s.size, label: s.label, erase: s.erase });
      this.drawOverlay();
    } else if (d.mode === "rect") {
      const a = d.start, b = [this.round2(p.row), this.round2(p.col)];
      if (Math.abs(a[0] - b[0]) * this.view.scale > 3 && Math.abs(a[1] - b[1]) * this.view.scale > 3) {
        this.send({ type: "region", shape: "rectangle", axis: this.axis, index: this.index, points: [a, b] });
      }
      this.drawOverlay();
    } else if (d.mode === "click") {
      if (Math.hypot(p.px - d.x, p.py - d.y) > 5) return;
      this.onClick(p, e);
    }
  }

  onClick(p, e) {
    const tool = this.tool();
    if (!this.inside(p) && tool !== "polygon") return;
    const row = this.round2(p.row), col = this.round2(p.col);
    const l = this.activeLayer();
    if (tool === "pick") {
      this.send({ type: "pick", axis: this.axis, index: this.index, row, col });
    } else if (tool === "fill") {
      this.send({ type: "fill", layer: l ? l.uid : null, axis: this.axis, index: this.index, row: Math.floor(p.row), col: Math.floor(p.col), label: this.model.get("current_label") });
    } else if (tool === "picker") {
      const id = l ? this.labelAt(l.uid, p) : null;
      if (id != null) this.setTrait("current_label", id);
    } else if (tool === "select") {
      const id = l ? this.labelAt(l.uid, p) : null;
      if (id) {
        const sel = this.selection.filter((s) => s.id !== id);
        if (sel.length === this.selection.length) sel.push({ id, axis: this.axis, index: this.index, row: Math.floor(p.row), col: Math.floor(p.col) });
        this.selection = sel;
        this.setTrait("selection", sel);
        this.renderProof();
      }
    } else if (tool === "polygon") {
      if (!this.inside(p) && !this.polygon) return;
      if (!this.polygon || this.polygon.axis !== this.axis || this.polygon.index !== this.index) {
        this.polygon = { axis: this.axis, index: this.index, points: [] };
      }
      const pts = this.polygon.points;
      if (pts.length >= 3) {
        const p0 = pts[0];
        if (Math.hypot(p0[0] - row, p0[1] - col) * this.view.scale < 8) { this.finishPolygon(false); return; }
      }
      pts.push([row, col]);
      this.drawOverlay();
    }
  }

  finishPolygon(dbl) {
    const poly = this.polygon;
    if (!poly) return;
    let pts = poly.points;
    if (dbl && pts.length >= 2) {
      const a = pts[pts.length - 1], b = pts[pts.length - 2];
      if (Math.hypot(a[0] - b[0], a[1] - b[1]) * this.view.scale < 4) pts = pts.slice(0, -1);
    }
    this.polygon = null;
    if (pts.length >= 3) this.send({ type: "region", shape: "polygon", axis: poly.axis, index: poly.index, points: pts });
    this.drawOverlay();
  }

  labelAt(uid, p) {
    const e = this.cache.get(this.key(this.axis, this.index));
    const c = e && e.labels.get(uid);
    if (!c || c.left) return null;
    if (!c.arr) return 0;
    const r = Math.floor(p.row), col = Math.floor(p.col), [hh, ww] = c.shape;
    if (r < 0 || col < 0 || r >= hh || col >= ww) return null;
    return c.arr[r * ww + col];
  }

  updateHover(p) {
    if (this.hoverQueued) { this.hoverP = p; return; }
    this.hoverP = p;
    this.hoverQueued = true;
    requestAnimationFrame(() => {
      this.hoverQueued = false;
      const q = this.hoverP;
      if (!q || !this.inside(q)) { this.hover.textContent = ""; return; }
      const r = Math.floor(q.row), c = Math.floor(q.col);
      const fixed = AXIS_DIMS[this.axis][0], [, [rd, cd]] = AXIS_DIMS[this.axis];
      const pos = [0, 0, 0]; pos[fixed] = this.index; pos[rd] = r; pos[cd] = c;
      let txt = this.model.get("ndim") === 2 ? `y ${pos[1]}  x ${pos[2]}` : `z ${pos[0]}  y ${pos[1]}  x ${pos[2]}`;
      const e = this.cache.get(this.key(this.axis, this.index));
      if (e && e.image && !e.image.left) {
        const v = e.image.arr[r * e.image.shape[1] + c];
        txt += `  value ${Number.isInteger(v) ? v : v.toPrecision(4)}`;
      }
      for (const l of this.layers()) {
        const id = this.labelAt(l.uid, q);
        if (id != null) txt += `  ${l.name}: ${id}`;
      }
      this.hover.textContent = txt;
      this.hover.dataset.label = String(this.activeLayer() ? this.labelAt(this.activeLayer().uid, q) ?? "" : "");
    });
  }

  onWheel(e) {
    e.preventDefault();
    if (e.shiftKey || e.altKey) {
      const d = e.deltaY || e.deltaX;
      if (d) this.step(d > 0 ? 1 : -1, e);
      return;
    }
    const p = this.toImage(e);
    const f = Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015));
    const s = Math.min(64, Math.max(0.01, this.view.scale * f));
    const k = s / this.view.scale;
    this.view.tx = p.px - (p.px - this.view.tx) * k;
    this.view.ty = p.py - (p.py - this.view.ty) * k;
    this.view.scale = s;
    this.requestDraw();
    this.drawOverlay();
  }

  onKey(e) {
    const t = e.target;
    const typing = t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA") && t.type !== "range" && t.type !== "checkbox";
    e.stopPropagation(); // keep notebook shortcuts (a, b, d d, ...) away while the viewer has focus
    if (typing) return;
    const k = e.key, ctrl = e.ctrlKey || e.metaKey;
    let handled = true;
    if (ctrl && (k === "z" || k === "Z")) this.send({ type: e.shiftKey ? "redo" : "undo" });
    else if (ctrl && (k === "y" || k === "Y")) this.send({ type: "redo" });
    else if (ctrl) handled = false;
    else if (k === "ArrowRight" || k === "." || k === "ArrowUp") this.step(e.shiftKey ? 10 : 1, e);
    else if (k === "ArrowLeft" || k === "," || k === "ArrowDown") this.step(e.shiftKey ? -10 : -1, e);
    else if (k === "PageUp") this.step(10, e);
    else if (k === "PageDown") this.step(-10, e);
    else if (k === "Home") this.goto(this.axis, 0, e);
    else if (k === "End") this.goto(this.axis, this.nSlices() - 1, e);
    else if (k === " ") this.spaceDown = true;
    else if (k === "Escape") { this.polygon = null; this.stroke = null; this.drag = null; this.drawOverlay(); }
    else if (k === "Enter") this.finishPolygon(false);
    else if (k === "[") this.setTrait("brush_size", Math.max(1, this.model.get("brush_size") - (e.shiftKey ? 10 : 1)));
    else if (k === "]") this.setTrait("brush_size", this.model.get("brush_size") + (e.shiftKey ? 10 : 1));
    else if (k === "m" || k === "M") this.send({ type: "new_label" });
    else if (k === "a" || k === "A") this.autoContrast();
    else if (k === "0") { this.fit(); this.requestDraw(); this.drawOverlay(); }
    else if (k === "h" || k === "H") {
      const l = this.activeLayer();
      if (l) this.send({ type: "layer", layer: l.uid, visible: !l.visible });
    } else if (TOOL_KEYS[k.toLowerCase()] && !e.altKey) this.setTool(TOOL_KEYS[k.toLowerCase()]);
    else handled = false;
    if (handled) e.preventDefault();
  }

  // ------------------------------------------------------------------------ side panels
  onLayers() {
    // a layer whose version moved on: its cached slices are stale (kept for display until refreshed)
    this.renderLayersList();
    for (const uid of [...this.labelCanvases.keys()]) {
      if (!this.layers().some((l) => l.uid === uid)) this.labelCanvases.delete(uid);
    }
    this.ensure(this.axis, this.index, true);
    this.requestDraw();
  }

  renderLayersList() {
    const active = this.model.get("active_layer");
    this.layersList.replaceChildren(...this.layers().map((l) => {
      const radio = h("input", { type: "radio", name: "enb-active-" + this.model.model_id, title: "Edit this layer", checked: l.uid === active });
      radio.addEventListener("change", () => this.setTrait("active_layer", l.uid));
      const vis = h("input", { type: "checkbox", title: "Show/hide (H)", checked: l.visible });
      vis.addEventListener("change", () => this.send({ type: "layer", layer: l.uid, visible: vis.checked }));
      const op = h("input", { type: "range", min: "0", max: "1", step: "0.05", value: String(l.opacity), class: "enb-opacity", title: "Opacity" });
      op.addEventListener("input", () => { l.opacity = parseFloat(op.value); this.requestDraw(); });
      op.addEventListener("change", () => this.send({ type: "layer", layer: l.uid, opacity: parseFloat(op.value) }));
      return h("div", { class: "enb-item" + (l.uid === active ? " enb-item-active" : "") }, radio, vis,
        h("span", { class: "enb-name", title: l.name }, l.name + (l.plane ? ` (${l.plane[0]} ${l.plane[1]})` : "")), op);
    }));
  }

  renderPicks() {
    const picks = this.model.get("picks") || [];
    this.picksList.replaceChildren(...picks.map((p, i) => {
      const go = h("button", { class: "enb-btn enb-small", title: "Go to" }, "→");
      go.addEventListener("click", () => {
        const c = [p.z, p.y, p.x], [fixed, [rd, cd]] = AXIS_DIMS[p.axis];
        this.goto(p.axis, c[fixed], null);
        this.centerOn(c[rd], c[cd]);
      });
      const del = h("button", { class: "enb-btn enb-small", title: "Delete" }, "×");
      del.addEventListener("click", () => this.send({ type: "delete_pick", i }));
      const where = this.model.get("ndim") === 2 ? `y${p.y} x${p.x}` : `${p.axis} z${p.z} y${p.y} x${p.x}`;
      return h("div", { class: "enb-item" }, h("span", { class: "enb-name" }, `${i + 1}. ${where} s${p.size}`), go, del);
    }));
  }

  renderRegions() {
    const regions = this.model.get("regions") || [];
    this.regionsList.replaceChildren(...regions.map((g, i) => {
      const name = h("input", { type: "text", class: "enb-text enb-region-name", value: g.name, title: "Region name" });
      name.addEventListener("change", () => this.send({ type: "update_region", i, name: name.value }));
      const all = h("input", { type: "checkbox", title: "Extend through all slices", checked: !!g.all_slices });
      all.addEventListener("change", () => this.send({ type: "update_region", i, all_slices: all.checked }));
      const go = h("button", { class: "enb-btn enb-small", title: "Go to" }, "→");
      go.addEventListener("click", () => this.goto(g.axis, g.slice, null));
      const del = h("button", { class: "enb-btn enb-small", title: "Delete" }, "×");
      del.addEventListener("click", () => this.send({ type: "delete_region", i }));
      const where = this.model.get("ndim") === 2 ? g.shape : `${g.shape} ${g.axis} ${g.slice}`;
      return h("div", { class: "enb-item" }, name, h("span", { class: "enb-name" }, where), all, go, del);
    }));
  }

  renderProof() {
    const ops = this.model.get("proofreading") || [];
    if (!ops.length) { this.proofPanel.replaceChildren(); this.proofPanel.className = ""; return; }
    this.proofPanel.className = "enb-section";
    const ids = this.selection.map((s) => s.id);
    const chips = ids.map((id) => h("span", { class: "enb-chip", style: `background:${cssColor(id, 0.8)}` }, String(id)));
    const btn = (op, title, extra = () => ({})) => {
      const b = h("button", { class: "enb-btn", title, "data-op": op }, op);
      b.addEventListener("click", () => this.send({ type: "proofread", op, selection: this.selection, axis: this.axis, index: this.index, ...extra() }));
      return b;
    };
    const morphOp = h("select", { class: "enb-morph" }, ...["dilate", "erode", "open", "close", "fill holes"].map((o) => h("option", { value: o }, o)));
    const radius = h("input", { type: "number", min: "1", value: "1", class: "enb-num", title: "radius" });
    const minSize = h("input", { type: "number", min: "1", value: "64", class: "enb-num", title: "minimum size (pixels/voxels)" });
    const clearSel = h("button", { class: "enb-btn enb-small", title: "Clear selection" }, "×");
    clearSel.addEventListener("click", () => { this.selection = []; this.setTrait("selection", []); this.renderProof(); });
    const scope = h("select", { class: "enb-scope", title: "Apply to this slice or the whole volume" }, h("option", { value: "slice" }, "slice"), h("option", { value: "volume" }, "volume"));
    this.proofScope = scope;
    const avail = (op) => ops.includes(op);
    this.proofPanel.replaceChildren(
      h("div", { class: "enb-head" }, "Proofreading"),
      h("div", { class: "enb-row" }, h("label", {}, "selected (S tool) "), ...chips, clearSel),
      h("div", { class: "enb-row" },
        avail("merge") ? btn("merge", "Merge the selected labels into the first", () => ({ scope: scope.value })) : null,
        avail("split") ? btn("split", "Split the selected label", () => ({ scope: scope.value })) : null,
        avail("delete") ? btn("delete", "Delete the selected labels", () => ({ scope: scope.value })) : null, scope),
      avail("morph") ? h("div", { class: "enb-row" }, morphOp, radius, btn("morph", "Morphological operation on the selected labels", () => ({ morph: morphOp.value, radius: parseInt(radius.value) || 1, scope: scope.value }))) : null,
      avail("filter") ? h("div", { class: "enb-row" }, h("label", {}, "min size "), minSize, btn("filter", "Remove labels smaller than min size", () => ({ min_size: parseInt(minSize.value) || 1, scope: scope.value }))) : null);
  }
}

function render({ model, el }) {
  const v = new ViewerView(model, el);
  return () => v.destroy();
}

export default { render };
