// job_worker dashboard: live refresh, the dependency graph and the charts.
// Plain JavaScript, no library. Text from the server is set with textContent only.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH = (parseFloat(document.body.dataset.refresh) || 5) * 1000;
const STATE_FILL = {
  waiting: "#f3e5f5", pending: "#fff8e1", started: "#e3f2fd",
  done: "#e8f5e9", failed: "#ffebee", cancelled: "#eceff1",
};

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  if (parent) parent.appendChild(el);
  return el;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (response.status === 401) { window.location.reload(); throw new Error("logged out"); }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function every(ms, fn) {
  let timer = null;
  const tick = async () => {
    if (!document.hidden) {
      try { await fn(); } catch (err) { console.warn(err); }
    }
    timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => clearTimeout(timer);
}

// -- overview: KPI cards -------------------------------------------------------------

function liveCards(section) {
  const updated = document.querySelector("[data-updated]");
  every(REFRESH, async () => {
    const data = await getJSON(section.dataset.live);
    for (const card of data.cards) {
      const el = section.querySelector(`[data-key="${card.key}"]`);
      if (!el) continue;
      el.className = `card ${card.level}`;
      el.href = card.href;
      el.title = card.hint;
      const value = el.querySelector(".value");
      value.textContent = card.display;
      value.title = card.full || card.display;
      el.querySelector(".hint").textContent = card.hint;
    }
    if (updated) updated.textContent = `Updated ${new Date().toISOString().slice(11, 19)} UTC.`;
  });
}

// -- job list: live table, select all ------------------------------------------------------

function liveTable(container) {
  const toggle = document.querySelector("[data-autorefresh]");
  let stop = null;
  const start = () => {
    stop = every(REFRESH, async () => {
      if (container.querySelector("input[name=ids]:checked")) return; // keep a selection in progress
      const response = await fetch(container.dataset.partial, { credentials: "same-origin" });
      if (response.ok) container.innerHTML = await response.text();
    });
  };
  if (toggle) {
    toggle.checked = sessionStorage.getItem("jobs-live") === "1";
    if (toggle.checked) start();
    toggle.addEventListener("change", () => {
      sessionStorage.setItem("jobs-live", toggle.checked ? "1" : "0");
      if (toggle.checked) start(); else if (stop) stop();
    });
  }
  container.addEventListener("change", (event) => {
    if (event.target.matches("[data-select-all]")) {
      for (const box of container.querySelectorAll("input[name=ids]")) box.checked = event.target.checked;
    }
  });
}

// -- job detail: reload when the state changes ---------------------------------------------

function liveJob(head) {
  every(REFRESH, async () => {
    const data = await getJSON(`/api/jobs/${head.dataset.job}`);
    if (data.state !== head.dataset.state) window.location.reload();
  });
}

// -- dependency graph: layered layout, drawn as SVG ---------------------------------------------

function layers(nodes, edges) {
  const parents = new Map(nodes.map((n) => [n.id, []]));
  for (const e of edges) if (parents.has(e.to)) parents.get(e.to).push(e.from);
  const depth = new Map();
  const visit = (id, seen) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0; // a cycle cannot happen, but never loop
    seen.add(id);
    const ps = parents.get(id) || [];
    const d = ps.length ? 1 + Math.max(...ps.map((p) => visit(p, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  for (const n of nodes) visit(n.id, new Set());
  const out = [];
  for (const n of nodes) {
    const d = depth.get(n.id);
    (out[d] = out[d] || []).push(n);
  }
  return out;
}

async function drawGraph(box) {
  const data = await getJSON(box.dataset.graph);
  const W = 170, H = 40, GX = 60, GY = 18;
  const columns = layers(data.nodes, data.edges);
  const pos = new Map();
  let height = 0;
  columns.forEach((column, i) => {
    column.forEach((node, j) => pos.set(node.id, { x: 10 + i * (W + GX), y: 10 + j * (H + GY) }));
    height = Math.max(height, column.length * (H + GY));
  });
  const root = svg("svg", { width: 20 + columns.length * (W + GX) - GX, height: height + 10, role: "img",
                            "aria-label": "dependency graph" });
  const defs = svg("defs", {}, root);
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
                                 markerHeight: 7, orient: "auto-start-reverse" }, defs);
  svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#90a4ae" }, marker);
  for (const e of data.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    svg("path", { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`,
                  class: `edge ${e.kind}`, "marker-end": "url(#arrow)" }, root);
  }
  for (const node of data.nodes) {
    const p = pos.get(node.id);
    const g = svg("g", { class: `node${node.current ? " current" : ""}`, transform: `translate(${p.x},${p.y})` }, root);
    svg("rect", { width: W, height: H, fill: STATE_FILL[node.state] || "#fff" }, g);
    const title = svg("text", { x: 8, y: 16 }, g);
    const label = node.label.length > 24 ? `${node.label.slice(0, 23)}…` : node.label;
    title.textContent = `#${node.id} ${label}`;
    const state = svg("text", { x: 8, y: 31 }, g);
    state.textContent = node.state;
    svg("title", {}, g).textContent = `${node.label} (${node.state})`;
    g.addEventListener("click", () => { window.location.href = `/jobs/${node.id}`; });
  }
  box.replaceChildren(root);
  if (data.truncated) {
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "Large graph: only its first jobs are drawn.";
    box.appendChild(note);
  }
}

// -- charts: one SVG per series ------------------------------------------------------------

// "2026-12-06T03:20:00Z" -> "2026-12-06 03:20" (UTC, like every time on the dashboard)
function isoMinute(t) {
  return t.replace("T", " ").slice(0, 16);
}

// an axis top that reads well: 1, 2, 4, 5, 6, 8 or 10 times a power of ten, at or above max
function niceMax(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 4, 5, 6, 8, 10]) if (m * power >= max * (1 - 1e-9)) return m * power;
  return 10 * power;
}

function tickLabel(v, unit) {
  if (v === 0) return "0";
  if (unit === "s") {
    if (v < 0.001) return `${Number((v * 1e6).toPrecision(3))} µs`;
    if (v < 1) return `${Number((v * 1000).toPrecision(3))} ms`;
    return `${Number(v.toPrecision(3))} s`;
  }
  return Number(v.toPrecision(3)).toLocaleString("en-US");
}

function drawChart(box, points) {
  const key = box.dataset.chart, color = box.dataset.color || "#3949ab", unit = box.dataset.unit || "";
  const W = 600, H = 180, L = 52, B = 22, T = 8;
  const values = points.map((p) => (p[key] == null ? null : Number(p[key])));
  const known = values.filter((v) => v != null);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
                            "aria-label": key });
  svg("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }, root);
  svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, root);
  if (!known.length) {
    const t = svg("text", { x: (W + L) / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, root);
    t.textContent = points.length ? "no data: no job finished in this range" : "no data in this range yet";
    box.dataset.empty = "1";
    box.replaceChildren(root);
    return;
  }
  // counts are whole numbers: a top of 1 gets no half tick
  const max = unit === "s" ? niceMax(Math.max(...known)) : Math.max(1, niceMax(Math.max(...known)));
  const ticks = unit !== "s" && max === 1 ? [0, 1] : [0, 0.5, 1];
  for (const frac of ticks) {
    const t = svg("text", { x: L - 4, y: H - B - frac * (H - B - T) + 3, "text-anchor": "end", class: "tick" }, root);
    t.textContent = tickLabel(max * frac, unit);
  }
  const step = (W - L) / points.length;
  const y = (v) => H - B - (v / max) * (H - B - T);
  const label = (i, v) => `${isoMinute(points[i].t)}${points[i].live ? " (in progress)" : ""}: ${tickLabel(v, unit)}`;
  if (key === "done" || key === "failed") {
    values.forEach((v, i) => {
      if (!v) return;
      const bar = svg("rect", { x: L + i * step + step * 0.1, y: y(v), width: Math.max(1, step * 0.8),
                                height: H - B - y(v), fill: color, class: points[i].live ? "live" : "" }, root);
      svg("title", {}, bar).textContent = label(i, v);
    });
  } else {
    let d = "";
    values.forEach((v, i) => {
      if (v == null) return;
      const x = L + i * step + step / 2;
      d += `${d ? "L" : "M"} ${x} ${y(v)} `;
      const dot = svg("circle", { cx: x, cy: y(v), r: 2.5, fill: color }, root);
      svg("title", {}, dot).textContent = label(i, v);
    });
    svg("path", { d, stroke: color, fill: "none", "stroke-width": 2 }, root);
  }
  const first = svg("text", { x: L, y: H - 6, class: "date" }, root);
  first.textContent = isoMinute(points[0].t);
  const last = svg("text", { x: W, y: H - 6, "text-anchor": "end", class: "date" }, root);
  last.textContent = `${isoMinute(points[points.length - 1].t)} UTC`;
  box.replaceChildren(root);
}

document.addEventListener("DOMContentLoaded", () => {
  const cards = document.querySelector("[data-live]");
  if (cards) liveCards(cards);
  const table = document.querySelector("[data-partial]");
  if (table) liveTable(table);
  const head = document.querySelector("[data-job]");
  if (head) liveJob(head);
  const graph = document.querySelector("[data-graph]");
  if (graph) drawGraph(graph).catch((err) => { graph.textContent = `Cannot draw the graph: ${err.message}`; });
  const series = document.getElementById("series");
  if (series) {
    const points = JSON.parse(series.textContent);
    for (const box of document.querySelectorAll("[data-chart]")) drawChart(box, points);
  }
});
