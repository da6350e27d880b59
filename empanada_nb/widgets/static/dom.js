// DOM and timing helpers shared by the Viewer and the TrainingDashboard.

// h("button", { class: "x", title: "...", onclick: fn }, "text", child, ...): an element; `on*` attributes
// become listeners, `true` an empty attribute, `false`/null none
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// fn at most once per `ms` (leading and trailing call); .flush(), .cancel(), .pending()
export function throttle(fn, ms) {
  let last = 0, timer = null, args = null;
  const run = () => { last = performance.now(); timer = null; fn(...args); };
  const t = (...a) => {
    args = a;
    const wait = ms - (performance.now() - last);
    if (wait <= 0 && !timer) run();
    else if (!timer) timer = setTimeout(run, Math.max(0, wait));
  };
  t.flush = () => { if (timer) { clearTimeout(timer); run(); } };
  t.cancel = () => { if (timer) clearTimeout(timer); timer = null; };
  t.pending = () => timer !== null;
  return t;
}

// the page-wide registry of live widgets that tests and benchmarks read (debug mode only)
export function debugRegistry() {
  return (window.__enb = window.__enb || { views: [] });
}
