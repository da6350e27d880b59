// The browser's slice cache: an LRU map of decoded slices (image + label layers), the requests in flight,
// and the decoding of the "data" and "labels_update" messages into it. No drawing, no DOM.
//
// An entry is {axis, index, level, key, image, labels: Map(uid -> part), bytes}: slice `index` (level 0's
// numbering) at pyramid `level` (its image from that level, its labels level 0's, downsampled); a part is
// {dtype, shape, arr, left, version, empty, stamp}: `left` counts row chunks still to come, `version`
// follows the layer's version in the `layers` trait (-1: stale, re-request when shown), `stamp` changes
// whenever the pixels do (the renderer redraws a label canvas on a new stamp).

import { TYPED, decodePart } from "./codec.js";

const PREFETCH_INFLIGHT = 1;

export function sliceKey(axis, index, level = 0) { return axis + ":" + index + (level ? "@" + level : ""); }

export class SliceCache {
  // send(content): a message to Python; nextId(): a fresh request id; wanted(axis, index): the layers to fetch
  constructor({ send, nextId, wanted }) {
    this.send = send;
    this.nextId = nextId;
    this.wanted = wanted;
    this.entries = new Map(); // key -> entry (Map order = LRU order)
    this.bytes = 0;
    this.inflight = new Map(); // rid -> {key, t}
    this.inflightKeys = new Map(); // key -> {image: bool, layers: Set, n}
    this.priorityRid = null;
    this.wantCurrent = false;
  }

  get(key) { return this.entries.get(key); }
  clear() { this.entries.clear(); this.bytes = 0; }

  touch(key) {
    const e = this.entries.get(key);
    if (e) { this.entries.delete(key); this.entries.set(key, e); }
    return e;
  }
  entry(axis, index, level = 0) {
    const key = sliceKey(axis, index, level);
    let e = this.touch(key);
    if (!e) {
      e = { axis, index, level, key, image: null, labels: new Map(), bytes: 0 };
      this.entries.set(key, e);
    }
    return e;
  }
  // drop least recently used slices until under `budget` bytes (never `keep` or a slice being fetched)
  evict(budget, keep) {
    for (const [k, e] of this.entries) {
      if (this.bytes <= budget) break;
      if (k === keep || this.inflightKeys.has(k)) continue;
      this.bytes -= e.bytes;
      this.entries.delete(k);
    }
  }
  account(e, bytes) { e.bytes += bytes; this.bytes += bytes; }

  // label id at pixel (row, col) of layer `uid` on slice `key`: null when unknown, 0 for an empty slice;
  // `plane`: level 0's slice shape, when the entry holds a coarser level (its pixels cover several)
  labelAt(key, uid, row, col, plane = null) {
    const e = this.entries.get(key);
    const c = e && e.labels.get(uid);
    if (!c || c.left) return null;
    if (!c.arr) return 0;
    const [hh, ww] = c.shape;
    if (plane && (plane[0] !== hh || plane[1] !== ww)) { row = row * hh / plane[0]; col = col * ww / plane[1]; }
    const r = Math.floor(row), cc = Math.floor(col);
    if (r < 0 || cc < 0 || r >= hh || cc >= ww) return null;
    return c.arr[r * ww + cc];
  }

  // --------------------------------------------------------------------------- requests
  // which parts of (axis, index) are missing or stale and not already requested
  missing(axis, index, level = 0) {
    const key = sliceKey(axis, index, level), e = this.entries.get(key), fl = this.inflightKeys.get(key);
    const image = !(e && e.image) && !(fl && fl.image);
    const layers = [];
    for (const l of this.wanted(axis, index)) {
      const c = e && e.labels.get(l.uid);
      if (c && !c.left && c.version >= l.version) continue;
      if (fl && fl.layers.has(l.uid + ":" + l.version)) continue;
      layers.push(l);
    }
    return { image, layers };
  }

  ensure(axis, index, priority, level = 0) {
    const { image, layers } = this.missing(axis, index, level);
    if (!image && !layers.length) return false;
    const busy = this.priorityRid != null && this.inflight.has(this.priorityRid);
    if (priority && busy) {
      // one request for the shown slice at a time: when the slider races ahead, only the latest
      // slice is asked for once the one in flight arrives (no backlog in the kernel)
      this.wantCurrent = true;
      return true;
    }
    if (!priority && (busy || this.inflight.size >= PREFETCH_INFLIGHT)) return true;
    const rid = this.nextId(), key = sliceKey(axis, index, level);
    if (priority) this.priorityRid = rid;
    this.inflight.set(rid, { key, t: performance.now() });
    let fl = this.inflightKeys.get(key);
    if (!fl) { fl = { image: false, layers: new Set(), n: 0 }; this.inflightKeys.set(key, fl); }
    fl.n++;
    if (image) fl.image = true;
    for (const l of layers) fl.layers.add(l.uid + ":" + l.version);
    this.send({ type: "get", rid, axis, index, level, image, layers: layers.map((l) => l.uid) });
    return true;
  }

  // neighbours of `index` along `axis`: `ahead` slices in direction `dir`, half as many behind
  prefetch(axis, index, n, ahead, dir, level = 0) {
    const order = [];
    for (let k = 1; k <= ahead; k++) order.push(index + dir * k);
    for (let k = 1; k <= Math.ceil(ahead / 2); k++) order.push(index - dir * k);
    for (const i of order) {
      if (i < 0 || i >= n) continue;
      if (this.inflight.size >= PREFETCH_INFLIGHT) break;
      this.ensure(axis, i, false, level);
    }
  }

  expireInflight() {
    const now = performance.now();
    for (const [rid, r] of this.inflight) {
      if (now - r.t > 15000) { this.inflight.delete(rid); this.inflightKeys.delete(r.key); }
    }
  }

  // ---------------------------------------------------------------------------- messages
  // "data": row chunks of a slice's image and label layers; returns the round trip in ms when this
  // message completes a request in flight, else null
  async applyData(msg, buffers) {
    const e = this.entry(msg.axis, msg.index, msg.level || 0);
    let bi = 0;
    for (const p of msg.parts) {
      const buf = p.empty ? null : buffers[bi++];
      if (p.kind === "image") {
        if (!e.image || !e.image.left) {
          if (e.image && e.image.arr) this.account(e, -e.image.arr.byteLength);
          e.image = { dtype: p.dtype, shape: p.shape, arr: null, left: p.nchunks };
        }
        const arr = await decodePart(p, buf);
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
        const arr = await decodePart(p, buf);
        if (p.nchunks === 1) c.arr = arr;
        else {
          if (!c.arr) c.arr = new TYPED[p.dtype](p.shape[0] * p.shape[1]);
          c.arr.set(arr, p.row0 * p.shape[1]);
        }
        c.left -= 1;
        if (!c.left) { this.account(e, c.arr.byteLength); c.stamp = Math.random(); }
      }
    }
    let rtt = null;
    if (msg.last) {
      const r = this.inflight.get(msg.rid);
      if (r) {
        rtt = performance.now() - r.t;
        this.inflight.delete(msg.rid);
        const fl = this.inflightKeys.get(r.key);
        if (fl && --fl.n <= 0) this.inflightKeys.delete(r.key);
      }
    }
    return rtt;
  }

  // "labels_update": the pixels an edit changed (a patch or the full slice) at a new layer version
  async applyLabelsUpdate(msg, buffers) {
    const uid = msg.layer, v = msg.version;
    if (msg.noop || msg.stale) {
      if (msg.stale) for (const e of this.entries.values()) { const c = e.labels.get(uid); if (c) c.version = -1; }
      return;
    }
    // slices of the same axis that are not the edited one are unchanged by a slice edit
    for (const e of this.entries.values()) {
      const c = e.labels.get(uid);
      if (!c || c.left) continue;
      if (msg.scope === "slice" && e.axis === msg.axis && e.index !== msg.index && c.version === v - 1) c.version = v;
      // coarser levels of the edited slice hold downsampled labels: stale, re-requested when shown
      else if (e.level && e.axis === msg.axis && e.index === msg.index) c.version = -1;
    }
    const e = this.entry(msg.axis, msg.index);
    const c = e.labels.get(uid);
    if (msg.full) {
      if (c && c.arr && !c.left) this.account(e, -c.arr.byteLength);
      let arr = null;
      if (!msg.empty) arr = await decodePart(msg, buffers[0]);
      e.labels.set(uid, { version: v, dtype: msg.dtype, shape: msg.shape, arr, left: 0, empty: !!msg.empty, stamp: Math.random() });
      if (arr) this.account(e, arr.byteLength);
    } else if (c && !c.left && c.version === v - 1) {
      const patch = await decodePart(msg, buffers[0]);
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
  }
}
