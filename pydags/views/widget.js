// The live view of a pipeline run (anywidget). The kernel pushes plain state: the DAG as
// SVG once, then stage states, timeline bars and the run's clock. Everything here works
// while the kernel is busy: the clock ticks, stages recolour, a click opens the inspector,
// zoom, pan, search and the minimap need nothing from the kernel. Pushes only change
// attributes of the SVG; it is never rebuilt, so a click always lands on the stage under
// the pointer. Run / Cancel / re-run messages go to the kernel, handled once it is free.

const DASH = { solid: "", dashed: "5,3", dotted: "1.5,2.5" };
const SVG = "http://www.w3.org/2000/svg";
const STATUS = { p: "pending", q: "queued", r: "running", y: "retrying", d: "done",
                 c: "cached", f: "failed", s: "skipped", x: "cancelled" };
const ROW = 18; // px per item in a map's item list
const LABEL_PX = 8.5 * 4 / 3; // a label's height at zoom 1: 8.5 pt
const READABLE = 11 / LABEL_PX; // the least zoom at which labels are 11 px high
const FOLLOW_SECONDS = 3; // an automatic pick of a running stage stays at least this long
const FINISHED = new Set(["done", "cached", "failed", "skipped", "cancelled"]);
// what the user chose in a view (zoom, scroll, tab, stage), by the view's id: kept when the
// view is drawn again, and when a run's view becomes its final form (pydags.views.static)
const memory = (globalThis.pydagsViews ??= new Map());

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function seconds(s) {
  if (s == null || !isFinite(s)) return "";
  const m = Math.floor(s / 60);
  const rest = (s - 60 * m).toFixed(1).padStart(4, "0");
  return `${String(m).padStart(2, "0")}:${rest}`;
}

function hue(name, nth = 0) { // a stable colour per stage for the timeline's bars, a map's
  let h = 0; //                     batches in turn lighter and darker
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 55%, ${nth % 2 ? 80 : 68}%)`;
}

function copyButton(text) {
  const button = el("button", { class: "pydags-button pydags-copy", title: "Copy" }, "Copy");
  button.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(text); } catch {
      const area = el("textarea"); area.value = text; document.body.append(area);
      area.select(); document.execCommand("copy"); area.remove();
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1200);
  });
  return button;
}

function render({ model, el: root }) {
  const kept = memory.get(model.get("view")) || { zoom: null, left: 0, top: 0, chosen: null,
                                                 userChose: false, tab: "dag", follow: true };
  memory.set(model.get("view"), kept);
  root.classList.add("pydags-view");

  // --- the parts of the view ---------------------------------------------------------
  const title = el("span", { class: "pydags-title" });
  const counts = el("span", { class: "pydags-counts" });
  const pace = el("span", { class: "pydags-pace" });
  const clock = el("span", { class: "pydags-clock" });
  const buttons = {};
  for (const [name, label] of [["run", "Run all"], ["run_stale", "Run stale"],
                               ["cancel", "Cancel"]]) {
    buttons[name] = el("button", { class: `pydags-button pydags-${name}` }, label);
  }
  const header = el("div", { class: "pydags-header" }, title, counts, pace, clock,
                    el("span", { class: "pydags-actions" }, ...Object.values(buttons)));
  const hint = el("div", { class: "pydags-hint" });
  const bar = el("div", { class: "pydags-progress" });
  const tabs = { dag: el("button", { class: "pydags-tab" }, "DAG"),
                 timeline: el("button", { class: "pydags-tab" }, "Timeline") };
  const search = el("input", { class: "pydags-search", type: "search",
                               placeholder: "Find a stage…", "aria-label": "Find a stage" });
  const names = el("datalist", { id: `pydags-names-${Math.random().toString(36).slice(2)}` });
  search.setAttribute("list", names.id);
  const follow = el("input", { type: "checkbox", class: "pydags-follow-box" });
  const followLabel = el("label", { class: "pydags-follow",
                                    title: "Keep the running stages in sight" },
                         follow, " Follow running");
  const zoomButtons = {};
  for (const [name, label, tip] of [["zoom_out", "−", "Zoom out"], ["fit", "Fit", "Fit"],
                                    ["zoom_in", "+", "Zoom in"]]) {
    zoomButtons[name] = el("button", { class: `pydags-button pydags-${name}`, title: tip },
                           label);
  }
  const tools = el("div", { class: "pydags-tools" }, tabs.dag, tabs.timeline, search, names,
                   followLabel, ...Object.values(zoomButtons));
  const viewport = el("div", { class: "pydags-dag", tabindex: "0",
                               "aria-label": "The pipeline's DAG: arrows move between " +
                                 "stages, Enter inspects, Ctrl + wheel zooms" });
  const canvas = el("div", { class: "pydags-canvas" });
  viewport.append(canvas);
  const minimap = el("canvas", { class: "pydags-minimap", width: 180, height: 100 });
  const timeline = el("div", { class: "pydags-timeline" });
  const pane = el("div", { class: "pydags-pane" }, viewport, minimap, timeline);
  const inspector = el("div", { class: "pydags-inspector", "aria-live": "polite" });
  root.append(header, hint, bar, tools, el("div", { class: "pydags-body" }, pane, inspector));

  let zoom = 1, offset = 0, svgRoot = null, natural = null, placed = false;
  let autoPicked = 0; // when the inspector last picked a stage by itself
  const boxes = new Map(); // stage name -> {group, shape, label, glyph, note, box}

  const stages = () => model.get("stages");
  const now = () => Date.now() / 1000 - offset;
  const elapsed = (s) => (s.start == null ? null : Math.max(0, (s.end ?? now()) - s.start));

  // --- the DAG: drawn once, recoloured by attributes ------------------------------------
  function drawDag() {
    canvas.innerHTML = model.get("svg");
    boxes.clear();
    svgRoot = canvas.querySelector("svg");
    names.replaceChildren();
    if (!svgRoot) return;
    svgRoot.style.overflow = "visible"; // a map's count sits under its box
    const view = svgRoot.viewBox.baseVal;
    natural = { width: view.width, height: view.height };
    for (const group of svgRoot.querySelectorAll('g[id^="pydags-stage:"]')) {
      const name = group.id.slice("pydags-stage:".length);
      const find = (kind) => svgRoot.getElementById(`pydags-${kind}:${name}`)?.querySelector("text");
      const note = svgEl("text", { class: "pydags-note" });
      group.parentNode.append(note);
      group.setAttribute("tabindex", "0");
      group.setAttribute("role", "button");
      group.addEventListener("focus", () => { focused = name; });
      const shape = group.querySelector("path");
      boxes.set(name, { group, shape, label: find("label"), glyph: find("glyph") || glyphOf(shape, note), note });
      names.append(el("option", { value: name }));
    }
    placed = false;
    applyZoom(kept.zoom ?? 1);
    recolour();
    requestAnimationFrame(firstView);
  }

  function glyphOf(shape, note) { // the status glyph at the box's left, made here
    const glyph = svgEl("text", { class: "pydags-glyph" });
    note.before(glyph);
    return glyph;
  }

  function boxOf(name) { // a box in SVG units, measured once the view is on the page
    const parts = boxes.get(name);
    if (!parts.box || !parts.box.width) parts.box = parts.shape.getBBox();
    return parts.box;
  }

  function scale() { return svgRoot ? svgRoot.clientWidth / natural.width || zoom * 4 / 3 : 1; }

  function applyZoom(z) {
    if (!svgRoot) return;
    zoom = Math.min(4, Math.max(0.05, z));
    svgRoot.setAttribute("width", `${natural.width * zoom}pt`);
    svgRoot.setAttribute("height", `${natural.height * zoom}pt`);
    // as styles too: a page's own rules (an HTML output's "svg { height: auto }") lose
    svgRoot.style.width = `${natural.width * zoom}pt`;
    svgRoot.style.height = `${natural.height * zoom}pt`;
    svgRoot.style.maxWidth = "none";
    kept.zoom = zoom;
    drawMinimap();
  }

  function zoomAbout(z, clientX, clientY) {
    const rect = viewport.getBoundingClientRect();
    const x = (clientX ?? rect.left + rect.width / 2) - rect.left;
    const y = (clientY ?? rect.top + rect.height / 2) - rect.top;
    const before = zoom;
    const px = viewport.scrollLeft + x, py = viewport.scrollTop + y;
    applyZoom(z);
    viewport.scrollLeft = px * zoom / before - x;
    viewport.scrollTop = py * zoom / before - y;
  }

  function fitZoom() { return (viewport.clientWidth - 12) / (natural.width * 4 / 3); }

  function firstView() {
    // Fitted to the cell's width while labels stay readable, else at a readable zoom
    // scrolled to where the work is; a view drawn again keeps what the user had.
    if (placed || !svgRoot) return;
    if (!viewport.clientWidth) { requestAnimationFrame(firstView); return; }
    placed = true;
    if (kept.zoom != null && kept.restored) {
      viewport.scrollLeft = kept.left; viewport.scrollTop = kept.top;
    } else {
      applyZoom(Math.min(1, Math.max(READABLE, fitZoom())));
      const focus = workFocus();
      if (focus) centreOn(focus, "auto"); else viewport.scrollTo(0, 0);
    }
    kept.restored = true;
    drawMinimap();
  }

  function workFocus() {
    const all = stages();
    const order = [...boxes.keys()];
    return order.find((n) => all[n]?.status === "running") ||
           order.find((n) => all[n]?.status === "failed") ||
           order.find((n) => !(model.get("parents")[n] || []).length);
  }

  function visible(name) {
    const b = boxOf(name), s = scale();
    return b.x * s >= viewport.scrollLeft && (b.x + b.width) * s <= viewport.scrollLeft + viewport.clientWidth &&
           b.y * s >= viewport.scrollTop && (b.y + b.height) * s <= viewport.scrollTop + viewport.clientHeight;
  }

  function centreOn(name, behavior = "smooth") {
    if (!boxes.has(name)) return;
    const b = boxOf(name), s = scale();
    viewport.scrollTo({ left: (b.x + b.width / 2) * s - viewport.clientWidth / 2,
                        top: (b.y + b.height / 2) * s - viewport.clientHeight / 2, behavior });
  }

  function recolour() {
    const looks = model.get("looks");
    const all = stages();
    for (const [name, parts] of boxes) {
      const stage = all[name] || { status: "pending" };
      const look = looks[stage.status] || looks.pending;
      if (parts.group.dataset.status !== stage.status) {
        parts.shape.style.fill = look.fill;
        parts.shape.style.stroke = look.edge;
        parts.shape.style.strokeDasharray = DASH[look.dash] || "";
        if (parts.label) parts.label.style.fill = look.text;
        if (parts.glyph) { parts.glyph.textContent = look.glyph; parts.glyph.style.fill = look.text; }
        parts.note.style.fill = look.text;
        parts.group.dataset.status = stage.status;
      }
      note(name, parts, stage);
      parts.group.setAttribute("aria-label", `${name}: ${stage.status}`);
      tooltip(parts, [name, `${look.glyph} ${stage.status}`, noteOf(name, stage), why(name),
                      stage.cache].filter((line) => line).join("\n"));
      itemBar(name, parts, looks, stage);
    }
    drawMinimap();
  }

  function note(name, parts, stage) {
    if (!parts.note.dataset.placed) {
      const box = parts.shape.getBBox();
      if (!box.width) return;
      parts.note.setAttribute("x", box.x + box.width - 4);
      parts.note.setAttribute("y", box.y + box.height - 3);
      parts.note.dataset.placed = "1";
      if (parts.glyph?.classList.contains("pydags-glyph")) {
        parts.glyph.setAttribute("x", box.x + 7.2);
        parts.glyph.setAttribute("y", box.y + box.height / 2);
      }
    }
    const text = noteOf(name, stage);
    if (parts.note.textContent !== text) parts.note.textContent = text;
  }

  function tooltip(parts, text) { // the browser's own tooltip: name, status, time, why
    if (!parts.tip) { parts.tip = svgEl("title"); parts.group.prepend(parts.tip); }
    if (parts.tip.textContent !== text) parts.tip.textContent = text;
  }

  function noteOf(name, stage) {
    const time = elapsed(stage);
    const text = time == null ? "" : `${time.toFixed(1)}s`;
    const info = model.get("items")[name];
    if (!info) return text;
    const t = info.tally;
    const ran = (t.done || 0) + (t.cached || 0);
    const extra = [t.failed ? `${t.failed} failed` : "", t.skipped ? `${t.skipped} skipped` : ""]
      .filter((x) => x).join(" · ");
    return `${ran}/${info.count} items` + (extra ? ` · ${extra}` : "") + (text ? ` · ${text}` : "");
  }

  function itemBar(name, parts, looks, stage) {
    // A mapped stage: a bar under its box, split into its items' statuses; items that
    // will not run (the stage was skipped or cancelled) show as such, never as done.
    const info = model.get("items")[name];
    if (!info || !info.count) return;
    const box = parts.shape.getBBox();
    if (!box.width) return;
    if (!parts.items) {
      parts.items = svgEl("g", { class: "pydags-item-bar" });
      parts.group.parentNode.append(parts.items);
    }
    const y = box.y + box.height + 2;
    parts.note.setAttribute("x", box.x);
    parts.note.setAttribute("y", y + 15);
    parts.note.classList.add("pydags-note-below");
    parts.note.style.fill = "";
    const segments = [svgEl("rect", { x: box.x, y, width: box.width, height: 5, rx: 1,
                                      style: `fill:${looks.pending.fill};stroke:${looks.pending.edge};stroke-width:0.5` })];
    const tally = { ...info.tally };
    const unrun = tally.pending || 0;
    if (unrun && (stage.status === "skipped" || stage.status === "cancelled")) {
      tally[stage.status] = (tally[stage.status] || 0) + unrun;
    }
    let x = box.x;
    for (const status of ["done", "cached", "failed", "skipped", "cancelled", "running", "retrying"]) {
      const n = tally[status];
      if (!n) continue;
      const w = Math.max(box.width * n / info.count, status === "failed" ? 3 : 0); // seen
      segments.push(svgEl("rect", { x, y, width: w, height: 5, style: `fill:${looks[status].fill}` }));
      x += w;
    }
    parts.items.replaceChildren(...segments);
  }

  // --- why a stage waits, and where the run stands ---------------------------------------
  function why(name) {
    const all = stages();
    const stage = all[name];
    if (!stage) return "";
    const parents = model.get("parents")[name] || [];
    if (stage.status === "queued") return "queued: waiting for a free worker";
    if (stage.status === "pending" || stage.status === "stale") {
      const waiting = parents.filter((p) => !FINISHED.has(all[p]?.status));
      return waiting.length ? `pending: waiting for ${waiting.slice(0, 3).map((p) => `\`${p}\``).join(", ")}` +
        (waiting.length > 3 ? ` and ${waiting.length - 3} more` : "") : "";
    }
    if (stage.status === "skipped") {
      const seen = new Set(), queue = [...parents];
      while (queue.length) { // the nearest stage upstream that failed or was cancelled
        const p = queue.shift();
        if (seen.has(p)) continue;
        seen.add(p);
        if (all[p]?.status === "failed" || all[p]?.status === "cancelled") return `skipped: \`${p}\` ${all[p].status}`;
        queue.push(...(model.get("parents")[p] || []));
      }
      return "skipped: a stage it needs did not succeed";
    }
    return "";
  }

  function headline() {
    const all = Object.values(stages());
    const by = {};
    for (const s of all) by[s.status] = (by[s.status] || 0) + 1;
    const parts = [];
    if (model.get("headline")) parts.push(model.get("headline"));
    else {
      parts.push(`${all.length} stages`);
      for (const [status, n] of Object.entries(by)) if (status !== "pending") parts.push(`${n} ${status}`);
    }
    let count = 0, ran = 0;
    for (const info of Object.values(model.get("items"))) {
      count += info.count;
      ran += (info.tally.done || 0) + (info.tally.cached || 0) + (info.tally.failed || 0);
    }
    if (count) parts.push(`${ran.toLocaleString()}/${count.toLocaleString()} items`);
    return [parts.join(" · "), by];
  }

  function estimate() {
    // Seconds left: the work still to do (each stage's time in recent runs where known,
    // else the mean of this run's finished stages; a map's items at their mean) spread
    // over the workers, and never less than the longest stage still running.
    const c = model.get("clock");
    if (model.get("state") !== "running" || c.started == null) return "";
    const all = stages(), recent = model.get("recent"), items = model.get("items");
    const took = Object.values(all).filter((s) => s.end != null && s.start != null)
      .map((s) => s.end - s.start);
    const mean = took.length ? took.reduce((a, b) => a + b, 0) / took.length : null;
    let work = 0, longest = 0, known = true, rate = "";
    for (const [name, stage] of Object.entries(all)) {
      if (FINISHED.has(stage.status)) continue;
      const info = items[name];
      let left;
      if (info && info.count) {
        const t = info.tally, done = (t.done || 0) + (t.cached || 0) + (t.failed || 0);
        const spent = elapsed(stage) || 0;
        if (!done) { known = false; continue; }
        left = spent * (info.count - done) / done;
        rate = `${(done / Math.max(spent, 1e-3)).toFixed(0)} items/s`;
      } else {
        const past = recent[name]?.length ? recent[name].reduce((a, [, s]) => a + s, 0) / recent[name].length : mean;
        if (past == null) { known = false; continue; }
        left = Math.max(0, past - (elapsed(stage) || 0));
      }
      work += left;
      if (stage.status === "running") longest = Math.max(longest, left);
    }
    const cores = Math.max(1, model.get("cores") || 1);
    const eta = known ? `about ${seconds(Math.max(work / cores, longest))} left` : "";
    return [rate, eta].filter((x) => x).join(" · ");
  }

  function header_() {
    const [text, by] = headline();
    const total = Object.keys(stages()).length || 1;
    title.textContent = model.get("title");
    counts.textContent = text;
    pace.textContent = estimate();
    bar.replaceChildren();
    const looks = model.get("looks");
    for (const status of ["done", "cached", "fresh", "failed", "skipped", "cancelled",
                          "running", "retrying", "queued", "stale"]) {
      if (!by[status]) continue;
      bar.append(el("div", { class: "pydags-segment", title: `${by[status]} ${status}`,
                             style: `width:${100 * by[status] / total}%;background:${looks[status].fill}` }));
    }
    const state = model.get("state");
    buttons.run.disabled = state === "running" || !model.get("actions");
    buttons.run_stale.disabled = buttons.run.disabled;
    const blocking = model.get("blocking") && state === "running";
    buttons.cancel.disabled = state !== "running" || !model.get("actions") || blocking;
    const words = "This run holds the kernel: interrupt the kernel (■) to stop it.";
    buttons.cancel.title = blocking ? words : "";
    hint.textContent = blocking ? words : "";
    hint.style.display = blocking ? "" : "none";
  }

  function tick() {
    const c = model.get("clock");
    clock.textContent = c.started == null ? "" : seconds((c.ended ?? now()) - c.started);
    if (model.get("state") === "running") pace.textContent = estimate();
    for (const [name, parts] of boxes) {
      const stage = stages()[name];
      if (stage && stage.status === "running") note(name, parts, stage);
    }
    const live = inspector.querySelector(".pydags-elapsed");
    const stage = kept.chosen && stages()[kept.chosen];
    if (live && stage) live.textContent = seconds(elapsed(stage));
  }

  // --- choosing a stage, and the inspector ------------------------------------------------
  let focused = null;

  function choose(name, byUser) {
    if (!boxes.has(name) && !stages()[name]) return;
    kept.chosen = name;
    kept.userChose = kept.userChose || byUser;
    if (!byUser) autoPicked = Date.now() / 1000;
    for (const [other, parts] of boxes) parts.group.classList.toggle("pydags-chosen", other === name);
    inspect();
  }

  let shown = ""; // what the inspector shows: drawn again only when it changes

  function inspect() {
    const name = kept.chosen;
    const stage = name && stages()[name];
    if (!stage) { inspector.replaceChildren(el("div", { class: "pydags-empty" }, "Click a stage to inspect it.")); shown = ""; return; }
    const failed = Object.values(stages()).some((s) => s.status === "failed");
    const key = JSON.stringify([name, stage, model.get("state"), model.get("actions"), failed, why(name)]);
    if (key === shown && !model.get("items")[name]) return;
    shown = key;
    const scrolls = [...inspector.querySelectorAll("pre")].map((p) => p.scrollTop);
    const look = model.get("looks")[stage.status] || {};
    const rows = [el("b", {}, name), ` · ${look.glyph || ""} ${stage.status}`];
    if (stage.start != null) rows.push(" · ", el("span", { class: "pydags-elapsed" }, seconds(elapsed(stage))));
    if (stage.worker) rows.push(` · ${stage.worker}`);
    if (stage.attempts > 1) rows.push(` · ${stage.attempts} attempts`);
    const body = [el("div", { class: "pydags-inspector-head" }, ...rows)];
    const reason = why(name);
    if (reason) body.push(el("div", { class: "pydags-why" }, reason));
    if (stage.cache) body.push(el("div", { class: "pydags-why" }, stage.cache));
    const recent = model.get("recent")[name];
    if (recent && recent.length) { // its times in the pipeline's last runs, from the journal
      body.push(el("div", { class: "pydags-recent" },
                   `recent runs: ${recent.map(([, took]) => seconds(took)).join(" · ")}`));
    }
    if (model.get("items")[name]) body.push(...itemsPanel(name));
    for (const [key_, label] of [["error", "traceback"], ["output", "output"]]) {
      if (!stage[key_]) continue;
      body.push(el("div", { class: "pydags-section" }, el("b", {}, label), copyButton(stage[key_])),
                el("pre", {}, stage[key_]));
    }
    if (stage.result) {
      const result = el("div", { class: "pydags-result" });
      result.innerHTML = stage.result;
      body.push(el("div", {}, el("b", {}, "result")), result);
    }
    if (model.get("actions") && model.get("state") !== "running") {
      const again = el("button", { class: "pydags-button pydags-rerun" },
                       "Re-run this stage and everything below it");
      again.addEventListener("click", () => model.send({ action: "rerun", stage: name }));
      body.push(again);
      if (failed) {
        const retry = el("button", { class: "pydags-button pydags-retry" }, "Retry failed stages");
        retry.addEventListener("click", () => model.send({ action: "retry" }));
        body.push(retry);
      }
    }
    inspector.replaceChildren(...body);
    inspector.querySelectorAll("pre").forEach((p, i) => { p.scrollTop = scrolls[i] || 0; });
  }

  let itemFilter = "all", itemScroll = 0;

  function itemsPanel(name) {
    // Every item of a map, in a list that draws only the rows in sight: fast at 100,000.
    const info = model.get("items")[name];
    const looks = model.get("looks");
    const tally = Object.entries(info.tally).map(([status, n]) => `${n} ${status}`);
    const filters = el("span", { class: "pydags-item-filters" });
    for (const which of ["all", "failed", "running", "done"]) {
      const button = el("button", { class: "pydags-tab" + (which === itemFilter ? " pydags-active" : "") }, which);
      button.addEventListener("click", () => { itemFilter = which; itemScroll = 0; shown = ""; inspect(); });
      filters.append(button);
    }
    const letter = { failed: "f", running: "r", done: "d" }[itemFilter];
    const took = new Float32Array(info.seconds.buffer, info.seconds.byteOffset, info.seconds.byteLength / 4);
    const rows = [];
    for (let i = 0; i < info.codes.length; i++) if (!letter || info.codes[i] === letter) rows.push(i);
    const list = el("div", { class: "pydags-items" });
    const spacer = el("div", { style: `height:${rows.length * ROW}px;position:relative` });
    list.append(spacer);
    function paint() {
      itemScroll = list.scrollTop;
      const first = Math.floor(list.scrollTop / ROW);
      const last = Math.min(rows.length, first + Math.ceil((list.clientHeight || 240) / ROW) + 2);
      const drawn = [];
      for (let k = first; k < last; k++) {
        const i = rows[k];
        const status = STATUS[info.codes[i]];
        const ended = status === "done" || status === "failed";
        drawn.push(el("div", { class: "pydags-item", style: `top:${k * ROW}px` },
                      el("span", { class: "pydags-item-index" }, `#${i}`),
                      el("span", { class: "pydags-item-status", style: `border-left:8px solid ${looks[status].fill}` }, status),
                      el("span", { class: "pydags-item-time" }, ended ? `${took[i].toFixed(3)}s` : ""),
                      el("span", { class: "pydags-item-error" }, info.errors[i] || "")));
      }
      spacer.replaceChildren(...drawn);
    }
    list.addEventListener("scroll", paint);
    requestAnimationFrame(() => { list.scrollTop = itemScroll; paint(); });
    return [el("div", { class: "pydags-items-head" }, el("b", {}, `${info.count} items`),
               ` · ${tally.join(" · ")} `, filters), list];
  }

  function autoChoose() {
    // The stage the user chose stays, its state live. Else the first failure is pinned,
    // else one running stage is followed, for at least FOLLOW_SECONDS each.
    if (kept.userChose) { inspect(); return; }
    const all = stages();
    const order = [...boxes.keys()].length ? [...boxes.keys()] : Object.keys(all);
    const failed = order.find((n) => all[n]?.status === "failed");
    let pick = failed;
    if (!pick) {
      const current = kept.chosen && all[kept.chosen];
      const young = Date.now() / 1000 - autoPicked < FOLLOW_SECONDS;
      pick = current && (current.status === "running" || young) ? kept.chosen
        : order.find((n) => all[n]?.status === "running");
    }
    if (pick && pick !== kept.chosen) choose(pick, false);
    else inspect();
  }

  function followRunning() {
    // "Follow running": a running stage stays in sight, but never while the pointer is on
    // the DAG (the view must not move under a click), and in one step, not an animation
    if (!kept.follow || hovering || model.get("state") !== "running" || !placed) return;
    const all = stages();
    const followed = all[kept.chosen]?.status === "running" ? kept.chosen
      : [...boxes.keys()].find((n) => all[n]?.status === "running");
    if (followed && !visible(followed)) centreOn(followed, "auto");
  }

  // --- the timeline -----------------------------------------------------------------------
  function drawTimeline() {
    if (kept.tab !== "timeline") return;
    const rows = model.get("bars");
    const looks = model.get("looks");
    const summary = model.get("efficiency") || {};
    const critical = new Set(summary.critical || []);
    const workers = [...new Set(rows.map((r) => r[1]))].sort();
    const c = model.get("clock");
    const t0 = c.started ?? Math.min(...rows.map((r) => r[2]));
    const t1 = Math.max(c.ended ?? now(), ...rows.map((r) => r[3] ?? now()));
    const width = Math.max(timeline.clientWidth - 20, 400), lane = 26, left = 150, top = 4;
    const span = Math.max(t1 - t0, 1e-3), scaleX = (width - left - 10) / span;
    const svg = svgEl("svg", { width, height: lane * workers.length + 30 + top });
    workers.forEach((worker, i) => {
      const label = svgEl("text", { x: 4, y: top + i * lane + 17, class: "pydags-lane" });
      label.textContent = worker;
      svg.append(label);
    });
    const step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]
      .find((s) => span / s <= 8) || 7200;
    const axisY = top + lane * workers.length + 4;
    svg.append(svgEl("line", { x1: left, x2: left + span * scaleX, y1: axisY, y2: axisY, class: "pydags-axis" }));
    for (let t = 0; t <= span + 1e-9; t += step) {
      const x = left + t * scaleX;
      svg.append(svgEl("line", { x1: x, x2: x, y1: axisY, y2: axisY + 4, class: "pydags-axis" }));
      const label = svgEl("text", { x, y: axisY + 16, class: "pydags-lane pydags-tick" });
      label.textContent = step < 1 ? `${t.toFixed(1)}s` : `${Math.round(t)}s`;
      svg.append(label);
    }
    const nth = {};
    for (const [label, worker, start, end, status, attempt, stage] of rows) {
      nth[stage] = (nth[stage] ?? -1) + 1;
      const x = left + (start - t0) * scaleX;
      const w = Math.max(((end ?? now()) - start) * scaleX, 1.5);
      const y = top + workers.indexOf(worker) * lane + 3;
      const look = looks[status] || looks.running;
      const fill = status === "failed" || status === "cancelled" ? look.fill : hue(stage, nth[stage]);
      const rect = svgEl("rect", { x, y, width: w, height: lane - 6, rx: 2,
                                   class: "pydags-bar" + (critical.has(stage) ? " pydags-critical" : ""),
                                   style: `fill:${fill};stroke:${look.edge}` });
      const tip = svgEl("title");
      tip.textContent = `${label} (attempt ${attempt}) on ${worker}\n` +
        `start +${(start - t0).toFixed(2)}s, ${((end ?? now()) - start).toFixed(2)}s, ${status}` +
        (critical.has(stage) ? "\non the critical path" : "");
      rect.append(tip);
      rect.addEventListener("click", () => choose(stage, true));
      svg.append(rect);
      if (w > 7 * label.length) {
        const text = svgEl("text", { x: x + 3, y: y + lane / 2 + 1, class: "pydags-bar-label" });
        text.textContent = label;
        svg.append(text);
      }
    }
    const facts = summary.wall != null
      ? `wall ${summary.wall.toFixed(2)}s · stage time ${summary.work.toFixed(2)}s on ` +
        `${summary.workers} worker(s) · parallel efficiency ${(100 * summary.efficiency).toFixed(0)}%` +
        (summary.critical?.length ? ` · critical path (bold): ${summary.critical.join(" → ")}` : "")
      : "";
    timeline.replaceChildren(el("div", { class: "pydags-facts" }, facts), svg);
  }

  function showTab(which) {
    kept.tab = which;
    tabs.dag.classList.toggle("pydags-active", which === "dag");
    tabs.timeline.classList.toggle("pydags-active", which === "timeline");
    viewport.style.display = which === "dag" ? "" : "none";
    timeline.style.display = which === "timeline" ? "" : "none";
    drawMinimap();
    drawTimeline();
  }

  // --- the minimap ----------------------------------------------------------------------
  let minimapQueued = false;
  function drawMinimap() {
    if (minimapQueued) return;
    minimapQueued = true;
    requestAnimationFrame(() => {
      minimapQueued = false;
      // only for a DAG well past the pane: on a small one it would hide more than it shows
      const fits = !svgRoot || (svgRoot.clientWidth <= 1.6 * viewport.clientWidth &&
                                svgRoot.clientHeight <= 1.6 * viewport.clientHeight);
      minimap.style.display = fits || kept.tab !== "dag" ? "none" : "";
      if (fits) return;
      const ratio = natural.height / natural.width;
      minimap.width = 180;
      minimap.height = Math.max(30, Math.min(140, Math.round(180 * ratio)));
      const k = Math.min(minimap.width / natural.width, minimap.height / natural.height);
      const ctx = minimap.getContext("2d");
      ctx.clearRect(0, 0, minimap.width, minimap.height);
      const looks = model.get("looks");
      for (const [name] of boxes) {
        const b = boxOf(name);
        ctx.fillStyle = (looks[stages()[name]?.status] || looks.pending).fill;
        ctx.fillRect(b.x * k, b.y * k, Math.max(b.width * k, 1), Math.max(b.height * k, 1));
      }
      const s = scale();
      ctx.strokeStyle = "#1976d2";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(viewport.scrollLeft / s * k, viewport.scrollTop / s * k,
                     viewport.clientWidth / s * k, viewport.clientHeight / s * k);
      minimap.k = k;
    });
  }

  function minimapJump(event) {
    const rect = minimap.getBoundingClientRect(), s = scale();
    const x = (event.clientX - rect.left) / minimap.k, y = (event.clientY - rect.top) / minimap.k;
    viewport.scrollTo({ left: x * s - viewport.clientWidth / 2, top: y * s - viewport.clientHeight / 2 });
    stopFollowing();
  }

  // --- the user's hands: clicks, drag, wheel, keys, search --------------------------------
  function stopFollowing() { kept.follow = false; follow.checked = false; }

  let drag = null, dragged = false, hovering = false;
  viewport.addEventListener("pointerenter", () => { hovering = true; });
  viewport.addEventListener("pointerleave", () => { hovering = false; });
  viewport.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    drag = { x: event.clientX, y: event.clientY, left: viewport.scrollLeft, top: viewport.scrollTop };
    dragged = false;
  });
  window.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!dragged && Math.hypot(dx, dy) < 5) return;
    dragged = true;
    viewport.classList.add("pydags-dragging");
    viewport.scrollLeft = drag.left - dx;
    viewport.scrollTop = drag.top - dy;
    stopFollowing();
  });
  const endDrag = () => { drag = null; viewport.classList.remove("pydags-dragging"); };
  window.addEventListener("pointerup", endDrag);
  canvas.addEventListener("click", (event) => {
    if (dragged) { dragged = false; return; }
    const group = event.target.closest('g[id^="pydags-stage:"]');
    if (group) choose(group.id.slice("pydags-stage:".length), true);
  });
  viewport.addEventListener("wheel", (event) => { // Ctrl + wheel and pinch zoom; else scroll
    if (!event.ctrlKey && !event.metaKey) return;
    event.preventDefault();
    zoomAbout(zoom * Math.exp(-event.deltaY * 0.002), event.clientX, event.clientY);
    stopFollowing();
  }, { passive: false });
  viewport.addEventListener("scroll", () => {
    kept.left = viewport.scrollLeft; kept.top = viewport.scrollTop; drawMinimap();
  });
  viewport.addEventListener("keydown", (event) => {
    const from = focused || kept.chosen;
    if (event.key === "Enter" || event.key === " ") {
      if (from) { choose(from, true); event.preventDefault(); }
    } else if (event.key === "Escape") {
      kept.userChose = false; autoChoose();
    } else if (event.key.startsWith("Arrow")) {
      const next = neighbour(from, event.key);
      if (next) {
        event.preventDefault();
        boxes.get(next).group.focus({ preventScroll: true });
        focused = next;
        if (!visible(next)) centreOn(next);
      }
    }
  });
  minimap.addEventListener("pointerdown", (event) => { minimapJump(event); event.preventDefault(); });

  function neighbour(from, key) {
    // Right and left follow the edges (to the nearest child or parent on screen); up and
    // down go to the nearest box above or below.
    const names = [...boxes.keys()];
    if (!from || !boxes.has(from)) return names[0];
    const a = boxOf(from), ax = a.x + a.width / 2, ay = a.y + a.height / 2;
    const parents = model.get("parents");
    let pool;
    if (key === "ArrowRight") pool = names.filter((n) => (parents[n] || []).includes(from));
    else if (key === "ArrowLeft") pool = parents[from] || [];
    else pool = names.filter((n) => { const b = boxOf(n); return key === "ArrowUp" ? b.y + b.height / 2 < ay - 1 : b.y + b.height / 2 > ay + 1; });
    let best = null, bestDistance = Infinity;
    for (const n of pool) {
      const b = boxOf(n), dx = b.x + b.width / 2 - ax, dy = b.y + b.height / 2 - ay;
      const distance = key === "ArrowUp" || key === "ArrowDown" ? Math.abs(dy) + 3 * Math.abs(dx) : Math.abs(dy) + Math.abs(dx) / 4;
      if (distance < bestDistance) { best = n; bestDistance = distance; }
    }
    return best;
  }

  function find(text, exact) {
    const names = [...boxes.keys()];
    const wanted = text.trim().toLowerCase();
    if (!wanted) return null;
    return names.find((n) => n.toLowerCase() === wanted) ||
      (exact ? null : names.find((n) => n.toLowerCase().startsWith(wanted)) ||
                      names.find((n) => n.toLowerCase().includes(wanted)));
  }

  function reveal(name) { // choose a stage found by search and bring it into view, readable
    choose(name, true);
    stopFollowing();
    showTab("dag");
    if (zoom < READABLE) applyZoom(1);
    centreOn(name);
    boxes.get(name).group.focus({ preventScroll: true });
  }

  search.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const name = find(search.value, false);
    search.classList.toggle("pydags-not-found", !name);
    if (name) reveal(name);
  });
  search.addEventListener("input", () => { // a pick from the list of names
    const name = find(search.value, true);
    search.classList.remove("pydags-not-found");
    if (name) reveal(name);
  });

  follow.checked = kept.follow;
  follow.addEventListener("change", () => { kept.follow = follow.checked; followRunning(); });
  tabs.dag.addEventListener("click", () => showTab("dag"));
  tabs.timeline.addEventListener("click", () => showTab("timeline"));
  buttons.run.addEventListener("click", () => model.send({ action: "run" }));
  buttons.run_stale.addEventListener("click", () => model.send({ action: "run_stale" }));
  buttons.cancel.addEventListener("click", () => model.send({ action: "cancel" }));
  zoomButtons.fit.addEventListener("click", () => { applyZoom(Math.min(1, fitZoom())); stopFollowing(); });
  zoomButtons.zoom_in.addEventListener("click", () => { zoomAbout(zoom * 1.25); stopFollowing(); });
  zoomButtons.zoom_out.addEventListener("click", () => { zoomAbout(zoom / 1.25); stopFollowing(); });

  function clockSync() {
    const c = model.get("clock");
    if (c.now != null) offset = Date.now() / 1000 - c.now;
  }

  model.on("change:svg", drawDag);
  model.on("change:recent", () => { shown = ""; inspect(); });
  model.on("change:stages", () => {
    recolour(); header_(); autoChoose(); followRunning(); drawTimeline();
  });
  model.on("change:bars", drawTimeline);
  model.on("change:efficiency", drawTimeline);
  model.on("change:items", () => { recolour(); header_(); if (kept.chosen && model.get("items")[kept.chosen]) inspect(); });
  model.on("change:clock", () => { clockSync(); tick(); });
  model.on("change:state", () => { header_(); shown = ""; autoChoose(); });
  model.on("change:headline", header_);
  model.on("change:blocking", header_);

  clockSync();
  drawDag();
  showTab(kept.tab);
  header_();
  autoChoose();
  tick();
  const timer = setInterval(() => {
    if (model.get("state") !== "running") return;
    tick();
    if (kept.tab === "timeline") drawTimeline();
  }, 100);
  return () => clearInterval(timer);
}

// The live models of views, by view id. A view mounted from an output's HTML (its final
// form, pydags.views.static) has no widget output of its own to bind it: it finds the
// live model here while the kernel that made it lives, and its saved state otherwise.
const live = (globalThis.pydagsLive ??= { models: new Map(), news: new EventTarget() });

function initialize({ model, signal }) {
  const id = model.get("view");
  live.models.set(id, model);
  live.news.dispatchEvent(new Event(id));
  signal?.addEventListener("abort", () => {  // the model closed: the kernel let it go
    if (live.models.get(id) === model) live.models.delete(id);
    live.news.dispatchEvent(new Event(id));
  });
}

// What a view mounted on a live model listens to, to stop listening when it goes.
function listening(model) {
  const heard = [];
  return {
    get: (key) => model.get(key),
    send: (message) => model.send(message),
    on: (event, handler) => { heard.push([event, handler]); model.on(event, handler); },
    off: (event, handler) => model.off(event, handler),
    forget: () => heard.forEach(([event, handler]) => model.off(event, handler)),
  };
}

// Show the view in place of ``holder`` (the static report of an output's HTML): on the
// live model of view ``id`` while there is one, else on ``saved``. It moves between the
// two as the kernel opens and closes the model; once its output is replaced, it stops.
export function mountFinal(holder, saved, id) {
  const root = document.createElement("div");
  holder.style.display = "none";
  holder.before(root);
  let shown, stop = () => {};
  const mount = () => {
    const model = live.models.get(id) || null;
    if (shown !== undefined && !root.isConnected) {  // replaced by a newer output
      live.news.removeEventListener(id, mount);
      stop();
      return;
    }
    if (model === shown) return;
    stop();
    root.replaceChildren();
    const bound = model ? listening(model) : saved;
    const end = render({ model: bound, el: root });
    stop = () => { end(); bound.forget?.(); };
    shown = model;
  };
  live.news.dispatchEvent(new Event(id));  // outputs this one replaced let go of the model
  mount();
  live.news.addEventListener(id, mount);
}

export default { initialize, render };
