// empanada_nb InferencePanel: hand-written ES module for anywidget (inlined by empanada_nb/widgets/_esm.py).
// The form is built from the `form` trait (SegmentOptions.form("widget") in Python: one spec per setting
// with its kind, label, help, modes and group), so it has every setting of the API and nothing else.
// Values go to the `settings` trait; Python checks them and answers with `errors`.

import { debugRegistry, h } from "./dom.js";

const GROUPS = [
  ["run", "Run"],
  ["network", "Network"],
  ["post", "Postprocessing"],
  ["3d", "3D (stack)"],
  ["ortho", "Ortho-plane consensus"],
  ["output", "Output"],
  ["where", "Where"],
];

export class InferenceView {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.disposers = [];
    this.inputs = {};
    this.rows = {};
    this.errorEls = {};
    this.flushers = [];
    this.build();
    const on = (ev, fn) => { model.on(ev, fn); this.disposers.push(() => model.off(ev, fn)); };
    for (const k of ["settings", "errors", "running", "progress", "status", "has_model", "has_viewer", "viewer_ndim",
      "given_model", "models", "model_source"]) on("change:" + k, () => this.update());
    this.update();
    if (model.get("debug")) {
      const reg = debugRegistry();
      reg.inference = (reg.inference || []).concat([this]);
    }
  }

  setSetting(name, value) {
    const s = Object.assign({}, this.model.get("settings") || {});
    s[name] = value;
    this.model.set("settings", s);
    this.model.save_changes();
  }

  // one input for one setting spec; numbers and text sync as you type (debounced)
  input(spec) {
    const k = spec.kind;
    let el;
    if (k === "bool") el = h("input", { type: "checkbox" });
    else if (k === "choice") {
      el = h("select", { class: "enb-i-input" }, ...spec.choices.map((c) => h("option", { value: String(c) }, String(c))));
    } else if (k === "int" || k === "float") {
      el = h("input", { type: "number", class: "enb-i-input", step: k === "int" ? "1" : "any" });
      if (spec.min != null) el.setAttribute("min", String(spec.min));
    } else el = h("input", { type: "text", class: "enb-i-input", placeholder: spec.default == null ? "auto" : "" });
    el.dataset.field = spec.name;
    const read = () => {
      if (k === "bool") return el.checked;
      if (k === "choice") return typeof spec.choices[0] === "number" ? Number(el.value) : el.value;
      if (k === "int" || k === "float") {
        const v = k === "int" ? Number(el.value) : parseFloat(el.value);
        return el.value.trim() !== "" && Number.isFinite(v) ? v : el.value;  // Python names a bad value
      }
      return el.value;  // optional text: "" means the API's automatic value
    };
    let timer = null;
    const commit = () => { timer = null; this.setSetting(spec.name, read()); };
    el.addEventListener(k === "bool" || k === "choice" ? "change" : "input", () => {
      if (timer) clearTimeout(timer);
      if (k === "bool" || k === "choice") commit();
      else timer = setTimeout(commit, 150);
    });
    el.addEventListener("keydown", (e) => e.stopPropagation());
    this.flushers.push(() => { if (timer) { clearTimeout(timer); commit(); } });
    el.write = (v) => {
      if (timer) return;  // an edit waits to be sent: the user's value wins over the older synced one
      if (k === "bool") el.checked = !!v;
      else if (document.activeElement !== el || k === "choice") {
        el.value = v == null ? "" : Array.isArray(v) ? v.join(",") : String(v);
      }
    };
    return el;
  }

  build() {
    const m = this.model;
    this.root = h("div", { class: "enb-inference", "data-lm-suppress-shortcuts": "true" });
    // the model: typed (a path or registered name) unless given in Python
    const dl = h("datalist", { id: "enb-i-models-" + Math.random().toString(36).slice(2) });
    this.modelsList = dl;
    this.modelInput = h("input", { type: "text", class: "enb-i-input", list: dl.id, "data-field": "model_source",
      placeholder: "model path or registered name" });
    this.modelInput.addEventListener("input", () => { m.set("model_source", this.modelInput.value); m.save_changes(); });
    this.modelInput.addEventListener("keydown", (e) => e.stopPropagation());
    this.givenModel = h("span", { class: "enb-i-given" });
    this.errorEls.model_source = h("div", { class: "enb-i-error", "data-error": "model_source" });
    this.errorEls.settings = h("div", { class: "enb-i-error", "data-error": "settings" });
    const modelRow = h("div", { class: "enb-i-field" },
      h("label", { class: "enb-i-row" }, h("span", { class: "enb-i-label" }, "model"), this.modelInput, this.givenModel),
      this.errorEls.model_source, this.errorEls.settings);
    // the settings, grouped
    this.groups = {};
    const sections = [];
    for (const [g, title] of GROUPS) {
      const body = h("div", { class: "enb-i-grid" });
      const sec = h("div", { class: "enb-i-group", "data-group": g }, h("div", { class: "enb-i-gtitle" }, title), body);
      this.groups[g] = { sec, body, specs: [] };
      sections.push(sec);
    }
    for (const spec of m.get("form") || []) {
      const input = this.input(spec);
      const err = h("div", { class: "enb-i-error", "data-error": spec.name });
      const row = h("div", { class: "enb-i-field", "data-row": spec.name, title: spec.help },
        h("label", { class: "enb-i-row" }, h("span", { class: "enb-i-label" }, spec.label), input), err);
      this.inputs[spec.name] = input;
      this.rows[spec.name] = { row, spec };
      this.errorEls[spec.name] = err;
      const grp = this.groups[spec.group] || this.groups.run;
      grp.body.append(row);
      grp.specs.push(spec);
    }
    this.runBtn = h("button", { class: "enb-i-btn enb-i-primary", "data-action": "run" }, "Run");
    this.cancelBtn = h("button", { class: "enb-i-btn", "data-action": "cancel" }, "Cancel");
    // edits still in their debounce go first: the kernel gets the settings before the run message
    this.runBtn.addEventListener("click", () => { for (const f of this.flushers) f(); m.send({ type: "run" }); });
    this.cancelBtn.addEventListener("click", () => m.send({ type: "cancel" }));
    this.barFill = h("div", { class: "enb-i-bar-fill" });
    this.barText = h("div", { class: "enb-i-bar-text" });
    this.status = h("div", { class: "enb-i-status" });
    this.root.append(dl, h("div", { class: "enb-i-head" }, "Inference"), modelRow, ...sections,
      h("div", { class: "enb-i-actions" }, this.runBtn, this.cancelBtn,
        h("div", { class: "enb-i-bar" }, this.barFill, this.barText)), this.status);
    this.el.append(this.root);
  }

  update() {
    const m = this.model, s = m.get("settings") || {}, errs = m.get("errors") || {}, running = m.get("running");
    const mode = s.mode;
    for (const [name, { row, spec }] of Object.entries(this.rows)) {
      this.inputs[name].write(s[name]);
      row.style.display = spec.modes.includes(mode) ? "" : "none";
      row.classList.toggle("enb-i-invalid", !!errs[name]);
      this.inputs[name].disabled = running;
    }
    for (const { sec, specs } of Object.values(this.groups)) {
      sec.style.display = specs.some((sp) => sp.modes.includes(mode)) ? "" : "none";
    }
    for (const [k, el] of Object.entries(this.errorEls)) el.textContent = errs[k] || "";
    const given = m.get("given_model");
    this.modelInput.style.display = given ? "none" : "";
    this.givenModel.textContent = given;
    if (document.activeElement !== this.modelInput) this.modelInput.value = m.get("model_source");
    this.modelsList.replaceChildren(...(m.get("models") || []).map((n) => h("option", { value: n })));
    this.runBtn.disabled = running || Object.keys(errs).length > 0;
    this.runBtn.title = Object.values(errs).join("\n");
    this.cancelBtn.disabled = !running;
    const p = m.get("progress") || {};
    const frac = p.total ? Math.min(1, p.done / p.total) : 0;
    this.barFill.style.width = (100 * frac).toFixed(1) + "%";
    this.barText.textContent = p.stage ? `${p.stage}  ${p.done} / ${p.total}` : running ? "running…" : "";
    this.status.textContent = m.get("status");
    this.root.dataset.running = running ? "1" : "0";
  }

  destroy() {
    for (const d of this.disposers) d();
    const reg = window.__enb;
    if (reg && reg.inference) reg.inference = reg.inference.filter((v) => v !== this);
    this.root.remove();
  }
}

function render({ model, el }) {
  const v = new InferenceView(model, el);
  return () => v.destroy();
}

export default { render };
