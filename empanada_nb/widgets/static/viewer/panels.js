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
  ["unlabelled", "Mark unlabelled (U): training skips these pixels (sparse labels)", "▩"],
  ["fill", "Fill (F)", "▨"],
  ["picker", "Pick label under cursor (L)", "⊙"],
  ["select", "Select labels for proofreading (S)", "☝"],
  ["marker", "Place split markers (K)", "✚"],
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
    this.suggestList = h("div", { class: "enb-list enb-suggestions" });
    this.nSuggest = h("input", { type: "number", min: "1", value: "8", class: "enb-num enb-n-suggest", title: "How many patches to suggest" });
    const suggest = h("button", { class: "enb-btn", "data-op": "suggest", title: "Suggest patches where the viewer's model is least sure" }, "suggest");
    suggest.addEventListener("click", () => v.send({ type: "suggest", n: parseInt(this.nSuggest.value) || 8 }));
    this.acceptBtn = h("button", { class: "enb-btn", "data-op": "accept-suggestion", title: "Make the selected suggestion a pick" }, "accept");
    this.acceptBtn.addEventListener("click", () => v.send({ type: "accept_suggestion", i: v.selectedSuggestion }));
    this.rejectBtn = h("button", { class: "enb-btn", "data-op": "reject-suggestion", title: "Drop the selected suggestion (not suggested again)" }, "reject");
    this.rejectBtn.addEventListener("click", () => v.send({ type: "reject_suggestion", i: v.selectedSuggestion }));
    this.patchInput = h("input", { type: "number", min: "8", step: "8", class: "enb-num", title: "Patch size" });
    this.patchInput.addEventListener("change", () => v.setTrait("patch_size", Math.max(1, parseInt(this.patchInput.value) || 256)));
    this.nRandom = h("input", { type: "number", min: "1", value: "8", class: "enb-num", title: "How many random patches" });
    const fill = h("button", { class: "enb-btn", title: "Add random patches inside the context regions" }, "random");
    fill.addEventListener("click", () => v.send({ type: "random_picks", n: parseInt(this.nRandom.value) || 1 }));
    const clear = h("button", { class: "enb-btn", title: "Delete all picks" }, "clear");
    clear.addEventListener("click", () => v.send({ type: "clear_picks" }));
    const newLayer = h("button", { class: "enb-btn", title: "Add an empty label layer" }, "+ layer");
    newLayer.addEventListener("click", () => v.send({ type: "new_layer" }));
    this.pointsPath = h("input", { type: "text", class: "enb-text enb-points-path", placeholder: "points .csv" });
    const loadPts = h("button", { class: "enb-btn", title: "Add picks from a points file (axis,index,row,col or napari's points CSV)" }, "load");
    this.fullRes = h("input", { type: "checkbox", class: "enb-full-res", title: "The file's coordinates are on the full-resolution level" });
    loadPts.addEventListener("click", () => v.send({ type: "load_points", path: this.pointsPath.value, full_resolution: this.fullRes.checked }));
    const savePts = h("button", { class: "enb-btn", title: "Save the pick centres to the points file" }, "save");
    savePts.addEventListener("click", () => v.send({ type: "save_points", path: this.pointsPath.value }));
    this.flipbookInput = h("input", { type: "number", min: "0", max: "99", class: "enb-num enb-flipbook", title: "Flipbook: consecutive slices saved per pick (0: off; 5 as empanada-napari)" });
    this.flipbookInput.addEventListener("change", () => v.setTrait("flipbook", Math.max(0, parseInt(this.flipbookInput.value) || 0)));
    this.levelLabel = h("span", { class: "enb-level" });
    this.tilesDir = h("input", { type: "text", class: "enb-text enb-tiles-dir", placeholder: "tiles folder" });
    this.tileSize = h("input", { type: "number", min: "16", value: "512", class: "enb-num enb-tile-size", title: "Tile size (px)" });
    this.tileOverlap = h("input", { type: "number", min: "0", value: "64", class: "enb-num enb-tile-overlap", title: "Overlap between tiles (px)" });
    const mkTiles = h("button", { class: "enb-btn", title: "Cut the image (xy slice) and the active labels into overlapping tiles", "data-op": "create-tiles" }, "create");
    mkTiles.addEventListener("click", () => v.send({ type: "create_tiles", dir: this.tilesDir.value, tile_size: parseInt(this.tileSize.value) || 512, overlap: parseInt(this.tileOverlap.value) || 0 }));
    const mergeTiles = h("button", { class: "enb-btn", title: "Stitch the tiles' labels into a layer 'merged tiles'", "data-op": "merge-tiles" }, "merge");
    mergeTiles.addEventListener("click", () => v.send({ type: "merge_tiles", dir: this.tilesDir.value }));
    this.tilesSection = h("div", { class: "enb-section enb-tiles" },
      h("div", { class: "enb-head" }, "Tiles"),
      h("div", { class: "enb-row" }, this.tilesDir),
      h("div", { class: "enb-row" }, h("label", {}, "size "), this.tileSize, h("label", {}, " overlap "), this.tileOverlap, mkTiles, mergeTiles));
    this.dirInput = h("input", { type: "text", class: "enb-text", placeholder: "dataset folder" });
    this.nameInput = h("input", { type: "text", class: "enb-text", placeholder: "name" });
    const saveBtn = h("button", { class: "enb-btn", title: "Write the picked patches (images + masks)" }, "save patches");
    saveBtn.addEventListener("click", () => v.send({ type: "save_patches", dataset_dir: this.dirInput.value, name: this.nameInput.value }));
    this.confine = h("input", { type: "checkbox", title: "Confine inference and metrics to the regions" });
    this.confine.addEventListener("change", () => v.setTrait("confine_to_regions", this.confine.checked));
    this.proofPanel = h("div", { class: "enb-proof" });
    this.buildProof();
    this.side = h("div", { class: "enb-side" },
      h("div", { class: "enb-section" }, h("div", { class: "enb-head" }, "Layers ", newLayer), this.layersList),
      h("div", { class: "enb-section" },
        h("div", { class: "enb-head" }, "Patches"),
        h("div", { class: "enb-row" }, h("label", {}, "size "), this.patchInput, this.nRandom, fill, clear),
        h("div", { class: "enb-row" }, h("label", {}, "flipbook "), this.flipbookInput, this.levelLabel),
        h("div", { class: "enb-row" }, this.pointsPath, loadPts, savePts, h("label", { title: this.fullRes.title }, this.fullRes, " full res")),
        this.picksList,
        h("div", { class: "enb-row" }, h("label", {}, "suggest "), this.nSuggest, suggest, this.acceptBtn, this.rejectBtn),
        this.suggestList),
      h("div", { class: "enb-section" },
        h("div", { class: "enb-head" }, "Context regions"),
        h("div", { class: "enb-row" }, h("label", {}, this.confine, " confine inference to regions")),
        this.regionsList),
      this.proofPanel,
      this.tilesSection,
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
    this.flipbookInput.value = m.get("flipbook");
    const nl = m.get("n_levels") || 1;
    this.levelLabel.textContent = nl > 1 ? `level ${m.get("level")} of ${nl - 1}` : "";
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
      const depth = v.model.get("flipbook"), fb = depth > 0 && v.model.get("ndim") === 3 ? ` ×${depth}` : "";
      const where = (v.model.get("ndim") === 2 ? `y${p.y} x${p.x}` : `${p.axis} z${p.z} y${p.y} x${p.x}`) + fb;
      return h("div", { class: "enb-item" }, h("span", { class: "enb-name" }, `${i + 1}. ${where} s${p.size}`), go, del);
    }));
  }

  // suggested patches: click one (here or its box) to select it for accept / reject
  renderSuggestions() {
    const v = this.v, items = v.model.get("suggestions") || [];
    this.acceptBtn.disabled = this.rejectBtn.disabled = !items.length;
    this.suggestList.replaceChildren(...items.map((p, i) => {
      const go = h("button", { class: "enb-btn enb-small", title: "Go to" }, "→");
      go.addEventListener("click", () => {
        const c = [p.z, p.y, p.x], [fixed, [rd, cd]] = AXIS_DIMS[p.axis];
        v.selectSuggestion(i);
        v.goto(p.axis, c[fixed], null);
        v.centerOn(c[rd], c[cd]);
      });
      const where = v.model.get("ndim") === 2 ? `y${p.y} x${p.x}` : `${p.axis} z${p.z} y${p.y} x${p.x}`;
      const name = h("span", { class: "enb-name", title: `summed uncertainty ${p.score}` }, `?${i + 1}. ${where} s${p.size}`);
      name.addEventListener("click", () => v.selectSuggestion(i));
      return h("div", { class: "enb-item enb-suggestion" + (i === v.selectedSuggestion ? " enb-item-active" : "") }, name, go);
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

  // the proofreading and label-tools section: built once (inputs keep what the user typed), refreshed by renderProof
  buildProof() {
    const v = this.v;
    const send = (op, extra) => v.send({ type: "proofread", op, selection: v.selection, axis: v.axis, index: v.index, scope: this.proofScope.value, ...extra });
    const btn = (op, title, extra = () => ({})) => {
      const b = h("button", { class: "enb-btn", title, "data-op": op }, op);
      b.addEventListener("click", () => send(op, extra()));
      this.opButtons[op] = b;
      return b;
    };
    this.opButtons = {};
    const num = (title, value, min = "0") => h("input", { type: "number", min, value, class: "enb-num", title });
    this.proofScope = h("select", { class: "enb-scope", title: "Apply to this slice or the whole volume" }, h("option", { value: "slice" }, "slice"), h("option", { value: "volume" }, "volume"));
    this.chips = h("span", { class: "enb-chips" });
    const clearSel = h("button", { class: "enb-btn enb-small", title: "Clear selection" }, "×");
    clearSel.addEventListener("click", () => { v.selection = []; v.setTrait("selection", []); this.renderProof(); });
    this.markerCount = h("span", { class: "enb-marker-count" });
    const clearMarkers = h("button", { class: "enb-btn enb-small", title: "Remove the split markers" }, "×");
    clearMarkers.addEventListener("click", () => v.send({ type: "clear_markers" }));
    this.morphOp = h("select", { class: "enb-morph" }, ...["dilate", "erode", "open", "close", "fill holes"].map((o) => h("option", { value: o }, o)));
    this.radius = num("radius", "1", "1");
    this.holeSize = num("largest hole to fill (pixels/voxels; empty: all)", "");
    this.holeSize.placeholder = "max hole";
    this.minSize = num("minimum size (pixels/voxels)", "64", "1");
    this.border = h("input", { type: "checkbox", class: "enb-border", title: "Also remove labels touching the image border" });
    this.jumpInput = num("Label id to jump to", "", "1");
    this.jumpInput.classList.add("enb-jump");
    const jump = h("button", { class: "enb-btn", title: "Go to the first slice of this label, centred" }, "go");
    jump.addEventListener("click", () => { const id = parseInt(this.jumpInput.value); if (id > 0) v.send({ type: "jump", label: id }); });
    this.classInput = num("Class id (with a label divisor)", "", "1");
    this.classInput.classList.add("enb-class");
    const next = h("button", { class: "enb-btn", title: "Set the paint label to the next free id (of the class, with a divisor)" }, "next id");
    next.addEventListener("click", () => v.send({ type: "new_label", class_id: this.classInput.value === "" ? null : parseInt(this.classInput.value) }));
    this.divisorInput = num("Label divisor (0: ids carry no class)", "0");
    this.divisorInput.classList.add("enb-divisor");
    this.divisorInput.addEventListener("change", () => v.setTrait("label_divisor", Math.max(0, parseInt(this.divisorInput.value) || 0)));
    this.perSlice = h("input", { type: "checkbox", class: "enb-per-slice", title: "One row per class and slice" });
    const count = h("button", { class: "enb-btn", title: "Count objects per class (and slice) with their ids", "data-op": "count" }, "count");
    count.addEventListener("click", () => v.send({ type: "count_labels", per_slice: this.perSlice.checked }));
    this.exportPath = h("input", { type: "text", class: "enb-text enb-export-path", placeholder: "counts.csv or .xlsx" });
    const exp = h("button", { class: "enb-btn", title: "Export the table (CSV, or xlsx with openpyxl)" }, "export");
    exp.addEventListener("click", () => v.send({ type: "export_counts", path: this.exportPath.value }));
    this.countsTable = h("div", { class: "enb-counts" });
    this.rows = {
      merge: h("div", { class: "enb-row" },
        btn("merge", "Merge the selected labels into the first"), btn("split", "Split the selected label at the markers (K), or at distance peaks"),
        btn("delete", "Delete the selected labels"), this.proofScope),
      markers: h("div", { class: "enb-row" }, h("label", {}, "markers (K) "), this.markerCount, clearMarkers),
      morph: h("div", { class: "enb-row" }, this.morphOp, this.radius, this.holeSize,
        btn("morph", "Morphological operation on the selected labels", () => {
          const hs = parseInt(this.holeSize.value);
          return { morph: this.morphOp.value, radius: parseInt(this.radius.value) || 1, ...(hs > 0 ? { max_hole_size: hs } : {}) };
        })),
      filter: h("div", { class: "enb-row" }, h("label", {}, "min size "), this.minSize, h("label", {}, this.border, " border"),
        btn("filter", "Remove labels smaller than min size (and touching the border)", () => ({ min_size: parseInt(this.minSize.value) || 1, remove_border: this.border.checked }))),
    };
    this.proofOps = h("div", { class: "enb-section enb-proof-ops" },
      h("div", { class: "enb-head" }, "Proofreading"),
      h("div", { class: "enb-row" }, h("label", {}, "selected (S tool) "), this.chips, clearSel),
      this.rows.merge, this.rows.markers, this.rows.morph, this.rows.filter);
    this.labelTools = h("div", { class: "enb-section enb-label-tools" },
      h("div", { class: "enb-head" }, "Labels"),
      h("div", { class: "enb-row" }, h("label", {}, "id "), this.jumpInput, jump, h("label", {}, " class "), this.classInput, next),
      h("div", { class: "enb-row" }, h("label", {}, "divisor "), this.divisorInput, count, h("label", {}, this.perSlice, " per slice")),
      h("div", { class: "enb-row" }, this.exportPath, exp),
      this.countsTable);
    this.proofPanel.replaceChildren(this.proofOps, this.labelTools);
  }

  renderProof() {
    const v = this.v, ops = v.model.get("proofreading") || [];
    if (!this.proofOps) this.buildProof();
    this.proofOps.style.display = ops.length ? "" : "none";
    for (const [op, b] of Object.entries(this.opButtons)) b.style.display = ops.includes(op) ? "" : "none";
    this.rows.morph.style.display = ops.includes("morph") ? "" : "none";
    this.rows.filter.style.display = ops.includes("filter") ? "" : "none";
    this.chips.replaceChildren(...v.selection.map((s) => h("span", { class: "enb-chip", style: `background:${cssColor(s.id, 0.8)}` }, String(s.id))));
    const markers = v.model.get("markers") || [];
    this.markerCount.textContent = String(markers.length);
    if (document.activeElement !== this.divisorInput) this.divisorInput.value = v.model.get("label_divisor");
  }

  // the label_counts trait as a table: class, slice, count, ids
  renderCounts() {
    const rows = this.v.model.get("label_counts") || [];
    if (!rows.length) { this.countsTable.replaceChildren(); return; }
    const perSlice = rows.some((r) => r.slice != null);
    const head = h("tr", {}, h("th", {}, "class"), perSlice ? h("th", {}, "slice") : null, h("th", {}, "count"), h("th", {}, "ids"));
    const body = rows.map((r) => {
      const ids = r.ids.length > 40 ? r.ids.slice(0, 40).join(" ") + ` … (+${r.ids.length - 40})` : r.ids.join(" ");
      return h("tr", { "data-class": String(r.class) }, h("td", {}, r.name), perSlice ? h("td", {}, String(r.slice)) : null,
        h("td", { class: "enb-count" }, String(r.count)), h("td", { class: "enb-ids", title: r.ids.join(" ") }, ids));
    });
    this.countsTable.replaceChildren(h("table", { class: "enb-table" }, h("thead", {}, head), h("tbody", {}, ...body)));
  }
}
