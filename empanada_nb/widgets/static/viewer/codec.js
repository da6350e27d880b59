// Decoding of the slice buffers Python sends (empanada_nb/widgets/viewer.py: encode_labels) and the
// label colour hash (viewer.py: label_color). Pure functions, no DOM.

export const TYPED = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, float32: Float32Array, float64: Float64Array };

export function u8view(b) {
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function typed(dtype, u8) {
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
export function decodeRle(p, u8) {
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

// one part of a message ({dtype, encoding: raw|rle|zlib, nruns}) and its buffer -> a flat typed array
export async function decodePart(p, buf) {
  let u8 = u8view(buf);
  const enc = p.encoding || "raw";
  if (enc === "rle") return decodeRle(p, u8);
  if (enc === "zlib") u8 = await inflate(u8);
  return typed(p.dtype, u8);
}

// colour of a label id: a hash of the id -> hue/saturation/lightness -> packed ABGR (little endian RGBA).
// The same numbers as Python's label_color (viewer.py), which uses colorsys.hls_to_rgb and round():
// the arithmetic below follows colorsys step by step and rounds half to even, so both agree exactly.
const colorCache = new Map();
// unlabelled pixels (sparse labels: the layer dtype's ignore value, layer meta `unlabelled`) are grey, drawn
// hatched by draw.js; Python's UNLABELLED_COLOR
export const UNLABELLED_RGB = [150, 150, 150];
const UNLABELLED_PACKED = ((255 << 24) | (UNLABELLED_RGB[2] << 16) | (UNLABELLED_RGB[1] << 8) | UNLABELLED_RGB[0]) >>> 0;
const roundHalfEven = (v) => { const r = Math.round(v); return v - Math.floor(v) === 0.5 && r % 2 ? r - 1 : r; };
export function labelColor(id, unlabelled) {
  if (unlabelled !== undefined && unlabelled !== null && id === unlabelled) return UNLABELLED_PACKED;
  let c = colorCache.get(id);
  if (c !== undefined) return c;
  let x = (Math.imul((id >>> 0) ^ Math.floor(id / 4294967296), 0x9e3779b1) >>> 0);
  x ^= x >>> 15; x = Math.imul(x, 0x85ebca77) >>> 0; x ^= x >>> 13; x = Math.imul(x, 0xc2b2ae3d) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0; // unsigned, as in Python (a signed x gave half of the ids another hue)
  const hue = (x % 360) / 360, s = 0.6 + ((x >>> 9) % 35) / 100, l = 0.45 + ((x >>> 17) % 20) / 100;
  const m2 = l <= 0.5 ? l * (1 + s) : l + s - l * s, m1 = 2 * l - m2;
  const f = (t) => {
    t %= 1;
    if (t < 0) t += 1; // Python's float modulo
    const v = t < 1 / 6 ? m1 + (m2 - m1) * t * 6 : t < 0.5 ? m2 : t < 2 / 3 ? m1 + (m2 - m1) * (2 / 3 - t) * 6 : m1;
    return roundHalfEven(v * 255);
  };
  c = ((255 << 24) | (f(hue - 1 / 3) << 16) | (f(hue) << 8) | f(hue + 1 / 3)) >>> 0;
  if (colorCache.size > 100000) colorCache.clear();
  colorCache.set(id, c);
  return c;
}

export function cssColor(id, alpha = 1, unlabelled = null) {
  const c = labelColor(id, unlabelled);
  return `rgba(${c & 255},${(c >>> 8) & 255},${(c >>> 16) & 255},${alpha})`;
}
