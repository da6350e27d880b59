// Pointer and keyboard input of the Viewer: pan/zoom, the pick / region / paint / erase / fill / picker /
// select / marker tools, their previews on the overlay canvas, the hover read-out and the shortcuts. Python only
// receives committed results (a pick, a finished stroke, a rectangle or polygon, a fill) on mouse-up.

import { cssColor } from "./codec.js";
import { AXIS_DIMS, clampCenter, patchStart } from "./geometry.js";
import { shapePath, suggestionBoxes } from "./draw.js";

const TOOL_KEYS = { v: "pan", b: "pick", r: "rect", g: "polygon", p: "paint", e: "erase", u: "unlabelled", f: "fill", l: "picker", s: "select", k: "marker" };

const round2 = (v) => Math.round(v * 100) / 100;

export class PointerTools {
  constructor(view) {
    this.v = view;
    this.pendingStrokes = []; // sent, not yet answered: drawn until the labels come back
    this.stroke = null; // the stroke being drawn
    this.polygon = null; // {axis, index, points} while clicking a polygon
    this.drag = null; // {mode: pan|stroke|rect|click, ...} between pointer down and up
    this.cursor = null;
    this.spaceDown = false;
  }

  // listen on the overlay canvas and the widget root; `on(target, event, fn, options)` registers for disposal
  bind(on) {
    const v = this.v, ov = v.overlay;
    on(ov, "pointerdown", (e) => this.onDown(e));
    on(ov, "pointermove", (e) => this.onMove(e));
    on(ov, "pointerup", (e) => this.onUp(e));
    on(ov, "pointercancel", (e) => this.onUp(e));
    on(ov, "pointerleave", () => { this.cursor = null; this.drawOverlay(); v.hover.textContent = ""; });
    on(ov, "dblclick", (e) => { if (v.tool() === "polygon") { e.preventDefault(); this.finishPolygon(true); } });
    on(ov, "contextmenu", (e) => e.preventDefault());
    on(ov, "wheel", (e) => this.onWheel(e), { passive: false });
    on(v.root, "keydown", (e) => this.onKey(e));
    on(v.root, "keyup", (e) => { if (e.key === " ") this.spaceDown = false; e.stopPropagation(); });
  }

  // Python answered stroke `id` (its pixels are in the cache now, or it changed nothing)
  answered(id) { this.pendingStrokes = this.pendingStrokes.filter((s) => s.id !== id); }

  // ------------------------------------------------------------------------- coordinates
  toImage(e) {
    const ov = this.v.overlay, rect = ov.getBoundingClientRect();
    const px = (e.clientX - rect.left) * (ov.width / ov.clientWidth);
    const py = (e.clientY - rect.top) * (ov.height / ov.clientHeight);
    const { scale, tx, ty, aspect } = this.v.view;
    return { col: (px - tx) / scale, row: (py - ty) / (scale * (aspect || 1)), px, py };
  }
  inside(p) {
    const [ph, pw] = this.v.planeShape();
    return p.row >= 0 && p.col >= 0 && p.row < ph && p.col < pw;
  }

  // ------------------------------------------------------------------------------ pointer
  onDown(e) {
    const v = this.v;
    v.root.focus({ preventScroll: true });
    const p = this.toImage(e);
    this.cursor = p;
    v.overlay.setPointerCapture(e.pointerId);
    const tool = v.tool();
    const panning = e.button === 1 || e.button === 2 || this.spaceDown || (e.button === 0 && tool === "pan");
    if (panning) {
      this.drag = { mode: "pan", x: p.px, y: p.py, tx: v.view.tx, ty: v.view.ty };
      return;
    }
    if (e.button !== 0) return;
    e.preventDefault();
    if (tool === "paint" || tool === "erase" || tool === "unlabelled") {
      const l = v.activeLayer();
      if (l && !l.editable) { v.msg.textContent = `layer ${l.name} is not editable`; return; }
      this.stroke = {
        id: v.nextId(), axis: v.axis, index: v.index, erase: tool === "erase", unlabelled: tool === "unlabelled",
        size: v.model.get("brush_size"),
        label: v.model.get("current_label"), points: [[round2(p.row), round2(p.col)]],
      };
      this.drag = { mode: "stroke" };
      this.drawOverlay();
    } else if (tool === "rect") {
      this.drag = { mode: "rect", start: [round2(p.row), round2(p.col)] };
    } else {
      this.drag = { mode: "click", x: p.px, y: p.py };
    }
  }

  onMove(e) {
    const v = this.v;
    const p = this.toImage(e);
    this.cursor = p;
    const d = this.drag;
    if (d && d.mode === "pan") {
      v.view.tx = d.tx + (p.px - d.x);
      v.view.ty = d.ty + (p.py - d.y);
      v.requestDraw();
    } else if (d && d.mode === "stroke" && this.stroke) {
      const pts = this.stroke.points, last = pts[pts.length - 1];
      const evs = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const ev of evs.length ? evs : [e]) {
        const q = this.toImage(ev);
        if (Math.hypot(q.row - last[0], q.col - last[1]) >= 0.5) pts.push([round2(q.row), round2(q.col)]);
      }
    }
    this.drawOverlay();
    this.updateHover(p);
  }

  onUp(e) {
    const v = this.v;
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    const p = this.toImage(e);
    if (d.mode === "pan" && e.button === 0 && Math.hypot(p.px - d.x, p.py - d.y) <= 5) {
      this.selectSuggestionAt(p); // a click without a drag selects the suggestion under it
      return;
    }
    if (d.mode === "stroke" && this.stroke) {
      const s = this.stroke;
      this.stroke = null;
      const l = v.activeLayer();
      this.pendingStrokes.push(s);
      setTimeout(() => { this.pendingStrokes = this.pendingStrokes.filter((x) => x !== s); this.drawOverlay(); }, 5000);
      v.send({ type: "stroke", stroke: s.id, layer: l ? l.uid : null, axis: s.axis, index: s.index, points: s.points,
        size: s.size, label: s.label, erase: s.erase, unlabelled: s.unlabelled });
      this.drawOverlay();
    } else if (d.mode === "rect") {
      const a = d.start, b = [round2(p.row), round2(p.col)];
      if (Math.abs(a[0] - b[0]) * v.view.scale > 3 && Math.abs(a[1] - b[1]) * v.view.scale > 3) {
        v.send({ type: "region", shape: "rectangle", axis: v.axis, index: v.index, points: [a, b] });
      }
      this.drawOverlay();
    } else if (d.mode === "click") {
      if (Math.hypot(p.px - d.x, p.py - d.y) > 5) return;
      this.onClick(p, e);
    }
  }

  // select the suggested patch under `p` on this slice; whether there was one
  selectSuggestionAt(p) {
    const v = this.v;
    const boxes = suggestionBoxes(v.axis, v.index, v.shape3(), v.model.get("suggestions") || []);
    const i = boxes.findIndex((b) => b && p.row >= b[0] && p.row < b[1] && p.col >= b[2] && p.col < b[3]);
    if (i < 0) return false;
    v.selectSuggestion(i);
    return true;
  }

  onClick(p, e) {
    const v = this.v;
    const tool = v.tool();
    if (!this.inside(p) && tool !== "polygon") return;
    const row = round2(p.row), col = round2(p.col);
    const l = v.activeLayer();
    if (tool === "pick") {
      if (this.selectSuggestionAt(p)) return; // inside a suggested box: select it instead of picking over it
      v.send({ type: "pick", axis: v.axis, index: v.index, row, col });
    } else if (tool === "marker") {
      v.send({ type: "marker", axis: v.axis, index: v.index, row, col });
    } else if (tool === "fill") {
      v.send({ type: "fill", layer: l ? l.uid : null, axis: v.axis, index: v.index, row: Math.floor(p.row), col: Math.floor(p.col), label: v.model.get("current_label") });
    } else if (tool === "picker") {
      const id = l ? v.labelAt(l.uid, p) : null;
      if (id != null) v.setTrait("current_label", id);
    } else if (tool === "select") {
      const id = l ? v.labelAt(l.uid, p) : null;
      if (id) {
        const sel = v.selection.filter((s) => s.id !== id);
        if (sel.length === v.selection.length) sel.push({ id, axis: v.axis, index: v.index, row: Math.floor(p.row), col: Math.floor(p.col) });
        v.selection = sel;
        v.setTrait("selection", sel);
        v.panels.renderProof();
      }
    } else if (tool === "polygon") {
      if (!this.inside(p) && !this.polygon) return;
      if (!this.polygon || this.polygon.axis !== v.axis || this.polygon.index !== v.index) {
        this.polygon = { axis: v.axis, index: v.index, points: [] };
      }
      const pts = this.polygon.points;
      if (pts.length >= 3) {
        const p0 = pts[0];
        if (Math.hypot(p0[0] - row, p0[1] - col) * v.view.scale < 8) { this.finishPolygon(false); return; }
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
      if (Math.hypot(a[0] - b[0], a[1] - b[1]) * this.v.view.scale < 4) pts = pts.slice(0, -1);
    }
    this.polygon = null;
    if (pts.length >= 3) this.v.send({ type: "region", shape: "polygon", axis: poly.axis, index: poly.index, points: pts });
    this.drawOverlay();
  }

  // position, image value and label ids under the cursor, once per animation frame
  updateHover(p) {
    const v = this.v;
    if (this.hoverQueued) { this.hoverP = p; return; }
    this.hoverP = p;
    this.hoverQueued = true;
    requestAnimationFrame(() => {
      this.hoverQueued = false;
      const q = this.hoverP;
      if (!q || !this.inside(q)) { v.hover.textContent = ""; return; }
      const r = Math.floor(q.row), c = Math.floor(q.col);
      const fixed = AXIS_DIMS[v.axis][0], [, [rd, cd]] = AXIS_DIMS[v.axis];
      const pos = [0, 0, 0]; pos[fixed] = v.index; pos[rd] = r; pos[cd] = c;
      let txt = v.model.get("ndim") === 2 ? `y ${pos[1]}  x ${pos[2]}` : `z ${pos[0]}  y ${pos[1]}  x ${pos[2]}`;
      const val = v.imageValueAt(q);
      if (val != null) txt += `  value ${Number.isInteger(val) ? val : val.toPrecision(4)}`;
      for (const l of v.layers()) {
        const id = v.labelAt(l.uid, q);
        if (id != null) txt += `  ${l.name}: ${id === l.unlabelled ? "unlabelled" : id}`;
      }
      v.hover.textContent = txt;
      v.hover.dataset.label = String(v.activeLayer() ? v.labelAt(v.activeLayer().uid, q) ?? "" : "");
    });
  }

  onWheel(e) {
    const v = this.v;
    e.preventDefault();
    if (e.shiftKey || e.altKey) {
      const d = e.deltaY || e.deltaX;
      if (d) v.step(d > 0 ? 1 : -1, e);
      return;
    }
    const p = this.toImage(e);
    const f = Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015));
    const s = Math.min(64, Math.max(0.01, v.view.scale * f));
    const k = s / v.view.scale;
    v.view.tx = p.px - (p.px - v.view.tx) * k;
    v.view.ty = p.py - (p.py - v.view.ty) * k;
    v.view.scale = s;
    v.zoomed();
    v.requestDraw();
    this.drawOverlay();
  }

  onKey(e) {
    const v = this.v;
    const t = e.target;
    const typing = t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA") && t.type !== "range" && t.type !== "checkbox";
    e.stopPropagation(); // keep notebook shortcuts (a, b, d d, ...) away while the viewer has focus
    if (typing) return;
    const k = e.key, ctrl = e.ctrlKey || e.metaKey;
    let handled = true;
    if (ctrl && (k === "z" || k === "Z")) v.send({ type: e.shiftKey ? "redo" : "undo" });
    else if (ctrl && (k === "y" || k === "Y")) v.send({ type: "redo" });
    else if (ctrl) handled = false;
    else if (k === "ArrowRight" || k === "." || k === "ArrowUp") v.step(e.shiftKey ? 10 : 1, e);
    else if (k === "ArrowLeft" || k === "," || k === "ArrowDown") v.step(e.shiftKey ? -10 : -1, e);
    else if (k === "PageUp") v.step(10, e);
    else if (k === "PageDown") v.step(-10, e);
    else if (k === "Home") v.goto(v.axis, 0, e);
    else if (k === "End") v.goto(v.axis, v.nSlices() - 1, e);
    else if (k === " ") this.spaceDown = true;
    else if (k === "Escape") { this.polygon = null; this.stroke = null; this.drag = null; this.drawOverlay(); }
    else if (k === "Enter") this.finishPolygon(false);
    else if (k === "[") v.setTrait("brush_size", Math.max(1, v.model.get("brush_size") - (e.shiftKey ? 10 : 1)));
    else if (k === "]") v.setTrait("brush_size", v.model.get("brush_size") + (e.shiftKey ? 10 : 1));
    else if (k === "m" || k === "M") v.send({ type: "new_label" });
    else if (k === "a" || k === "A") v.autoContrast();
    else if (k === "0") { v.fit(); v.requestDraw(); this.drawOverlay(); }
    else if (k === "h" || k === "H") {
      const l = v.activeLayer();
      if (l) v.send({ type: "layer", layer: l.uid, visible: !l.visible });
    } else if (TOOL_KEYS[k.toLowerCase()] && !e.altKey) v.setTool(TOOL_KEYS[k.toLowerCase()]);
    else handled = false;
    if (handled) e.preventDefault();
  }

  // ----------------------------------------------------------------------------- overlay
  // strokes in flight, the rectangle or polygon being drawn, and the pick / brush preview at the cursor
  drawOverlay() {
    if (this.overlayQueued) return;
    this.overlayQueued = true;
    requestAnimationFrame(() => { this.overlayQueued = false; this._drawOverlay(); });
  }

  _drawOverlay() {
    const v = this.v;
    const ctx = v.octx, W = v.overlay.width, H = v.overlay.height;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const { scale, tx, ty } = v.view;
    ctx.setTransform(scale, 0, 0, scale * (v.view.aspect || 1), tx, ty);
    const lw = 1.5 / scale, tool = v.tool();
    ctx.lineWidth = lw;
    const strokes = this.pendingStrokes.filter((s) => s.axis === v.axis && s.index === v.index);
    if (this.stroke) strokes.push(this.stroke);
    for (const s of strokes) {
      ctx.lineCap = "round"; ctx.lineJoin = "round";
      ctx.lineWidth = s.size;
      ctx.strokeStyle = s.erase ? "rgba(0,0,0,0.55)" : s.unlabelled ? "rgba(150,150,150,0.6)" : cssColor(s.label, 0.6);
      ctx.beginPath();
      s.points.forEach((p, i) => (i ? ctx.lineTo(p[1], p[0]) : ctx.moveTo(p[1], p[0])));
      if (s.points.length === 1) ctx.lineTo(s.points[0][1] + 0.001, s.points[0][0]);
      ctx.stroke();
    }
    ctx.lineWidth = lw;
    const cur = this.cursor;
    if (this.drag && this.drag.mode === "rect" && cur) {
      ctx.strokeStyle = "rgba(0,230,255,0.95)";
      shapePath(ctx, "rectangle", [this.drag.start, [cur.row, cur.col]]);
      ctx.stroke();
    }
    if (this.polygon && this.polygon.axis === v.axis && this.polygon.index === v.index) {
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
        const size = v.model.get("patch_size"), [ph, pw] = v.planeShape();
        const rc = clampCenter(cur.row, size, ph), cc = clampCenter(cur.col, size, pw);
        const [r0, r1] = patchStart(rc, size, ph), [c0, c1] = patchStart(cc, size, pw);
        ctx.strokeStyle = "rgba(255,220,0,0.8)";
        ctx.setLineDash([6 * lw, 4 * lw]);
        ctx.strokeRect(c0, r0, c1 - c0, r1 - r0);
        ctx.setLineDash([]);
      } else if (tool === "paint" || tool === "erase" || tool === "unlabelled") {
        const r = Math.max(0.5, v.model.get("brush_size") / 2);
        ctx.strokeStyle = "rgba(255,255,255,0.9)";
        ctx.beginPath();
        ctx.arc(cur.col, cur.row, r, 0, 2 * Math.PI);
        ctx.stroke();
      }
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }
}
