// The Viewer's controls: the toolbar (axis, tools, brush, label, undo/redo, contrast), the slice bar and
// the side panel (layers, patches, context regions, proofreading, save). They show the model's traits
// and turn clicks into trait changes or messages; the view (viewer.js) owns the state they act on.

import { h } from "../dom.js";
import { cssColor } from "./codec.js";
import { AXES, AXIS_DIMS, AXIS_NAMES } from "./geometry.js";

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

function fmtValue(v) {
  return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
}

export class Panels {
  constructor(view) {
    this.v = view;
    this.buildToolbar();
    this.buildSliceBar();
    this.buildSide();
  }

  buildToolbar() {
    const v = this.v;
    this.axisSel = h("select", { class: "enb-axis", title: "Viewing axis" }, ...AXES.map((a) => h("option", { value: a }, a)));
    this.axisSel.addEventListener("change", () => v.setAxis(this.axisSel.value));
    this.toolButtons = {};
    const tools = h("span", { class: "enb-tools" });
    for (const [name, title, icon] of TOOLS) {
      const b = h("button", { class: "enb-btn enb-tool", title, "data-tool": name }, icon);
      b.addEventListener("click", () => v.setTool(name));
      this.toolButtons[name] = b;
      tools.append(b);
    }
    this.brushInput = h("input", { type: "number", min: "1", max: "500", class: "enb-num", title: "Brush size ([ and ])" });
    this.brushInput.addEventListener("change", () => v.setTrait("brush_size", Math.max(1, parseInt(this.brushInput.value) || 1)));
    this.labelInput = h("input", { type: "number", min: "0", class: "enb-num enb-label-input", title: "Label id to paint" });
    this.labelInput.addEventListener("change", () => v.setTrait("current_label", Math.max(0, parseInt(this.labelInput.value) || 0)));
    this.labelSwatch = h("span", { class: "enb-swatch" });
    const newLabel = h("button", { class: "enb-btn", title: "New label id (M)" }, "new");
    newLabel.addEventListener("click", () => v.send({ type: "new_label" }));
    this.undoBtn = h("button", { class: "enb-btn", title: "Undo (Ctrl+Z)" }, "↶");
    this.undoBtn.addEventListener("click", () => v.send({ type: "undo" }));
    this.redoBtn = h("button", { class: "enb-btn", title: "Redo (Ctrl+Shift+Z)" }, "↷");
    this.redoBtn.addEventListener("click", () => v.send({ type: "redo" }));
    const fit = h("button", { class: "enb-btn", title: "Fit to view (0)" }, "⤢");
    fit.addEventListener("click", () => { v.fit(); v.requestDraw(); });
    this.loInput = h("input", { type: "range", class: "enb-contrast", title: "Contrast minimum", step: "any" });
    this.hiInput = h("input", { type: "range", class: "enb-contrast", title: "Contrast maximum", step: "any" });
    const onContrast = () => {
      let lo = parseFloat(this.loInput.value), hi = parseFloat(this.hiInput.value);
      if (hi <= lo) hi = lo + (v.rangeStep() || 1);
      v.setContrast([lo, hi], true);
    };
    this.loInput.addEventListener("input", onContrast);
    this.hiInput.addEventListener("input", onContrast);
    const auto = h("button", { class: "enb-btn", title: "Auto contrast from this slice (A)" }, "auto");
    this.contrastLabel = h("span", { class: "enb-contrast-label" });
    auto.addEventListener("click", () => v.autoContrast());
    this.toolbar = h("div", { class: "enb-toolbar" },
      this.axisSel, tools,
      h("span", { class: "enb-group" }, h("label", {}, "brush "), this.brushInput),
      h("span", { class: "enb-group" }, h("label", {}, "label "), this.labelSwatch, this.labelInput, newLabel),
      h("span", { class: "enb-group" }, this.undoBtn, this.redoBtn, fit),
      h("span", { class: "enb-group" }, h("label", {}, "contrast "), this.loInput, this.hiInput, this.contrastLabel, auto));
  }

  buildSliceBar() {
    const v = this.v;
    this.slider = h("input", { type: "range", class: "enb-slider", min: "0", step: "1", title: "Slice (← → , . ; Shift = 10)" });
    this.slider.addEventListener("input", (e) => v.goto(v.axis, parseInt(this.slider.value), e));
    this.sliceLabel = h("span", { class: "enb-slice-label" });
    this.sliceBar = h("div", { class: "enb-slicebar" }, this.sliceLabel, this.slider);
  }

  buildSide() {
    const v = this.v;
    this.layersList = h("div", { class: "enb-list" });
    this.picksList = h("div", { class: "enb-list" });
    this.regionsList = h("div", { class: "enb-list" });
    this.patchInput = h("input", { type: "number", min: "8", step: "8", class: "enb-num", title: "Patch size" });
    this.patchInput.addEventListener("change", () => v.setTrait("patch_size", Math.max(1, parseInt(this.patchInput.value) || 256)));
    this.nRandom = h("input", { type: "number", min: "1", value: "8", class: "enb-num", title: "How many random patches" });
    const fill = h("button", { class: "enb-btn", title: "Add random patches inside the context regions" }, "random");
    fill.addEventListener("click", () => v.send({ type: "random_picks", n: parseInt(this.nRandom.value) || 1 }));
    const clear = h("button", { class: "enb-btn", title: "Delete all picks" }, "clear");
    clear.addEventListener("click", () => v.send({ type: "clear_picks" }));
    const newLayer = h("button", { class: "enb-btn", title: "Add an empty label layer" }, "+ layer");
    newLayer.addEventListener("click", () => v.send({ type: "new_layer" }));
    this.dirInput = h("input", { type: "text", class: "enb-text", placeholder: "dataset folder" });
    this.nameInput = h("input", { type: "text", class: "enb-text", placeholder: "name" });
    const saveBtn = h("button", { class: "enb-btn", title: "Write the picked patches (images + masks)" }, "save patches");
    saveBtn.addEventListener("click", () => v.send({ type: "save_patches", dataset_dir: this.dirInput.value, name: this.nameInput.value }));
    this.confine = h("input", { type: "checkbox", title: "Confine inference and metrics to the regions" });
    this.confine.addEventListener("change", () => v.setTrait("confine_to_regions", this.confine.checked));
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
  }

  // ------------------------------------------------------------------------------ toolbar
  updateToolbar() {
    const v = this.v, m = v.model, tool = m.get("tool");
    for (const [n, b] of Object.entries(this.toolButtons)) b.classList.toggle("enb-active", n === tool);
    this.brushInput.value = m.get("brush_size");
    this.labelInput.value = m.get("current_label");
    this.labelSwatch.style.background = m.get("current_label") ? cssColor(m.get("current_label")) : "transparent";
    this.patchInput.value = m.get("patch_size");
    this.undoBtn.disabled = !m.get("can_undo");
    this.redoBtn.disabled = !m.get("can_redo");
    v.overlay.dataset.tool = tool;
    const is2d = m.get("ndim") === 2;
    this.axisSel.style.display = is2d ? "none" : "";
    this.sliceBar.style.display = is2d ? "none" : "";
    this.axisSel.value = v.axis;
  }

  updateContrastInputs() {
    const v = this.v, [a, b] = v.model.get("data_range");
    for (const inp of [this.loInput, this.hiInput]) {
      inp.min = a; inp.max = b; inp.step = v.rangeStep();
    }
    this.showContrast(v.contrast);
  }
  showContrast(c) {
    this.loInput.value = c[0];
    this.hiInput.value = c[1];
    this.contrastLabel.textContent = `${fmtValue(c[0])}–${fmtValue(c[1])}`;
  }

  // slice `index` of `n` along `axis`
  showSlice(axis, index, n) {
    this.slider.max = n - 1;
    this.slider.value = index;
    this.sliceLabel.textContent = `${AXIS_NAMES[AXIS_DIMS[axis][0]]} ${index} / ${n - 1}`;
    this.axisSel.value = axis;
  }

  // --------------------------------------------------------------------------- side panel
  renderLayersList() {
    const v = this.v, active = v.model.get("active_layer");
    this.layersList.replaceChildren(...v.layers().map((l) => {
      const radio = h("input", { type: "radio", name: "enb-active-" + v.model.model_id, title: "Edit this layer", checked: l.uid === active });
      radio.addEventListener("change", () => v.setTrait("active_layer", l.uid));
      const vis = h("input", { type: "checkbox", title: "Show/hide (H)", checked: l.visible });
      vis.addEventListener("change", () => v.send({ type: "layer", layer: l.uid, visible: vis.checked }));
      const op = h("input", { type: "range", min: "0", max: "1", step: "0.05", value: String(l.opacity), class: "enb-opacity", title: "Opacity" });
      op.addEventListener("input", () => { l.opacity = parseFloat(op.value); v.requestDraw(); });
      op.addEventListener("change", () => v.send({ type: "layer", layer: l.uid, opacity: parseFloat(op.value) }));
      return h("div", { class: "enb-item" + (l.uid === active ? " enb-item-active" : "") }, radio, vis,
        h("span", { class: "enb-name", title: l.name }, l.name + (l.plane ? ` (${l.plane[0]} ${l.plane[1]})` : "")), op);
    }));
  }

  renderPicks() {
    const v = this.v, picks = v.model.get("picks") || [];
    this.picksList.replaceChildren(...picks.map((p, i) => {
      const go = h("button", { class: "enb-btn enb-small", title: "Go to" }, "→");
      go.addEventListener("click", () => {
        const c = [p.z, p.y, p.x], [fixed, [rd, cd]] = AXIS_DIMS[p.axis];
        v.goto(p.axis, c[fixed], null);
        v.centerOn(c[rd], c[cd]);
      });
      const del = h("button", { class: "enb-btn enb-small", title: "Delete" }, "×");
      del.addEventListener("click", () => v.send({ type: "delete_pick", i }));
      const where = v.model.get("ndim") === 2 ? `y${p.y} x${p.x}` : `${p.axis} z${p.z} y${p.y} x${p.x}`;
      return h("div", { class: "enb-item" }, h("span", { class: "enb-name" }, `${i + 1}. ${where} s${p.size}`), go, del);
    }));
  }

  renderRegions() {
    const v = this.v, regions = v.model.get("regions") || [];
    this.regionsList.replaceChildren(...regions.map((g, i) => {
      const name = h("input", { type: "text", class: "enb-text enb-region-name", value: g.name, title: "Region name" });
      name.addEventListener("change", () => v.send({ type: "update_region", i, name: name.value }));
      const all = h("input", { type: "checkbox", title: "Extend through all slices", checked: !!g.all_slices });
      all.addEventListener("change", () => v.send({ type: "update_region", i, all_slices: all.checked }));
      const go = h("button", { class: "enb-btn enb-small", title: "Go to" }, "→");
      go.addEventListener("click", () => v.goto(g.axis, g.slice, null));
      const del = h("button", { class: "enb-btn enb-small", title: "Delete" }, "×");
      del.addEventListener("click", () => v.send({ type: "delete_region", i }));
      const where = v.model.get("ndim") === 2 ? g.shape : `${g.shape} ${g.axis} ${g.slice}`;
      return h("div", { class: "enb-item" }, name, h("span", { class: "enb-name" }, where), all, go, del);
    }));
  }

  renderProof() {
    const v = this.v, ops = v.model.get("proofreading") || [];
    if (!ops.length) { this.proofPanel.replaceChildren(); this.proofPanel.className = ""; return; }
    this.proofPanel.className = "enb-section";
    const ids = v.selection.map((s) => s.id);
    const chips = ids.map((id) => h("span", { class: "enb-chip", style: `background:${cssColor(id, 0.8)}` }, String(id)));
    const btn = (op, title, extra = () => ({})) => {
      const b = h("button", { class: "enb-btn", title, "data-op": op }, op);
      b.addEventListener("click", () => v.send({ type: "proofread", op, selection: v.selection, axis: v.axis, index: v.index, ...extra() }));
      return b;
    };
    const morphOp = h("select", { class: "enb-morph" }, ...["dilate", "erode", "open", "close", "fill holes"].map((o) => h("option", { value: o }, o)));
    const radius = h("input", { type: "number", min: "1", value: "1", class: "enb-num", title: "radius" });
    const minSize = h("input", { type: "number", min: "1", value: "64", class: "enb-num", title: "minimum size (pixels/voxels)" });
    const clearSel = h("button", { class: "enb-btn enb-small", title: "Clear selection" }, "×");
    clearSel.addEventListener("click", () => { v.selection = []; v.setTrait("selection", []); this.renderProof(); });
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
