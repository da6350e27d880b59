// empanada_nb Viewer: the anywidget front end, hand-written ES modules (no build step).
//
// Pixels arrive as binary buffers in custom messages ("data", "labels_update"); the browser keeps an
// LRU cache of slices and prefetches neighbours. Mouse moves, drags, zoom/pan and previews stay here;
// Python receives committed results (a pick, a stroke, a region, a fill) on mouse-up.
//
// Parts (static/viewer/): geometry.js (axes, patch clamping), codec.js (buffer decoding, label colours),
// cache.js (slice cache and requests), draw.js (painting a slice), tools.js (pointer and keyboard input),
// panels.js (toolbar and side panel); ../dom.js is shared with the dashboard. This file is the view that
// ties them to the model. empanada_nb/widgets/_esm.py inlines the parts into one module for anywidget.

import { debugRegistry, h, throttle } from "./dom.js";
import { SliceCache, sliceKey } from "./viewer/cache.js";
import { cssColor, decodePart, decodeRle, labelColor } from "./viewer/codec.js";
import { SliceRenderer, drawShapes, drawSuggestions } from "./viewer/draw.js";
import { AXES, AXIS_DIMS, clampCenter, patchStart, planeShape } from "./viewer/geometry.js";
import { Panels } from "./viewer/panels.js";
import { PointerTools } from "./viewer/tools.js";

class ViewerView {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.debug = !!model.get("debug");
    this.rid = Math.floor(Math.random() * 1e9); // request and stroke ids unique across views of one widget
    this.slices = new SliceCache({
      send: (c) => this.send(c),
      nextId: () => this.nextId(),
      wanted: (axis, index) => this.layers().filter((l) => this.layerWanted(l, axis, index)),
    });
    this.renderer = new SliceRenderer();
    this.view = { scale: 1, tx: 0, ty: 0, aspect: 1 }; // canvas px per voxel: cols `scale`, rows `scale * aspect`
    this.level = 0; // the pyramid level the zoom asks for (level_scales); all coordinates stay level 0's
    this.fitted = null;
    // timing of slice switches (debug only): read by the browser tests and benchmarks/slice_switch.py
    this.stats = this.debug ? { switches: [], hits: 0, misses: 0, rtts: [], renders: [] } : null;
    this.pendingTiming = null;
    this.selection = [];
    this.selectedSuggestion = 0; // index in the suggestions trait that accept / reject act on
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
    if (this.debug) {
      const reg = debugRegistry();
      reg.views.push(this);
      // the pure parts, for the tests that check Python and JavaScript agree
      reg.lib = { decodePart, decodeRle, labelColor, cssColor, patchStart, clampCenter };
    }
    this.send({ type: "ready" });
  }

  // ----------------------------------------------------------------------------------- DOM
  build() {
    this.root = h("div", { class: "enb-viewer", tabindex: "0", "data-lm-suppress-shortcuts": "true", "data-jp-suppress-context-menu": "true" });
    this.canvas = h("canvas", { class: "enb-canvas" });
    this.overlay = h("canvas", { class: "enb-canvas enb-overlay" });
    this.loading = h("div", { class: "enb-loading" }, "loading…");
    this.wrap = h("div", { class: "enb-canvas-wrap" }, this.canvas, this.overlay, this.loading);
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.octx = this.overlay.getContext("2d");
    this.panels = new Panels(this);
    this.hover = h("span", { class: "enb-hover" });
    this.msg = h("span", { class: "enb-msg" });
    this.status = h("div", { class: "enb-status" }, this.hover, this.msg);
    this.main = h("div", { class: "enb-main" }, h("div", { class: "enb-left" }, this.wrap, this.panels.sliceBar), this.panels.side);
    // the offer of an earlier session's autosaved work (Viewer.autosave_offer): Restore / Discard
    this.offerText = h("span", { class: "enb-autosave-text" });
    this.offer = h("div", { class: "enb-autosave", role: "alert" }, this.offerText,
      h("button", { class: "enb-btn enb-autosave-restore", title: "Restore the autosaved labels, picks and regions", onclick: () => this.send({ type: "autosave_restore" }) }, "Restore"),
      h("button", { class: "enb-btn enb-autosave-discard", title: "Delete the autosave (files you saved are kept)", onclick: () => this.send({ type: "autosave_discard" }) }, "Discard"));
    this.root.append(this.offer, this.panels.toolbar, this.main, this.status);
    this.el.append(this.root);

    const on = (t, ev, fn, opt) => { t.addEventListener(ev, fn, opt); this.disposers.push(() => t.removeEventListener(ev, fn, opt)); };
    this.tools = new PointerTools(this);
    this.tools.bind(on);
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.wrap);
    this.disposers.push(() => this.ro.disconnect());
  }

  bindModel() {
    const m = this.model, P = this.panels;
    const on = (ev, fn) => { m.on(ev, fn); this.disposers.push(() => m.off(ev, fn)); };
    on("msg:custom", (msg, buffers) => {
      if (this.stats && msg.type === "data" && msg.rid === this.slices.priorityRid) this.trace = { arrived: performance.now(), rid: msg.rid };
      this.msgChain = this.msgChain.then(() => this.onMsg(msg, buffers || [])).catch((err) => {
        console.error("empanada_nb viewer:", err);
        this.msg.textContent = "viewer error: " + err;
      });
    });
    on("change:slice_index", () => {
      const i = m.get("slice_index");
      if (i !== this.index && !this.syncSlice.pending()) this.goto(m.get("axis"), i, null, true);
    });
    on("change:axis", () => { if (m.get("axis") !== this.axis) this.goto(m.get("axis"), m.get("slice_index"), null, true); });
    on("change:contrast_limits", () => {
      const c = m.get("contrast_limits");
      if (c[0] !== this.contrast[0] || c[1] !== this.contrast[1]) this.setContrast(c.slice(), false);
    });
    on("change:data_range", () => P.updateContrastInputs());
    on("change:layers", () => this.onLayers());
    on("change:active_layer", () => P.renderLayersList());
    on("change:tool", () => P.updateToolbar());
    on("change:brush_size", () => P.updateToolbar());
    on("change:current_label", () => P.updateToolbar());
    on("change:patch_size", () => { P.updateToolbar(); this.tools.drawOverlay(); });
    on("change:flipbook", () => { P.updateToolbar(); P.renderPicks(); this.requestDraw(); });
    on("change:level", () => P.updateToolbar());
    on("change:max_slice_mpix", () => { this.zoomed(); this.requestDraw(); });
    on("change:voxel_size", () => { this.fit(); this.requestDraw(); });
    on("change:can_undo", () => P.updateToolbar());
    on("change:can_redo", () => P.updateToolbar());
    on("change:picks", () => { P.renderPicks(); this.requestDraw(); });
    on("change:suggestions", () => { this.selectSuggestion(this.selectedSuggestion); });
    on("change:regions", () => { P.renderRegions(); this.requestDraw(); });
    on("change:message", () => { this.msg.textContent = m.get("message"); });
    on("change:autosave_offer", () => this.showOffer());
    on("change:height", () => this.resize());
    on("change:proofreading", () => P.renderProof());
    on("change:selection", () => { this.selection = m.get("selection").slice(); P.renderProof(); });
    on("change:markers", () => { P.renderProof(); this.requestDraw(); });
    on("change:label_divisor", () => P.renderProof());
    on("change:label_counts", () => P.renderCounts());
    on("change:confine_to_regions", () => { P.confine.checked = m.get("confine_to_regions"); });
    on("change:dataset_dir", () => { P.dirInput.value = m.get("dataset_dir"); });
    on("change:dataset_name", () => { P.nameInput.value = m.get("dataset_name"); });
    P.dirInput.value = m.get("dataset_dir");
    P.nameInput.value = m.get("dataset_name");
    P.confine.checked = m.get("confine_to_regions");
    this.msg.textContent = m.get("message");
    this.showOffer();
    this.selection = (m.get("selection") || []).slice();
    P.updateToolbar();
    P.updateContrastInputs();
    this.onLayers();
    P.renderPicks();
    P.renderSuggestions();
    P.renderRegions();
    P.renderProof();
    P.renderCounts();
  }

  destroy() {
    for (const d of this.disposers) d();
    this.syncSlice.cancel();
    const reg = window.__enb;
    if (reg) reg.views = reg.views.filter((v) => v !== this);
    this.slices.clear();
    this.root.remove();
  }

  showOffer() {
    const text = this.model.get("autosave_offer") || "";
    this.offerText.textContent = text;
    this.offer.style.display = text ? "" : "none";
  }

  send(content, buffers) { this.model.send(content, undefined, buffers); }
  setTrait(name, value) { this.model.set(name, value); this.model.save_changes(); }
  nextId() { return ++this.rid; }
  tool() { return this.model.get("tool"); }
  shape3() { return this.model.get("shape"); }

  layers() { return this.model.get("layers") || []; }
  activeLayer() {
    const uid = this.model.get("active_layer");
    return this.layers().find((l) => l.uid === uid) || null;
  }
  layerWanted(l, axis, index) {
    if (!l.visible && l.uid !== this.model.get("active_layer")) return false;
    if (l.plane) return l.plane[0] === axis && l.plane[1] === index;
    return true;
  }

  planeShape(axis = this.axis) { return planeShape(this.shape3(), axis); }
  nSlices(axis = this.axis) { return this.shape3()[AXIS_DIMS[axis][0]]; }
  currentEntry() { return this.slices.get(sliceKey(this.axis, this.index, this.level)); }
  // the entry drawn: the current level's once loaded, else the nearest level of the same slice that is
  shownEntry() {
    const ready = (e) => e && e.image && !e.image.left;
    const cur = this.currentEntry();
    if (ready(cur)) return cur;
    const n = (this.model.get("level_scales") || []).length;
    for (let d = 1; d < n; d++) {
      for (const l of [this.level - d, this.level + d]) {
        const e = l >= 0 && l < n ? this.slices.get(sliceKey(this.axis, this.index, l)) : null;
        if (ready(e)) return e;
      }
    }
    return cur;
  }
  // label id of layer `uid` at image point p = {row, col} of the shown slice (null: not loaded or outside)
  labelAt(uid, p) {
    const e = this.shownEntry();
    return e ? this.slices.labelAt(e.key, uid, p.row, p.col, this.planeShape()) : null;
  }
  // the raw image value at p (level 0 coordinates) of the shown slice, at the level shown (null: none)
  imageValueAt(p) {
    const e = this.shownEntry();
    if (!e || !e.image || e.image.left) return null;
    const [ph, pw] = this.planeShape(), [hh, ww] = e.image.shape;
    const r = Math.floor(p.row * hh / ph), c = Math.floor(p.col * ww / pw);
    return r >= 0 && c >= 0 && r < hh && c < ww ? e.image.arr[r * ww + c] : null;
  }

  // ------------------------------------------------------------------- pyramid levels, voxel size
  // the coarsest level whose pixels are not larger than a canvas pixel, along each downsampled dimension
  chooseLevel() {
    const scales = this.model.get("level_scales") || [];
    const [, [rd, cd]] = AXIS_DIMS[this.axis];
    const px = [this.view.scale * (this.view.aspect || 1), this.view.scale]; // canvas px per voxel: rows, cols
    let best = 0;
    scales.forEach((f, l) => {
      if ([f[rd], f[cd]].every((g, i) => g <= 1 || g * px[i] <= 1.0001)) best = l;
    });
    // slices are read whole: never one larger than max_slice_mpix while a coarser level exists
    const [ph, pw] = this.planeShape(), limit = (this.model.get("max_slice_mpix") || Infinity) * 1e6;
    while (best < scales.length - 1 && (ph / scales[best][rd]) * (pw / scales[best][cd]) > limit) best++;
    return best;
  }
  // after a zoom: ask for the level it needs (the one shown stays until it arrives)
  zoomed() {
    const l = this.chooseLevel();
    if (l === this.level) return;
    this.level = l;
    this.slices.ensure(this.axis, this.index, true, l);
    this.prefetch();
  }
  // rows over cols of one voxel on the screen: voxel_size of the row dimension over the column's
  aspectOf(axis) {
    const vs = this.model.get("voxel_size") || [1, 1, 1], [, [rd, cd]] = AXIS_DIMS[axis];
    const a = vs[rd] / vs[cd];
    return a > 0 && isFinite(a) ? a : 1;
  }

  // ------------------------------------------------------------------------------ contrast
  rangeStep() {
    const [a, b] = this.model.get("data_range");
    return this.model.get("dtype").startsWith("float") ? (b - a) / 1000 : 1;
  }
  setContrast(c, fromUser) {
    this.contrast = c;
    this.renderer.lut = null;
    this.panels.showContrast(c);
    this.requestDraw();
    if (fromUser) {
      if (!this.syncContrast) this.syncContrast = throttle(() => this.setTrait("contrast_limits", this.contrast.slice()), 200);
      this.syncContrast();
    }
  }
  autoContrast() {
    const e = this.currentEntry();
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
    if (this.tools.polygon && name !== "polygon") this.tools.polygon = null;
    this.setTrait("tool", name);
    this.tools.drawOverlay();
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
    if (axisChanged || !this.fitted) { this.tools.polygon = null; this.fit(); }
    const key = sliceKey(axis, index, this.level);
    const entry = this.slices.get(key);
    const hit = !!(entry && entry.image && !entry.image.left);
    if (e && this.stats) {
      const t0 = e.timeStamp > 0 ? Math.min(e.timeStamp, performance.now()) : performance.now();
      this.pendingTiming = { key, t0, hit };
      hit ? this.stats.hits++ : this.stats.misses++;
    }
    this.panels.showSlice(axis, index, n);
    this.slices.ensure(axis, index, true, this.level);
    this.prefetch();
    if (hit) this.drawNow();
    else this.requestDraw();
    if (!fromModel) this.syncSlice();
  }

  prefetch() {
    this.slices.prefetch(this.axis, this.index, this.nSlices(this.axis), this.model.get("prefetch") ?? 4, this.lastDir, this.level);
  }

  // ---------------------------------------------------------------------------- messages
  async onMsg(msg, buffers) {
    if (msg.type === "data") await this.onData(msg, buffers);
    else if (msg.type === "labels_update") await this.onLabelsUpdate(msg, buffers);
    else if (msg.type === "invalidate") {
      if (msg.image) { this.slices.clear(); this.renderer.rendered.image = null; }
      this.slices.ensure(this.axis, this.index, true, this.level);
      this.requestDraw();
    } else if (msg.type === "goto") {
      this.goto(msg.axis, msg.index, null);
      if (msg.center) this.centerOn(msg.center[0], msg.center[1]);
    }
  }

  async onData(msg, buffers) {
    const S = this.slices;
    const rtt = await S.applyData(msg, buffers);
    if (rtt != null && this.stats) {
      this.stats.rtts.push(rtt);
      if (this.stats.rtts.length > 1000) this.stats.rtts.shift();
    }
    S.evict((this.model.get("cache_mb") || 512) * 1048576, sliceKey(this.axis, this.index, this.level));
    if (this.trace && this.trace.rid === msg.rid) this.trace.decoded = performance.now();
    const current = msg.axis === this.axis && msg.index === this.index;
    if (current) this.drawNow();
    if (msg.last && (S.wantCurrent || current)) {
      S.wantCurrent = false;
      S.ensure(this.axis, this.index, true, this.level);
    }
    S.expireInflight();
    this.prefetch();
  }

  async onLabelsUpdate(msg, buffers) {
    await this.slices.applyLabelsUpdate(msg, buffers);
    // drop the stroke previews that this update answers
    if (msg.stroke != null) this.tools.answered(msg.stroke);
    if (msg.noop || msg.stale || (msg.axis === this.axis && msg.index === this.index)) this.slices.ensure(this.axis, this.index, true, this.level);
    this.requestDraw();
    this.tools.drawOverlay();
  }

  onLayers() {
    // a layer whose version moved on: its cached slices are stale (kept for display until refreshed)
    this.panels.renderLayersList();
    this.renderer.keepLayers(this.layers().map((l) => l.uid));
    this.slices.ensure(this.axis, this.index, true, this.level);
    this.requestDraw();
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
      this.tools.drawOverlay();
    }
  }

  fit() {
    const [ph, pw] = this.planeShape(), a = this.aspectOf(this.axis);
    const W = this.canvas.width, H = this.canvas.height;
    const s = Math.min(W / pw, H / (ph * a));
    this.view = { scale: s, tx: (W - pw * s) / 2, ty: (H - ph * s * a) / 2, aspect: a };
    this.fitted = W > 1;
    this.level = this.chooseLevel();
  }

  centerOn(row, col) {
    const W = this.canvas.width, H = this.canvas.height, s = this.view.scale;
    this.view.tx = W / 2 - (col + 0.5) * s;
    this.view.ty = H / 2 - (row + 0.5) * s * this.view.aspect;
    this.requestDraw();
  }

  // the suggestion that the panel's accept / reject buttons act on (kept inside the list as it shrinks)
  selectSuggestion(i) {
    const n = (this.model.get("suggestions") || []).length;
    this.selectedSuggestion = Math.max(0, Math.min(i, n - 1));
    this.panels.renderSuggestions();
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

  draw() {
    const t0 = performance.now();
    const e = this.shownEntry();
    const ctx = this.ctx, W = this.canvas.width, H = this.canvas.height;
    const ready = e && e.image && !e.image.left;
    this.loading.style.display = ready ? "none" : "";
    if (!ready && !this.renderer.rendered.image) { ctx.fillStyle = "#111"; ctx.fillRect(0, 0, W, H); return; }
    this.renderer.paint(ctx, W, H, this.view, ready ? e : null, this.contrast, this.layers(), this.axis, this.index, this.planeShape());
    drawShapes(ctx, this.view.scale, this.axis, this.index, this.shape3(), this.model.get("picks") || [], this.model.get("regions") || [], this.model.get("markers") || [], this.model.get("flipbook") || 0);
    drawSuggestions(ctx, this.view.scale, this.axis, this.index, this.shape3(), this.model.get("suggestions") || [], this.selectedSuggestion);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.reportViewBox();
    if (this.stats) this.recordTiming(t0, ready ? e : null);
    this.root.dataset.shown = ready ? e.key : "";
    // the level on screen, for Python (`level`) when the level follows the zoom
    if (ready && (this.model.get("level_scales") || []).length && e.level !== this.model.get("level")) this.setTrait("level", e.level);
  }

  // tell Python which part of the slice is drawn (InferencePanel's "confine to visible area"), when it changes
  reportViewBox() {
    const [ph, pw] = this.planeShape(), s = this.view.scale, sr = s * this.view.aspect, W = this.canvas.width, H = this.canvas.height;
    const clamp = (v, n) => Math.max(0, Math.min(n, v));
    const box = [AXES.indexOf(this.axis), this.index,
      clamp(Math.floor(-this.view.ty / sr), ph), clamp(Math.floor(-this.view.tx / s), pw),
      clamp(Math.ceil((H - this.view.ty) / sr), ph), clamp(Math.ceil((W - this.view.tx) / s), pw)];
    const key = box.join(",");
    if (key === this.viewBoxKey || !this.fitted) return;
    this.viewBoxKey = key;
    if (!this.sendViewBox) this.sendViewBox = throttle((b) => this.setTrait("view_box", b), 250);
    this.sendViewBox(box);
  }

  // draw time, and input-to-painted time of the switch to slice `e` (debug only)
  recordTiming(t0, e) {
    const st = this.stats;
    st.renders.push(performance.now() - t0);
    if (st.renders.length > 1000) st.renders.shift();
    if (e && this.pendingTiming && this.pendingTiming.key === e.key) {
      const now = performance.now(), dt = now - this.pendingTiming.t0, tr = this.trace;
      const sw = { ms: dt, hit: this.pendingTiming.hit, key: e.key };
      if (!sw.hit && tr && tr.decoded) Object.assign(sw, { wait: tr.arrived - this.pendingTiming.t0, decode: tr.decoded - tr.arrived, paint: now - tr.decoded });
      st.switches.push(sw);
      if (st.switches.length > 5000) st.switches.shift();
      this.pendingTiming = null;
    }
  }
}

function render({ model, el }) {
  const v = new ViewerView(model, el);
  return () => v.destroy();
}

export default { render };
