// empanada_nb TrainingDashboard: hand-written ES module for anywidget (no build step; empanada_nb/widgets/_esm.py
// inlines the imported parts).
// The form is traits; training events arrive in throttled "events" messages and the loss plot,
// progress bar and ETA are drawn here.

import { debugRegistry, h } from "./dom.js";

const TERMS = [
  ["loss", "total", "#e8e8e8"],
  ["ce", "CE", "#4e9bff"],
  ["mse", "heatmap MSE", "#ff9f43"],
  ["l1", "offset L1", "#2ed573"],
  ["pointrend_ce", "PointRend CE", "#d980fa"],
];
const METRICS = [
  ["iou", "IoU", "#ffd32a"],
  ["pq", "PQ", "#ff4757"],
  ["f1", "F1", "#1dd1a1"],
];

function fmtTime(s) {
  if (s == null || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return (hh ? hh + ":" + String(mm).padStart(2, "0") : mm) + ":" + String(ss).padStart(2, "0");
}

function niceStep(range, n) {
  const raw = range / Math.max(1, n), p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

function fmtNum(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0);
  return String(+v.toPrecision(3));
}

class Dashboard {
  constructor(model, el, host) {
    this.model = model;
    this.el = el;
    this.steps = { it: [], loss: [], ce: [], mse: [], l1: [], pointrend_ce: [] };
    this.vals = [];
    this.last = null;
    this.previews = 0;
    this.hidden = new Set();
    this.disposers = [];
    this.build();
    this.bind();
    this.embedInference(host);
    this.send({ type: "history" });
    if (model.get("debug")) {
      const reg = debugRegistry();
      reg.dashboards = (reg.dashboards || []).concat([this]);
    }
  }

  send(c) { this.model.send(c); }

  // a form field bound to a trait; text and numbers sync as you type (debounced)
  field(name, type, opts = {}) {
    const m = this.model;
    let input;
    if (type === "select") {
      input = h("select", { class: "enb-d-input", "data-field": name });
      const fill = () => {
        const cur = m.get(name), choices = opts.choices();
        input.replaceChildren(...choices.map((c) => h("option", { value: c }, c === "" ? "(none)" : c)));
        input.value = cur;
      };
      fill();
      this.refills = (this.refills || []).concat([fill]);
    } else if (type === "checkbox") {
      input = h("input", { type: "checkbox", "data-field": name });
    } else if (type === "textarea") {
      input = h("textarea", { class: "enb-d-input enb-d-text", "data-field": name, rows: opts.rows || 2, placeholder: opts.placeholder || "" });
    } else {
      input = h("input", { type, class: "enb-d-input", "data-field": name, step: opts.step || "any", placeholder: opts.placeholder || "" });
      if (opts.list) input.setAttribute("list", opts.list);
    }
    const read = () => {
      if (type === "checkbox") return input.checked;
      if (type === "number") {
        const v = opts.float ? parseFloat(input.value) : parseInt(input.value, 10);
        return Number.isFinite(v) ? v : null;
      }
      return input.value;
    };
    const write = () => {
      const v = m.get(name);
      if (type === "checkbox") input.checked = !!v;
      else if (document.activeElement !== input || type === "select") input.value = v;
    };
    let timer = null;
    const commit = () => {
      timer = null;
      const v = read();
      if (v === null) return;
      m.set(name, v);
      m.save_changes();
    };
    input.addEventListener(type === "checkbox" || type === "select" ? "change" : "input", () => {
      if (timer) clearTimeout(timer);
      if (type === "checkbox" || type === "select") commit();
      else timer = setTimeout(commit, 150);
    });
    input.addEventListener("keydown", (e) => e.stopPropagation());
    const onChange = () => write();
    m.on("change:" + name, onChange);
    this.disposers.push(() => m.off("change:" + name, onChange));
    write();
    const err = h("div", { class: "enb-d-error", "data-error": name });
    const hint = h("div", { class: "enb-d-advice", "data-hint": name });
    this.errorEls = this.errorEls || {};
    this.errorEls[name] = err;
    this.hintEls = this.hintEls || {};
    this.hintEls[name] = hint;
    const row = h("label", { class: "enb-d-row", "data-row": name, title: opts.title || "" },
      h("span", { class: "enb-d-label" }, opts.label || name), input);
    return h("div", { class: "enb-d-field" }, row, err, hint);
  }

  build() {
    const m = this.model, o = () => m.get("options") || {};
    this.root = h("div", { class: "enb-dashboard", "data-lm-suppress-shortcuts": "true" });
    const dl = h("datalist", { id: "enb-models-" + Math.random().toString(36).slice(2) });
    this.modelsList = dl;
    this.f = {
      mode: this.field("mode", "select", { label: "mode", choices: () => ["train", "finetune"] }),
      architecture: this.field("architecture", "select", { label: "architecture", choices: () => o().architectures || [] }),
      encoder: this.field("encoder", "select", { label: "encoder", choices: () => o().encoders || [] }),
      pretrained: this.field("pretrained", "select", { label: "pretrained", choices: () => o().pretrained || [""] }),
      model_source: this.field("model_source", "text", { label: "model", placeholder: "path or registered name", list: dl.id }),
      dataset_dir: this.field("dataset_dir", "text", { label: "dataset folder", placeholder: "folder with <name>/images, <name>/masks" }),
      val_dir: this.field("val_dir", "text", { label: "validation folder", placeholder: "optional" }),
      out: this.field("out", "text", { label: "save model to" }),
      overwrite: this.field("overwrite", "checkbox", { label: "overwrite" }),
      layers: this.field("layers", "select", { label: "finetunable layers", choices: () => o().layers || [] }),
      iterations: this.field("iterations", "number", { label: "iterations", step: "1" }),
      max_minutes: this.field("max_minutes", "number", { label: "time budget (minutes)", float: true,
        title: "train for this many minutes instead of the iterations (0: train for the iterations)" }),
      patch_size: this.field("patch_size", "number", { label: "patch size", step: "16" }),
      batch_size: this.field("batch_size", "number", { label: "batch size", step: "1" }),
      lr: this.field("lr", "number", { label: "learning rate", float: true }),
      classes: this.field("classes", "textarea", { label: "classes", rows: 3, placeholder: "1,mito,thing\n2,er,stuff",
        title: "one class a line: id,name,thing (instances) or id,name,stuff (semantic)" }),
      label_divisor: this.field("label_divisor", "number", { label: "label divisor", step: "1",
        title: "masks hold class*divisor+instance (several classes); 0: masks hold instance ids of one class" }),
      connected_components: this.field("connected_components", "checkbox", { label: "binary masks: connected components" }),
      ignore_unlabelled: this.field("ignore_unlabelled", "checkbox", { label: "sparse labels: skip unlabelled pixels",
        title: "mask pixels holding the ignore value (255 in uint8 masks, 65535 in uint16, 4294967295 in uint32; the Viewer's unlabelled tool) are unlabelled and the loss skips them; untick if 255 marks objects in your masks" }),
      extra_dirs: this.field("extra_dirs", "textarea", { label: "more training folders", placeholder: "one folder a line (optional)" }),
      val_fraction: this.field("val_fraction", "number", { label: "validation fraction", float: true,
        title: "hold out this fraction of the training images when no validation folder is given" }),
      description: this.field("description", "textarea", { label: "model description", placeholder: "data, purpose, links (optional)" }),
    };
    // custom config YAML: the browser reads the chosen file and sends its bytes to Python
    this.configInput = h("input", { type: "file", accept: ".yaml,.yml", "data-field": "config_file", class: "enb-d-input" });
    this.configInput.addEventListener("change", async () => {
      const file = this.configInput.files && this.configInput.files[0];
      if (!file) return;
      const bytes = await file.arrayBuffer();
      this.model.send({ type: "config_upload", name: file.name }, undefined, [bytes]);
      this.configInput.value = "";
    });
    this.configNote = h("div", { class: "enb-d-advice", "data-note": "config" });
    this.f.config = h("div", { class: "enb-d-field" },
      h("label", { class: "enb-d-row", "data-row": "config", title: "a TrainConfig YAML, or empanada's custom_training.yaml / custom_finetuning.yaml" },
        h("span", { class: "enb-d-label" }, "custom config"), this.configInput), this.configNote);
    this.givenModel = h("div", { class: "enb-d-given" });
    this.startBtn = h("button", { class: "enb-d-btn enb-d-primary", "data-action": "start" }, "Start");
    this.stopBtn = h("button", { class: "enb-d-btn", "data-action": "stop" }, "Stop");
    this.startBtn.addEventListener("click", () => this.send({ type: "start" }));
    this.stopBtn.addEventListener("click", () => this.send({ type: "stop" }));
    this.status = h("div", { class: "enb-d-status" });
    this.bar = h("div", { class: "enb-d-bar-fill" });
    this.barText = h("div", { class: "enb-d-bar-text" });
    const bar = h("div", { class: "enb-d-bar" }, this.bar, this.barText);
    // plot
    this.canvas = h("canvas", { class: "enb-d-plot" });
    this.ctx = this.canvas.getContext("2d");
    this.logToggle = h("input", { type: "checkbox", checked: true });
    this.logToggle.addEventListener("change", () => this.requestDraw());
    this.smooth = h("input", { type: "range", min: "0", max: "0.99", step: "0.01", value: "0.9", class: "enb-d-smooth" });
    this.smooth.addEventListener("input", () => this.requestDraw());
    this.legend = h("div", { class: "enb-d-legend" });
    const plotBar = h("div", { class: "enb-d-row2" },
      h("label", {}, this.logToggle, " log scale"), h("label", {}, "smoothing ", this.smooth), this.legend);
    // preview + inference
    const preview = h("div", { class: "enb-d-row2" }, this.field("preview", "checkbox", { label: "live preview" }),
      this.field("preview_every", "number", { label: "every (iterations)", step: "1" }));
    // the InferencePanel widget (its own model, the `inference` trait) is rendered here by embedInference
    this.inferPanel = h("div", { class: "enb-d-inference" });
    this.previewPanel = h("div", { class: "enb-d-section" }, h("div", { class: "enb-d-head" }, "Live preview"), preview);
    const F = this.f;
    const form = h("div", { class: "enb-d-form" }, F.mode, F.config, F.architecture, F.encoder, F.pretrained, F.model_source, this.givenModel,
      F.dataset_dir, F.extra_dirs, F.val_dir, F.val_fraction, F.classes, F.label_divisor, F.connected_components,
      F.ignore_unlabelled, F.out, F.overwrite, F.layers, F.iterations, F.max_minutes, F.patch_size, F.batch_size, F.lr, F.description);
    // runs beside the output (checkpoints of runs whose kernel died, or stopped): Resume
    this.runsList = h("div", { class: "enb-d-runs" });
    const refresh = h("button", { class: "enb-d-btn", "data-action": "list_checkpoints", title: "look for checkpoints beside the output again" }, "↻");
    refresh.addEventListener("click", () => this.send({ type: "list_checkpoints" }));
    this.runsPanel = h("div", { class: "enb-d-runs-panel" },
      h("div", { class: "enb-d-row2" }, h("span", { class: "enb-d-head" }, "Runs beside the output"), refresh), this.runsList);
    this.root.append(
      dl,
      h("div", { class: "enb-d-grid" },
        h("div", { class: "enb-d-section enb-d-left" }, h("div", { class: "enb-d-head" }, "Training"), form,
          h("div", { class: "enb-d-row2" }, this.startBtn, this.stopBtn), this.runsPanel),
        h("div", { class: "enb-d-right" },
          h("div", { class: "enb-d-section" }, bar, this.status, this.canvas, plotBar),
          this.previewPanel, this.inferPanel)));
    this.el.append(this.root);
    this.ro = new ResizeObserver(() => this.requestDraw());
    this.ro.observe(this.canvas);
    this.disposers.push(() => this.ro.disconnect());
  }

  bind() {
    const m = this.model;
    const on = (ev, fn) => { m.on(ev, fn); this.disposers.push(() => m.off(ev, fn)); };
    on("msg:custom", (msg) => { if (msg.type === "events") this.onEvents(msg); });
    on("change:checkpoints", () => this.renderRuns());
    this.renderRuns();
    for (const k of ["errors", "hints", "config_note", "running", "status", "mode", "has_viewer", "has_model", "given_model", "options"]) {
      on("change:" + k, () => this.update());
    }
    this.update();
  }

  update() {
    const m = this.model, errs = m.get("errors") || {}, running = m.get("running"), mode = m.get("mode");
    const hints = m.get("hints") || {};
    for (const [k, el] of Object.entries(this.errorEls)) el.textContent = errs[k] || "";
    for (const [k, el] of Object.entries(this.hintEls)) el.textContent = errs[k] ? "" : hints[k] || "";
    this.configNote.textContent = m.get("config_note") || "";
    for (const [k, el] of Object.entries(this.f)) el.classList.toggle("enb-d-invalid", !!errs[k]);
    const show = (el, on) => { el.style.display = on ? "" : "none"; };
    const given = m.get("given_model");
    show(this.f.architecture, mode === "train");
    show(this.f.encoder, mode === "train");
    show(this.f.pretrained, mode === "train");
    show(this.f.model_source, mode === "finetune" && !given);
    show(this.givenModel, mode === "finetune" && !!given);
    this.givenModel.textContent = given ? "model: " + given : "";
    this.startBtn.disabled = running || Object.keys(errs).length > 0;
    this.startBtn.title = Object.values(errs).join("\n");
    this.stopBtn.disabled = !running;
    this.status.textContent = m.get("status");
    const hv = m.get("has_viewer");
    show(this.inferPanel, hv);
    show(this.previewPanel, hv);
    for (const fill of this.refills || []) fill();
    this.modelsList.replaceChildren(...((m.get("options") || {}).models || []).map((n) => h("option", { value: n })));
    this.root.dataset.running = running ? "1" : "0";
    if (this.runsList) this.renderRuns();
  }

  // one row per checkpoint beside the output: name, iteration of iterations, when; Resume when unfinished
  renderRuns() {
    const runs = this.model.get("checkpoints") || [], running = this.model.get("running");
    this.runsList.replaceChildren(...runs.map((c) => {
      if (c.error) return h("div", { class: "enb-d-run enb-d-hint", "data-run": c.name }, c.name + ": unreadable (" + c.error + ")");
      const when = (c.modified || "").replace("T", " ").slice(0, 16);
      const btn = h("button", { class: "enb-d-btn", "data-action": "resume", title: "continue this run: " + c.path }, "Resume");
      btn.disabled = running || c.finished;
      btn.addEventListener("click", () => this.send({ type: "resume", path: c.path }));
      const text = c.name + " · " + c.mode + " · iteration " + c.iteration + " of " + c.iterations + (c.finished ? " (finished)" : "") + " · " + when;
      return h("div", { class: "enb-d-run enb-d-row2", "data-run": c.name }, h("span", { class: "enb-d-run-text" }, text), btn);
    }));
    if (!runs.length) this.runsList.append(h("div", { class: "enb-d-hint" }, "no checkpoints beside the output"));
  }

  // render the dashboard's InferencePanel inside it (anywidget >= 0.11 passes `host`; else display it alone)
  async embedInference(host) {
    const ref = this.model.get("inference");
    if (!ref) return;
    if (!host || !host.getWidget) {
      this.inferPanel.append(h("div", { class: "enb-d-hint" }, "display dashboard.inference to run inference"));
      return;
    }
    try {
      // the trait holds ipywidgets' "IPY_MODEL_<id>"; anywidget's host names widgets "anywidget:<id>"
      const child = await host.getWidget(ref.replace(/^IPY_MODEL_/, "anywidget:"));
      await child.render({ el: this.inferPanel });
    } catch (e) {
      this.inferPanel.append(h("div", { class: "enb-d-hint" }, "inference panel: " + e));
    }
  }

  onEvents(msg) {
    if (msg.reset) {
      for (const k of Object.keys(this.steps)) this.steps[k] = [];
      this.vals = [];
      this.last = null;
      this.end = null;
    }
    for (const e of msg.events) {
      if (e.type === "step") {
        const s = this.steps;
        s.it.push(e.iteration);
        s.loss.push(e.loss);
        for (const k of ["ce", "mse", "l1", "pointrend_ce"]) s[k].push(e.terms && e.terms[k] != null ? e.terms[k] : null);
        this.last = e;
      } else if (e.type === "validation") this.vals.push(e);
      else if (e.type === "end") this.end = e;
      else if (e.type === "preview") this.previews++;
    }
    this.updateProgress();
    this.requestDraw();
  }

  updateProgress() {
    const e = this.last;
    if (!e) { this.bar.style.width = "0%"; this.barText.textContent = "not started"; return; }
    const frac = Math.min(1, e.iteration / Math.max(1, e.iterations));
    this.bar.style.width = (100 * frac).toFixed(1) + "%";
    const eta = this.end ? 0 : e.eta;
    this.barText.textContent = `iteration ${e.iteration} / ${e.iterations}  ·  ${(e.images_per_s || 0).toFixed(1)} img/s  ·  ` +
      `elapsed ${fmtTime(e.elapsed)}  ·  ETA ${this.end ? "done" : fmtTime(eta)}`;
    this.root.dataset.iteration = e.iteration;
  }

  requestDraw() {
    if (this.queued) return;
    this.queued = requestAnimationFrame(() => { this.queued = 0; this.draw(); });
  }

  smoothed(ys) {
    const a = parseFloat(this.smooth.value), out = new Array(ys.length);
    let ema = 0, w = 0;
    for (let i = 0; i < ys.length; i++) {
      const y = ys[i];
      if (y == null || !isFinite(y)) { out[i] = null; continue; }
      ema = a * ema + (1 - a) * y;
      w = a * w + (1 - a);
      out[i] = ema / w;
    }
    return out;
  }

  draw() {
    const cv = this.canvas, dpr = window.devicePixelRatio || 1;
    const W = Math.max(100, Math.round(cv.clientWidth * dpr)), H = Math.max(80, Math.round(cv.clientHeight * dpr));
    if (cv.width !== W || cv.height !== H) { cv.width = W; cv.height = H; }
    const ctx = this.ctx, s = this.steps, log = this.logToggle.checked;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#17191d";
    ctx.fillRect(0, 0, W, H);
    ctx.scale(dpr, dpr);
    const w = W / dpr, hgt = H / dpr, L = 48, R = 36, T = 10, B = 22;
    const pw = w - L - R, ph = hgt - T - B;
    const series = TERMS.filter(([k]) => !this.hidden.has(k) && s[k].some((v) => v != null));
    // legend
    this.renderLegend();
    if (!s.it.length) {
      ctx.fillStyle = "#888";
      ctx.font = "12px sans-serif";
      ctx.fillText("the loss appears here once training starts", L + 10, T + ph / 2);
      this.drawn = 0;
      return;
    }
    const xmax = Math.max(this.last ? this.last.iterations : 1, 1), xmin = 0;
    let ymin = Infinity, ymax = -Infinity;
    for (const [k] of series) for (const v of s[k]) if (v != null && (!log || v > 0)) { ymin = Math.min(ymin, v); ymax = Math.max(ymax, v); }
    if (!isFinite(ymin)) { ymin = log ? 1e-3 : 0; ymax = 1; }
    const f = log ? (v) => Math.log10(v) : (v) => v;
    let y0 = f(ymin), y1 = f(ymax);
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.05;
    y0 -= pad; y1 += pad;
    if (!log) y0 = Math.min(y0, 0);
    const X = (x) => L + ((x - xmin) / (xmax - xmin)) * pw;
    const Y = (v) => T + ph - ((f(v) - y0) / (y1 - y0)) * ph;
    // grid and axes
    ctx.strokeStyle = "#2c3038";
    ctx.fillStyle = "#9aa0a6";
    ctx.font = "10px sans-serif";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    if (log) {
      for (let d = Math.floor(y0); d <= Math.ceil(y1); d++) {
        if (d < y0 || d > y1) continue;
        const yy = T + ph - ((d - y0) / (y1 - y0)) * ph;
        ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(L + pw, yy); ctx.stroke();
        ctx.fillText(fmtNum(Math.pow(10, d)), L - 4, yy + 3);
      }
    } else {
      const st = niceStep(y1 - y0, 5);
      for (let v = Math.ceil(y0 / st) * st; v <= y1; v += st) {
        const yy = Y(v);
        ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(L + pw, yy); ctx.stroke();
        ctx.fillText(fmtNum(v), L - 4, yy + 3);
      }
    }
    ctx.textAlign = "center";
    const xs = Math.max(1, niceStep(xmax - xmin, 6));
    for (let x = 0; x <= xmax; x += xs) {
      ctx.fillText(String(Math.round(x)), X(x), T + ph + 14);
    }
    ctx.textAlign = "left";
    ctx.fillText("1.0", L + pw + 4, T + 8);
    ctx.fillText("0", L + pw + 4, T + ph);
    ctx.strokeStyle = "#555";
    ctx.strokeRect(L, T, pw, ph);
    // raw points, then smoothed lines
    ctx.save();
    ctx.beginPath(); ctx.rect(L, T, pw, ph); ctx.clip();
    const n = s.it.length, stride = Math.max(1, Math.floor(n / 3000));
    for (const [k, , color] of series) {
      ctx.fillStyle = color;
      ctx.globalAlpha = 0.35;
      for (let i = 0; i < n; i += stride) {
        const v = s[k][i];
        if (v == null || (log && v <= 0)) continue;
        ctx.fillRect(X(s.it[i]) - 1.25, Y(v) - 1.25, 2.5, 2.5);
      }
      ctx.globalAlpha = 1;
      const sm = this.smoothed(s[k]);
      ctx.strokeStyle = color;
      ctx.lineWidth = k === "loss" ? 2 : 1.4;
      ctx.beginPath();
      let started = false;
      for (let i = 0; i < n; i++) {
        const v = sm[i];
        if (v == null || (log && v <= 0)) { started = false; continue; }
        const px = X(s.it[i]), py = Y(v);
        if (!started) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
      }
      ctx.stroke();
    }
    // validation metrics on the right axis (0..1)
    const YV = (v) => T + ph - v * ph;
    for (const [k, , color] of METRICS) {
      if (this.hidden.has(k)) continue;
      ctx.fillStyle = color;
      ctx.strokeStyle = color;
      let prev = null;
      for (const e of this.vals) {
        if (e[k] == null) continue;
        const px = X(e.iteration), py = YV(e[k]);
        ctx.beginPath(); ctx.arc(px, py, 3.5, 0, 2 * Math.PI); ctx.fill();
        if (prev) { ctx.globalAlpha = 0.5; ctx.beginPath(); ctx.moveTo(prev[0], prev[1]); ctx.lineTo(px, py); ctx.stroke(); ctx.globalAlpha = 1; }
        prev = [px, py];
      }
    }
    ctx.restore();
    this.drawn = n;
    this.root.dataset.points = String(n);
  }

  renderLegend() {
    const have = (k) => (this.steps[k] || []).some((v) => v != null) || this.vals.some((e) => e[k] != null);
    const items = [...TERMS, ...METRICS].filter(([k]) => have(k));
    const key = items.map(([k]) => k + (this.hidden.has(k) ? "-" : "+")).join(",");
    if (key === this.legendKey) return;
    this.legendKey = key;
    this.legend.replaceChildren(...items.map(([k, label, color]) => {
      const it = h("span", { class: "enb-d-key" + (this.hidden.has(k) ? " enb-d-off" : ""), title: "show/hide" },
        h("span", { class: "enb-d-swatch", style: `background:${color}` }), label);
      it.addEventListener("click", () => { this.hidden.has(k) ? this.hidden.delete(k) : this.hidden.add(k); this.requestDraw(); });
      return it;
    }));
  }

  destroy() {
    for (const d of this.disposers) d();
    const reg = window.__enb;
    if (reg && reg.dashboards) reg.dashboards = reg.dashboards.filter((d) => d !== this);
    this.root.remove();
  }
}

function render({ model, el, host }) {
  const d = new Dashboard(model, el, host);
  return () => d.destroy();
}

export default { render };
