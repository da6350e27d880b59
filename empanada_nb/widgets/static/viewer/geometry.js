// Slice geometry in the browser: the same axis conventions and patch clamping as empanada_nb/patches.py.

export const AXES = ["xy", "xz", "yz"];
// axis -> [fixed dim, [row dim, col dim]] of a (Z, Y, X) volume
export const AXIS_DIMS = { xy: [0, [1, 2]], xz: [1, [0, 2]], yz: [2, [0, 1]] };
export const AXIS_NAMES = ["z", "y", "x"];

// [start, stop) of a patch of `size` around `c` inside [0, n)  (patches.patch_start)
export function patchStart(c, size, n) {
  const s = Math.min(Math.max(0, c - Math.floor(size / 2)), Math.max(0, n - size));
  return [s, Math.min(n, s + size)];
}

// the centre a pick at `v` gets once its patch is moved inside [0, n)  (patches.make_pick)
export function clampCenter(v, size, n) {
  v = Math.min(Math.max(Math.floor(v), 0), n - 1);
  return n >= size ? patchStart(v, size, n)[0] + Math.floor(size / 2) : Math.floor(n / 2);
}

// [rows, cols] of a slice along `axis` of a volume of shape (Z, Y, X)
export function planeShape(shape3, axis) {
  const [, [r, c]] = AXIS_DIMS[axis];
  return [shape3[r], shape3[c]];
}
