// The live view of a pipeline run (anywidget). The kernel pushes plain state: the DAG as
// SVG once, then stage states, timeline bars and the run's clock. Everything here works
// while the kernel is busy: the clock ticks, stages recolour, a click opens the inspector.
// Run / Cancel / re-run messages go to the kernel and are handled once it is free.

const DASH = { solid: "", dashed: "5,3", dotted: "1.5,2.5" };
const SVG = "http://www.w3.org/2000/svg";
const STATUS = { p: "pending", q: "queued", r: "running", y: "retrying", d: "done",
                 c: "cached", f: "failed", s: "skipped", x: "cancelled" };
const ROW = 18; // px per item in a map's item list

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function seconds(s) {
  if (s == null || !isFinite(s)) return "";
  const m = Math.floor(s / 60);
  const rest = (s - 60 * m).toFixed(1).padStart(4, "0");
  return `${String(m).padStart(2, "0")}:${rest}`;
}

function render({ model, el: root }) {
  root.classList.add("pydags-view");
  const title = el("span", { class: "pydags-title" });
  const counts = el("span", { class: "pydags-counts" });
  const clock = el("span", { class: "pydags-clock" });
  const buttons = {};
  for (const [name, label] of [["run", "Run all"], ["run_stale", "Run stale"],
                               ["cancel", "Cancel"], ["fit", "Fit"],
                               ["zoom_in", "+"], ["zoom_out", "−"]]) {
    buttons[name] = el("button", { class: `pydags-button pydags-${name}` }, label);
  }
  const header = el("div", { class: "pydags-header" }, title, counts, clock,
                    ...Object.values(buttons));
  const bar = el("div", { class: "pydags-progress" });
  const tabs = { dag: el("button", { class: "pydags-tab pydags-active" }, "DAG"),
                 timeline: el("button", { class: "pydags-tab" }, "Timeline") };
  const scroller = el("div", { class: "pydags-dag" });
  const canvas = el("div", { class: "pydags-canvas" });
  scroller.append(canvas);
  const timeline = el("div", { class: "pydags-timeline", style: "display:none" });
  const inspector = el("div", { class: "pydags-inspector" });
  root.append(header, bar, el("div", { class: "pydags-tabs" }, tabs.dag, tabs.timeline),
              scroller, timeline, inspector);

  let zoom = 1, chosen = null, userChose = false, offset = 0;
  const boxes = new Map(); // stage name -> {group, shape, note}

  function drawDag() {
    canvas.innerHTML = model.get("svg");
    boxes.clear();
    const svg = canvas.querySelector("svg");
    if (!svg) return;
    svg.style.overflow = "visible"; // a map's count sits under its box, maybe past the edge
    for (const group of svg.querySelectorAll('g[id^="pydags-stage:"]')) {
      const name = group.id.slice("pydags-stage:".length);
      const shape = group.querySelector("path");
      const note = document.createElementNS("http://www.w3.org/2000/svg", "text");
      note.setAttribute("class", "pydags-note");
      group.parentNode.append(note);
      group.style.cursor = "pointer";
      group.addEventListener("click", () => choose(name, true));
      boxes.set(name, { group, shape, note });
    }
    applyZoom();
    recolour();
  }

  function applyZoom() {
    const svg = canvas.querySelector("svg");
    if (!svg) return;
    if (!svg.dataset.width) {
      svg.dataset.width = svg.getAttribute("width");
      svg.dataset.height = svg.getAttribute("height");
    }
    svg.setAttribute("width", `${parseFloat(svg.dataset.width) * zoom}pt`);
    svg.setAttribute("height", `${parseFloat(svg.dataset.height) * zoom}pt`);
  }

  function now() { return Date.now() / 1000 - offset; }

  function elapsed(stage) {
    if (stage.start == null) return null;
    return Math.max(0, (stage.end ?? now()) - stage.start); // the clocks differ by the latency
  }

  function place(parts) {
    // A box's size is known only once the view is on the page: place its note then.
    if (parts.note.dataset.placed) return;
    const box = parts.shape.getBBox();
    if (!box.width) return;
    parts.note.setAttribute("x", box.x + box.width - 4);
    parts.note.setAttribute("y", box.y + box.height - 4);
    parts.note.dataset.placed = "1";
  }

  function recolour() {
    const looks = model.get("looks");
    const stages = model.get("stages");
    for (const [name, parts] of boxes) {
      place(parts);
      const stage = stages[name] || { status: "pending" };
      const look = looks[stage.status] || looks.pending;
      parts.shape.style.fill = look.fill;
      parts.shape.style.stroke = look.edge;
      parts.shape.style.strokeDasharray = DASH[look.dash] || "";
      parts.group.dataset.status = stage.status;
      parts.note.textContent = noteOf(name, stage);
      tooltip(parts, [name, stage.status, noteOf(name, stage), stage.cache]
        .filter((line) => line).join("\n"));
      itemBar(name, parts, looks);
    }
  }

  function tooltip(parts, text) {
    // The browser's own tooltip: name, status, time, and why it runs (or is cached).
    if (!parts.tip) {
      parts.tip = document.createElementNS(SVG, "title");
      parts.group.prepend(parts.tip);
    }
    if (parts.tip.textContent !== text) parts.tip.textContent = text;
  }

  function noteOf(name, stage) {
    const time = elapsed(stage);
    const text = time == null ? "" : `${time.toFixed(1)}s`;
    const info = model.get("items")[name];
    if (!info) return text;
    const done = (info.tally.done || 0) + (info.tally.cached || 0);
    const failed = info.tally.failed ? ` · ${info.tally.failed} failed` : "";
    return `${done}/${info.count} items${failed}` + (text ? ` · ${text}` : "");
  }

  function itemBar(name, parts, looks) {
    // A mapped stage: a bar along the bottom of its box, split into its items' statuses.
    const info = model.get("items")[name];
    if (!info || !info.count) return;
    const box = parts.shape.getBBox();
    if (!box.width) return;
    if (!parts.items) {
      parts.items = document.createElementNS(SVG, "g");
      parts.items.setAttribute("class", "pydags-item-bar");
      parts.group.parentNode.append(parts.items);
    }
    // the bar just under the box, the count under the bar
    const y = box.y + box.height + 2;
    parts.note.setAttribute("x", box.x);
    parts.note.setAttribute("y", y + 15);
    parts.note.classList.add("pydags-note-below");
    const segments = [];
    let x = box.x;
    const back = document.createElementNS(SVG, "rect");
    Object.entries({ x, y, width: box.width, height: 5, rx: 1 })
      .forEach(([k, v]) => back.setAttribute(k, v));
    back.style.fill = looks.pending.fill;
    back.style.stroke = looks.pending.edge;
    back.style.strokeWidth = "0.5";
    segments.push(back);
    for (const status of ["done", "cached", "failed", "running", "retrying", "cancelled"]) {
      const n = info.tally[status];
      if (!n) continue;
      const rect = document.createElementNS(SVG, "rect");
      const w = Math.max(box.width * n / info.count, status === "failed" ? 3 : 0); // seen
      Object.entries({ x, y, width: w, height: 5 }).forEach(([k, v]) => rect.setAttribute(k, v));
      rect.style.fill = looks[status].fill;
      segments.push(rect);
      x += w;
    }
    parts.items.replaceChildren(...segments);
  }

  function header_() {
    const stages = Object.values(model.get("stages"));
    const total = stages.length;
    const by = {};
    for (const s of stages) by[s.status] = (by[s.status] || 0) + 1;
    // during a run the kernel says how far it is, in the words of every other front end;
    // before one (stale and fresh stages), the counts are made here
    const parts = [];
    for (const [status, n] of Object.entries(by)) {
      if (status !== "pending") parts.push(`${n} ${status}`);
    }
    title.textContent = model.get("title");
    counts.textContent = " · " + (model.get("headline") || `${total} stages: ` + parts.join(" · "));
    bar.replaceChildren();
    const looks = model.get("looks");
    for (const status of ["done", "cached", "fresh", "failed", "skipped", "cancelled",
                          "running", "retrying", "queued", "stale"]) {
      if (!by[status]) continue;
      bar.append(el("div", { class: "pydags-segment", title: `${by[status]} ${status}`,
                             style: `width:${100 * by[status] / total}%;` +
                                    `background:${looks[status].fill}` }));
    }
    const state = model.get("state");
    buttons.run.disabled = state === "running" || !model.get("actions");
    buttons.run_stale.disabled = buttons.run.disabled;
    const blocking = model.get("blocking") && state === "running";
    buttons.cancel.disabled = state !== "running" || !model.get("actions") || blocking;
    buttons.cancel.title = blocking  // a click would reach the kernel only once the run ended
      ? "This run holds the kernel: interrupt the kernel (■) to stop it" : "";
  }

  function tick() {
    const c = model.get("clock");
    if (c.started == null) { clock.textContent = ""; return; }
    const end = c.ended ?? now();
    clock.textContent = " · " + seconds(end - c.started);
    for (const [name, parts] of boxes) {
      place(parts);
      const stage = model.get("stages")[name];
      if (stage && stage.status === "running") parts.note.textContent = noteOf(name, stage);
    }
    if (chosen) {
      const live = inspector.querySelector(".pydags-elapsed");
      const stage = model.get("stages")[chosen];
      if (live && stage) live.textContent = seconds(elapsed(stage));
    }
  }

  function choose(name, byUser) {
    chosen = name;
    userChose = userChose || byUser;
    for (const [other, parts] of boxes) parts.group.classList.toggle("pydags-chosen", other === name);
    inspect();
  }

  let shown = ""; // what the inspector shows: drawn again only when it changes

  function inspect() {
    const stage = chosen && model.get("stages")[chosen];
    if (!stage) { inspector.replaceChildren(); shown = ""; return; }
    const now = JSON.stringify([chosen, stage, model.get("state"), model.get("actions"),
                                Object.values(model.get("stages")).some((s) => s.status === "failed")]);
    if (now === shown && !model.get("items")[chosen]) return;
    shown = now;
    const rows = [el("b", {}, chosen), ` · ${stage.status}`];
    if (stage.start != null) rows.push(" · ", el("span", { class: "pydags-elapsed" },
                                                  seconds(elapsed(stage))));
    if (stage.worker) rows.push(` · ${stage.worker}`);
    if (stage.attempts > 1) rows.push(` · ${stage.attempts} attempts`);
    if (stage.cache) rows.push(` · ${stage.cache}`);
    const body = [el("div", { class: "pydags-inspector-head" }, ...rows)];
    const recent = model.get("recent")[chosen];
    if (recent && recent.length) {  // its times in the pipeline's last runs, from the journal
      body.push(el("div", { class: "pydags-recent" },
                   `recent runs: ${recent.map(([, took]) => seconds(took)).join(" · ")}`));
    }
    if (model.get("items")[chosen]) body.push(...itemsPanel(chosen));
    if (stage.error) body.push(el("div", {}, el("b", {}, "traceback")), el("pre", {}, stage.error));
    if (stage.output) body.push(el("div", {}, el("b", {}, "output")), el("pre", {}, stage.output));
    if (stage.result) {
      const result = el("div", { class: "pydags-result" });
      result.innerHTML = stage.result;
      body.push(el("div", {}, el("b", {}, "result")), result);
    }
    if (model.get("actions") && model.get("state") !== "running") {
      const again = el("button", { class: "pydags-button pydags-rerun" },
                       "Re-run this stage and everything below it");
      again.addEventListener("click", () => model.send({ action: "rerun", stage: chosen }));
      body.push(again);
      if (Object.values(model.get("stages")).some((s) => s.status === "failed")) {
        const retry = el("button", { class: "pydags-button pydags-retry" }, "Retry failed stages");
        retry.addEventListener("click", () => model.send({ action: "retry" }));
        body.push(retry);
      }
    }
    inspector.replaceChildren(...body);
  }

  let itemFilter = "all", itemScroll = 0;

  function itemsPanel(name) {
    // Every item of a map, in a list that draws only the rows in sight: fast at 100,000.
    const info = model.get("items")[name];
    const looks = model.get("looks");
    const tally = Object.entries(info.tally).map(([status, n]) => `${n} ${status}`);
    const filters = el("span", { class: "pydags-item-filters" });
    for (const which of ["all", "failed", "running", "done"]) {
      const button = el("button", { class: "pydags-tab" + (which === itemFilter ? " pydags-active" : "") },
                        which);
      button.addEventListener("click", () => { itemFilter = which; itemScroll = 0; inspect(); });
      filters.append(button);
    }
    const letter = { failed: "f", running: "r", done: "d" }[itemFilter];
    const took = new Float32Array(info.seconds.buffer, info.seconds.byteOffset,
                                  info.seconds.byteLength / 4);
    const shown = [];
    for (let i = 0; i < info.codes.length; i++) {
      if (!letter || info.codes[i] === letter) shown.push(i);
    }
    const list = el("div", { class: "pydags-items" });
    const spacer = el("div", { style: `height:${shown.length * ROW}px;position:relative` });
    list.append(spacer);
    function paint() {
      itemScroll = list.scrollTop;
      const first = Math.floor(list.scrollTop / ROW);
      const last = Math.min(shown.length, first + Math.ceil((list.clientHeight || 240) / ROW) + 2);
      const rows = [];
      for (let k = first; k < last; k++) {
        const i = shown[k];
        const status = STATUS[info.codes[i]];
        const ended = status === "done" || status === "failed";
        const row = el("div", { class: "pydags-item", style: `top:${k * ROW}px` },
                       el("span", { class: "pydags-item-index" }, `#${i}`),
                       el("span", { class: "pydags-item-status",
                                    style: `border-left:8px solid ${looks[status].fill}` }, status),
                       el("span", { class: "pydags-item-time" }, ended ? `${took[i].toFixed(3)}s` : ""),
                       el("span", { class: "pydags-item-error" }, info.errors[i] || ""));
        rows.push(row);
      }
      spacer.replaceChildren(...rows);
    }
    list.addEventListener("scroll", paint);
    requestAnimationFrame(() => { list.scrollTop = itemScroll; paint(); });
    return [el("div", { class: "pydags-items-head" }, el("b", {}, `${info.count} items`),
               ` · ${tally.join(" · ")} `, filters), list];
  }

  function autoChoose() {
    if (userChose) { inspect(); return; } // the stage chosen stays, its state live
    const stages = model.get("stages");
    const names = Object.keys(stages);
    const failed = names.find((n) => stages[n].status === "failed");
    const running = names.find((n) => stages[n].status === "running");
    const pick = failed || running;
    if (pick && pick !== chosen) choose(pick, false);
    else if (chosen) inspect();
  }

  function drawTimeline() {
    if (timeline.style.display === "none") return;
    const rows = model.get("bars");
    const looks = model.get("looks");
    const workers = [...new Set(rows.map((r) => r[1]))];
    const c = model.get("clock");
    const t0 = c.started ?? Math.min(...rows.map((r) => r[2]));
    const t1 = Math.max(c.ended ?? now(), ...rows.map((r) => r[3] ?? now()));
    const width = Math.max(timeline.clientWidth - 20, 400), lane = 26, left = 150;
    const scale = (width - left) / Math.max(t1 - t0, 1e-3);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", lane * workers.length + 24);
    workers.forEach((worker, i) => {
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", 4);
      label.setAttribute("y", i * lane + 17);
      label.setAttribute("class", "pydags-lane");
      label.textContent = worker;
      svg.append(label);
    });
    for (const [label, worker, start, end, status, attempt, stage] of rows) {
      const x = left + (start - t0) * scale;
      const w = Math.max(((end ?? now()) - start) * scale, 1.5);
      const y = workers.indexOf(worker) * lane + 3;
      const rect = document.createElementNS(ns, "rect");
      Object.entries({ x, y, width: w, height: lane - 6, rx: 2, class: "pydags-bar" })
        .forEach(([k, v]) => rect.setAttribute(k, v));
      rect.style.fill = (looks[status] || looks.running).fill;
      rect.style.stroke = (looks[status] || looks.running).edge;
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `${label} (attempt ${attempt}) on ${worker}\n` +
        `start +${(start - t0).toFixed(2)}s, ${((end ?? now()) - start).toFixed(2)}s, ${status}`;
      rect.append(tip);
      rect.addEventListener("click", () => choose(stage, true));
      svg.append(rect);
      if (w > 7 * label.length) {
        const text = document.createElementNS(ns, "text");
        text.setAttribute("x", x + 3);
        text.setAttribute("y", y + lane / 2 + 1);
        text.setAttribute("class", "pydags-bar-label");
        text.textContent = label;
        svg.append(text);
      }
    }
    timeline.replaceChildren(svg);
  }

  function showTab(which) {
    tabs.dag.classList.toggle("pydags-active", which === "dag");
    tabs.timeline.classList.toggle("pydags-active", which === "timeline");
    scroller.style.display = which === "dag" ? "" : "none";
    timeline.style.display = which === "timeline" ? "" : "none";
    drawTimeline();
  }

  function fit() {
    const svg = canvas.querySelector("svg");
    if (!svg) return;
    const natural = parseFloat(svg.dataset.width) * 4 / 3;
    zoom = Math.min(1, (scroller.clientWidth - 8) / natural);
    applyZoom();
  }

  function clockSync() {
    const c = model.get("clock");
    if (c.now != null) offset = Date.now() / 1000 - c.now;
  }

  tabs.dag.addEventListener("click", () => showTab("dag"));
  tabs.timeline.addEventListener("click", () => showTab("timeline"));
  buttons.run.addEventListener("click", () => model.send({ action: "run" }));
  buttons.run_stale.addEventListener("click", () => model.send({ action: "run_stale" }));
  buttons.cancel.addEventListener("click", () => model.send({ action: "cancel" }));
  buttons.fit.addEventListener("click", fit);
  buttons.zoom_in.addEventListener("click", () => { zoom *= 1.25; applyZoom(); });
  buttons.zoom_out.addEventListener("click", () => { zoom /= 1.25; applyZoom(); });

  model.on("change:svg", drawDag);
  model.on("change:recent", () => { shown = ""; inspect(); });
  model.on("change:stages", () => { recolour(); header_(); autoChoose(); drawTimeline(); });
  model.on("change:bars", drawTimeline);
  model.on("change:items", () => { recolour(); if (chosen && model.get("items")[chosen]) inspect(); });
  model.on("change:clock", () => { clockSync(); tick(); });
  model.on("change:state", header_);
  model.on("change:headline", header_);
  model.on("change:blocking", header_);

  clockSync();
  drawDag();
  header_();
  autoChoose();
  tick();
  requestAnimationFrame(recolour);
  const timer = setInterval(() => {
    if (model.get("state") !== "running") return;
    tick();
    if (timeline.style.display !== "none") drawTimeline();
  }, 100);
  return () => clearInterval(timer);
}

export default { render };
