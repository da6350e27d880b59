// Painting a slice: the image through the contrast window, the label layers in their colours, and the
// picks and regions of the slice, onto a canvas with the view transform {scale, tx, ty}.

import { labelColor } from "./codec.js";
import { AXIS_DIMS, patchStart } from "./geometry.js";

export class SliceRenderer {
  constructor() {
    this.imgCanvas = document.createElement("canvas");
    this.imgCtx = this.imgCanvas.getContext("2d", { willReadFrequently: false });
    this.imageData = null;
    this.lut = null;
    this.rendered = { image: null, contrast: null, plane: null }; // what imgCanvas holds, and its level-0 size
    this.labelCanvases = new Map(); // layer uid -> {canvas, ctx, data, stamp, key}
  }

  // keep the label canvases of these layers only
  keepLayers(uids) {
    for (const uid of [...this.labelCanvases.keys()]) if (!uids.includes(uid)) this.labelCanvases.delete(uid);
  }

  buildLut(dtype, contrast) {
    const [lo, hi] = contrast, scale = 255 / Math.max(1e-12, hi - lo);
    const n = dtype === "uint8" ? 256 : 65536;
    const lut = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const v = Math.max(0, Math.min(255, Math.round((i - lo) * scale)));
      lut[i] = (0xff000000 | (v << 16) | (v << 8) | v) >>> 0;
    }
    this.lut = { dtype, lut, contrast };
  }

  renderImage(e, contrast) {
    const img = e.image, [hh, ww] = img.shape;
    if (this.imgCanvas.width !== ww || this.imgCanvas.height !== hh) {
      this.imgCanvas.width = ww; this.imgCanvas.height = hh; this.imageData = null;
    }
    if (!this.imageData || this.imageData.width !== ww || this.imageData.height !== hh) this.imageData = this.imgCtx.createImageData(ww, hh);
    const out = new Uint32Array(this.imageData.data.buffer), a = img.arr, n = a.length;
    if (img.dtype === "uint8" || img.dtype === "uint16") {
      if (!this.lut || this.lut.dtype !== img.dtype || this.lut.contrast !== contrast) this.buildLut(img.dtype, contrast);
      const lut = this.lut.lut;
      for (let i = 0; i < n; i++) out[i] = lut[a[i]];
    } else {
      const [lo, hi] = contrast, scale = 255 / Math.max(1e-12, hi - lo);
      for (let i = 0; i < n; i++) {
        let v = (a[i] - lo) * scale;
        v = v < 0 ? 0 : v > 255 ? 255 : v | 0;
        out[i] = (0xff000000 | (v << 16) | (v << 8) | v) >>> 0;
      }
    }
    this.imgCtx.putImageData(this.imageData, 0, 0);
    this.rendered.image = e.image;
    this.rendered.contrast = contrast;
  }

  // `unlabelled`: the layer's ignore value, drawn as grey diagonal stripes (hatched) over the image
  renderLabels(uid, c, unlabelled = null) {
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
      const grey = unlabelled == null ? 0 : labelColor(unlabelled, unlabelled);
      for (let i = 0, n = a.length; i < n; i++) {
        const id = a[i];
        if (id === 0) out[i] = 0;
        else if (id === unlabelled) out[i] = (((i % ww) + ((i / ww) | 0)) & 4) ? 0 : grey;
        else if (id === last) out[i] = lastC;
        else { last = id; lastC = labelColor(id); out[i] = lastC; }
      }
    }
    lc.ctx.putImageData(lc.data, 0, 0);
    lc.stamp = c.stamp;
    lc.key = c;
    return lc;
  }

  // the slice entry `e` (null while it loads: the last image stays) and its visible label layers, in level 0's
  // coordinates: `plane` is level 0's slice shape, which a coarser level's pixels are stretched over; rows
  // are stretched by `view.aspect` (anisotropic voxels)
  paint(ctx, W, H, view, e, contrast, layers, axis, index, plane) {
    if (e && (this.rendered.image !== e.image || this.rendered.contrast !== contrast)) this.renderImage(e, contrast);
    if (e) this.rendered.plane = plane;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, W, H);
    const { scale, tx, ty } = view;
    ctx.imageSmoothingEnabled = scale < 1;
    ctx.setTransform(scale, 0, 0, scale * (view.aspect || 1), tx, ty);
    const [ph, pw] = this.rendered.plane || [this.imgCanvas.height, this.imgCanvas.width];
    ctx.drawImage(this.imgCanvas, 0, 0, pw, ph);
    if (!e) return;
    for (const l of layers) {
      if (!l.visible || l.opacity <= 0) continue;
      if (l.plane && (l.plane[0] !== axis || l.plane[1] !== index)) continue;
      const c = e.labels.get(l.uid);
      if (!c || c.left || c.empty || !c.arr) continue;
      let lc = this.labelCanvases.get(l.uid);
      if (!lc || lc.key !== c || lc.stamp !== c.stamp) lc = this.renderLabels(l.uid, c, l.unlabelled);
      ctx.imageSmoothingEnabled = false;
      ctx.globalAlpha = l.opacity;
      ctx.drawImage(lc.canvas, 0, 0, plane[1], plane[0]);
      ctx.globalAlpha = 1;
    }
  }
}

// picks, regions and split markers on slice `index` along `axis`, in image coordinates (ctx already transformed)
// (a pick's flipbook, `depth` consecutive slices as patches.flipbook_range, is outlined dashed on its other slices)
export function drawShapes(ctx, scale, axis, index, shape3, picks, regions, markers = [], depth = 0) {
  const lw = 1.5 / scale;
  const [, [rd, cd]] = AXIS_DIMS[axis], fixed = AXIS_DIMS[axis][0];
  ctx.lineWidth = lw;
  ctx.font = `${12 / scale}px sans-serif`;
  picks.forEach((p, i) => {
    if (p.axis !== axis) return;
    const c = [p.z, p.y, p.x];
    const n = shape3[fixed], f0 = Math.min(Math.max(0, c[fixed] - (depth >> 1)), Math.max(0, n - depth));
    const inBook = depth > 0 && index >= f0 && index < f0 + depth;
    if (c[fixed] !== index && !inBook) return;
    const [r0, r1] = patchStart(c[rd], p.size, shape3[rd]), [c0, c1] = patchStart(c[cd], p.size, shape3[cd]);
    ctx.strokeStyle = "rgba(255,220,0,0.95)";
    ctx.lineWidth = lw;
    if (c[fixed] !== index) ctx.setLineDash([4 * lw, 4 * lw]);
    ctx.strokeRect(c0, r0, c1 - c0, r1 - r0);
    ctx.setLineDash([]);
    textLabel(ctx, scale, String(i + 1), c0 + 3 * lw, r0 + 13 / scale, "rgba(255,220,0,1)");
  });
  for (const g of regions) {
    if (g.axis !== axis || (!g.all_slices && g.slice !== index)) continue;
    ctx.strokeStyle = "rgba(0,230,255,0.95)";
    ctx.fillStyle = "rgba(0,230,255,0.12)";
    ctx.lineWidth = lw;
    shapePath(ctx, g.shape, g.points);
    ctx.fill();
    ctx.stroke();
    textLabel(ctx, scale, g.name, Math.min(...g.points.map((p) => p[1])) + 3 * lw,
      Math.min(...g.points.map((p) => p[0])) + 13 / scale, "rgba(0,230,255,1)");
  }
  const arm = 6 / scale;
  for (const m of markers) {
    if (m.axis !== axis || m.index !== index) continue;
    ctx.strokeStyle = "rgba(255,60,200,1)";
    ctx.lineWidth = 2 / scale;
    ctx.beginPath();
    ctx.moveTo(m.col - arm, m.row); ctx.lineTo(m.col + arm, m.row);
    ctx.moveTo(m.col, m.row - arm); ctx.lineTo(m.col, m.row + arm);
    ctx.stroke();
  }
}

// text with a dark outline, 12 CSS px whatever the zoom
function textLabel(ctx, scale, text, x, y, color) {
  ctx.font = `600 ${12 / scale}px sans-serif`;
  ctx.lineWidth = 3 / scale;
  ctx.strokeStyle = "rgba(0,0,0,0.8)";
  ctx.strokeText(text, x, y);
  ctx.fillStyle = color;
  ctx.fillText(text, x, y);
}

// a rectangle (two corners) or polygon of [row, col] points as the current path
export function shapePath(ctx, kind, pts) {
  ctx.beginPath();
  if (kind === "rectangle") {
    const [a, b] = pts;
    ctx.rect(Math.min(a[1], b[1]), Math.min(a[0], b[0]), Math.abs(b[1] - a[1]), Math.abs(b[0] - a[0]));
  } else {
    pts.forEach((p, i) => (i ? ctx.lineTo(p[1], p[0]) : ctx.moveTo(p[1], p[0])));
    ctx.closePath();
  }
}

// suggested patches on slice `index` along `axis`: dashed magenta boxes "?k" (picks are solid yellow), the
// selected one thicker over a light fill; `boxes` are their [r0, r1, c0, c1] on the slice (null: elsewhere)
export function suggestionBoxes(axis, index, shape3, suggestions) {
  const [fixed, [rd, cd]] = AXIS_DIMS[axis];
  return suggestions.map((p) => {
    const c = [p.z, p.y, p.x];
    if (p.axis !== axis || c[fixed] !== index) return null;
    const [r0, r1] = patchStart(c[rd], p.size, shape3[rd]), [c0, c1] = patchStart(c[cd], p.size, shape3[cd]);
    return [r0, r1, c0, c1];
  });
}

export function drawSuggestions(ctx, scale, axis, index, shape3, suggestions, selected) {
  const lw = 1.5 / scale;
  suggestionBoxes(axis, index, shape3, suggestions).forEach((b, i) => {
    if (!b) return;
    const [r0, r1, c0, c1] = b, sel = i === selected;
    if (sel) { ctx.fillStyle = "rgba(255,60,255,0.15)"; ctx.fillRect(c0, r0, c1 - c0, r1 - r0); }
    ctx.strokeStyle = "rgba(255,60,255,0.95)";
    ctx.lineWidth = sel ? 3 * lw : lw;
    ctx.setLineDash([6 * lw, 4 * lw]);
    ctx.strokeRect(c0, r0, c1 - c0, r1 - r0);
    ctx.setLineDash([]);
    textLabel(ctx, scale, `?${i + 1}`, c0 + 3 * lw, r1 - 4 / scale, "rgba(255,60,255,1)");
  });
}
