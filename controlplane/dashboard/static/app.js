// Strait's mesh dashboard: draws /dashboard/api/graph as SVG and refreshes it every few
// seconds; a click on a node shows what applies to it in the side panel.
//
// Safety: every value from metrics or config is attacker-influenced (a request's Host header
// can become a service name). It is only ever set as text (textContent, createTextNode) or as
// an attribute value through setAttribute — never parsed as HTML.
"use strict";

const REFRESH_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
const COL_W = 270, ROW_H = 96, PAD_X = 90, PAD_Y = 60;

let graph = null;     // the latest graph
let selected = null;  // id of the node shown in the panel

// el creates an HTML element; children that are strings become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

// svg creates an SVG element with attributes.
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) if (c) e.append(c);
  return e;
}

function svgText(text, attrs) {
  const t = svg("text", attrs);
  t.textContent = text;
  return t;
}

function clip(s, n) {
  s = String(s);
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

function fmtRate(r) {
  if (r === 0) return "0 rps";
  return (r < 10 ? r.toFixed(2) : r.toFixed(1)) + " rps";
}

function fmtBytes(b) {
  const units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b.toFixed(0) : b.toFixed(1)) + " " + units[i];
}

function fmtPct(x) {
  return (x * 100 < 10 ? (x * 100).toFixed(1) : (x * 100).toFixed(0)) + "%";
}

function fmtMs(x) {
  return x === undefined || x === null ? "–" : (x < 10 ? x.toFixed(1) : x.toFixed(0)) + " ms";
}

// edgeClass is an edge's look: tcp, idle, bad, warn or ok.
function edgeClass(e) {
  if (e.protocol === "tcp") return e.bytesPerSecond > 0 ? "tcp" : "idle";
  if (!(e.requestsPerSecond > 0)) return "idle";
  if (e.errorRate >= 0.2) return "bad";
  if (e.errorRate >= 0.01) return "warn";
  return "ok";
}

function edgeLabel(e) {
  const parts = [];
  if (e.protocol === "tcp") {
    parts.push(fmtBytes(e.bytesPerSecond || 0));
  } else {
    parts.push(fmtRate(e.requestsPerSecond));
    if (e.errorRate > 0) parts.push(fmtPct(e.errorRate) + " 5xx");
  }
  if (e.share > 0 && e.share < 0.9995) parts.push(fmtPct(e.share));
  return parts.join(" · ");
}

// layout places nodes in columns by their longest path from a node without callers, and
// orders each column by namespace and name; the result only depends on the graph.
function layout(g) {
  const depth = new Map(g.nodes.map(n => [n.id, 0]));
  const n = g.nodes.length;
  for (let round = 0; round < n; round++) {
    let changed = false;
    for (const e of g.edges) {
      const d = (depth.get(e.source) ?? 0) + 1;
      if (e.source !== e.target && depth.has(e.target) && d > depth.get(e.target) && d < n) {
        depth.set(e.target, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const used = [...new Set(depth.values())].sort((a, b) => a - b);
  const columns = used.map(() => []);
  for (const node of g.nodes) columns[used.indexOf(depth.get(node.id))].push(node);
  const pos = new Map();
  let rows = 0;
  columns.forEach((col, ci) => {
    col.sort((a, b) => (a.namespace || "").localeCompare(b.namespace || "") || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    col.forEach((node, ri) => pos.set(node.id, { x: PAD_X + ci * COL_W, y: PAD_Y + ri * ROW_H, col: ci }));
    rows = Math.max(rows, col.length);
  });
  // Center shorter columns vertically.
  columns.forEach(col => {
    const shift = (rows - col.length) * ROW_H / 2;
    for (const node of col) pos.get(node.id).y += shift;
  });
  return { pos, width: PAD_X * 2 + Math.max(0, columns.length - 1) * COL_W, height: PAD_Y * 2 + Math.max(0, rows - 1) * ROW_H + 20 };
}

function nodeShape(kind) {
  switch (kind) {
    case "service": return svg("polygon", { class: "shape", points: "0,-20 19,14 -19,14" });
    case "gateway": return svg("rect", { class: "shape", x: -17, y: -17, width: 34, height: 34, rx: 5, transform: "rotate(45)" });
    default: return svg("circle", { class: "shape", r: 17 });
  }
}

function lockIcon(x, y) {
  return svg("g", { class: "lock", transform: `translate(${x},${y})` },
    svg("path", { class: "shackle", d: "M-3.2,-1 V-4 A3.2,3.2 0 0 1 3.2,-4 V-1" }),
    svg("rect", { x: -5, y: -1.5, width: 10, height: 8, rx: 1.5 }),
    svgTitle("mutual TLS"));
}

function svgTitle(text) {
  const t = svg("title");
  t.textContent = text;
  return t;
}

function edgeTitle(e) {
  const lines = [`${e.source} → ${e.target} (${e.protocol}, reported by the ${e.reporter})`];
  if (e.protocol === "tcp") {
    lines.push(`${fmtBytes(e.bytesPerSecond || 0)}, ${Math.round(e.total)} bytes in all`);
  } else {
    lines.push(`${fmtRate(e.requestsPerSecond)}, ${fmtPct(e.errorRate)} 5xx, p50 ${fmtMs(e.p50Ms)}, p99 ${fmtMs(e.p99Ms)}`);
    lines.push(`${Math.round(e.total)} requests in all`);
  }
  if (e.share > 0) lines.push(`${fmtPct(e.share)} of the caller's traffic`);
  lines.push(e.mtls ? "mutual TLS" : "not known to be mutual TLS");
  return lines.join("\n");
}

function draw(g) {
  const root = document.getElementById("svg");
  const { pos, width, height } = layout(g);
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.setAttribute("width", width);
  root.setAttribute("height", height);
  const defs = svg("defs");
  for (const cls of ["ok", "warn", "bad", "tcp", "idle"]) {
    defs.append(svg("marker", { id: "arrow-" + cls, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-" + cls })));
  }
  const edges = svg("g", { class: "edges" });
  const labels = svg("g", { class: "labels" });
  for (const e of g.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const cls = edgeClass(e);
    let d, mx, my;
    if (b.col > a.col) {
      const x1 = a.x + 24, x2 = b.x - 26, c = (x2 - x1) / 2;
      d = `M${x1},${a.y} C${x1 + c},${a.y} ${x2 - c},${b.y} ${x2},${b.y}`;
      mx = (x1 + x2) / 2; my = (a.y + b.y) / 2;
    } else { // same column or backwards: arc above
      const top = Math.min(a.y, b.y) - ROW_H * 0.6;
      d = `M${a.x},${a.y - 22} C${a.x},${top} ${b.x},${top} ${b.x},${b.y - 24}`;
      mx = (a.x + b.x) / 2; my = top + 10;
    }
    const g1 = svg("g", {
      class: "edge " + cls, "data-source": e.source, "data-target": e.target, "data-protocol": e.protocol,
      "data-rps": e.requestsPerSecond, "data-bps": e.bytesPerSecond || 0, "data-share": e.share, "data-mtls": e.mtls,
    }, svg("path", { class: "line", d, "marker-end": `url(#arrow-${cls})`, "stroke-width": 1.5 + Math.min(5, Math.log10(1 + (e.requestsPerSecond || (e.bytesPerSecond || 0) / 1024)) * 2.5) }));
    g1.append(svgTitle(edgeTitle(e)));
    edges.append(g1);
    const label = edgeLabel(e);
    const lg = svg("g", { class: "edge-label " + cls, "data-source": e.source, "data-target": e.target },
      svgText(label, { x: mx, y: my - 5 }));
    if (e.mtls) lg.append(lockIcon(mx + label.length * 3.2 + 10, my - 9));
    labels.append(lg);
  }
  const nodes = svg("g", { class: "nodes" });
  for (const n of g.nodes) {
    const p = pos.get(n.id);
    const sub = [n.namespace, n.version].filter(Boolean).join(" · ");
    const gn = svg("g", { class: `node ${n.kind}` + (n.id === selected ? " selected" : ""), transform: `translate(${p.x},${p.y})`,
      "data-id": n.id, "data-kind": n.kind, tabindex: 0, role: "button" },
      nodeShape(n.kind),
      svgText(clip(n.name, 30), { y: 34 }),
      sub ? svgText(clip(sub, 34), { y: 48, class: "sub" }) : null);
    gn.append(svgTitle(`${n.kind} ${n.service || (n.namespace ? n.namespace + "/" : "") + n.name}`));
    gn.addEventListener("click", () => select(n.id));
    gn.addEventListener("keydown", ev => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(n.id); } });
    nodes.append(gn);
  }
  root.replaceChildren(defs, edges, nodes, labels);
  document.getElementById("empty").hidden = g.nodes.length > 0;
}

function drawStatus(g) {
  const failed = g.proxies.filter(p => p.error);
  const parts = [`Updated ${new Date(g.generatedAt).toLocaleTimeString()}`,
    g.windowSeconds > 0 ? `rates over ${g.windowSeconds.toFixed(0)} s` : "rates after the second scrape",
    `${g.proxies.length} proxies`];
  if (failed.length) parts.push(`${failed.length} not scraped`);
  if (g.truncated && g.truncated.length) parts.push("limits reached");
  const status = document.getElementById("status");
  status.textContent = parts.join(" · ");
  status.title = failed.map(p => `${p.proxy}: ${p.error}`).concat(g.truncated || []).join("\n");
}

async function refresh() {
  try {
    const r = await fetch("api/graph", { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) throw new Error(`graph: ${r.status}`);
    graph = await r.json();
    draw(graph);
    drawStatus(graph);
  } catch (err) {
    document.getElementById("status").textContent = "Cannot reach straitd: " + err.message;
  }
}

// ---- side panel ----

function section(title, ...content) {
  return [el("h3", {}, title), ...content];
}

function list(items, render) {
  if (!items || items.length === 0) return el("p", { class: "muted" }, "none");
  return el("ul", {}, ...items.map(i => el("li", {}, ...[].concat(render(i)))));
}

// nodeName is how the panel names a node of the graph.
function nodeName(id) {
  const n = graph && graph.nodes.find(x => x.id === id);
  if (!n) return id.replace(/^(workload|service):/, "");
  return n.kind === "service" ? n.service : (n.namespace ? n.namespace + "/" : "") + n.name;
}

function trafficSection(edges, id) {
  return section("Traffic", list(edges, e => {
    const other = e.source === id ? "→ " + nodeName(e.target) : "← " + nodeName(e.source);
    return [other + ": " + edgeLabel(e) + (e.protocol !== "tcp" ? `, p50 ${fmtMs(e.p50Ms)}, p99 ${fmtMs(e.p99Ms)}` : ""), e.mtls ? " (mutual TLS)" : ""];
  }));
}

function proxiesSection(proxies) {
  if (!proxies || proxies.length === 0) return section("Proxies", el("p", { class: "muted" }, "none connected"));
  const types = ["CDS", "LDS", "EDS", "RDS"];
  const rows = proxies.map(p => el("tr", {}, el("td", {}, p.proxy),
    ...types.map(t => { const s = (p.types && p.types[t] && p.types[t].status) || "–"; return el("td", { class: s.replace(/[^A-Z]/g, "") }, s); })));
  return section("Proxies", el("table", {}, el("tr", {}, el("th", {}, "proxy"), ...types.map(t => el("th", {}, t))), ...rows));
}

function policiesSection(wps) {
  return section("Policies", list(wps, w => {
    const parts = [];
    if (w.workloads && w.workloads.length) parts.push(w.workloads.join(", ") + ": ");
    parts.push("mTLS " + (w.mtls || []).map(m => (m.port ? m.port + " " : "") + m.mode).join(", "));
    for (const p of w.authorizationPolicies || []) parts.push(`; ${p.action} ${p.namespace}/${p.name}`);
    for (const p of w.peerAuthentications || []) parts.push(`; PeerAuthentication ${p}`);
    for (const p of w.requestAuthentications || []) parts.push(`; RequestAuthentication ${p}`);
    if (w.sidecar) parts.push(`; Sidecar ${w.sidecar}`);
    return parts.join("");
  }));
}

function routeText(r) {
  const dests = (r.destinations || []).map(d => `${d.host}${d.subset ? " (" + d.subset + ")" : ""} ${d.weight}%`).join(", ");
  return `${r.protocol}${r.name ? " " + r.name : ""}${r.match && r.match.length ? " [" + r.match.join(" | ") + "]" : ""} → ${dests || "–"}` +
    (r.other && r.other.length ? "; " + r.other.join("; ") : "");
}

function renderService(view, node) {
  const r = view.report;
  const s = r.service;
  const out = [el("h2", {}, s.hostname),
    el("p", { class: "muted" }, `service in ${s.namespace} · ${s.origin} · ${s.location} · ${s.resolution}`)];
  out.push(...section("Ports", list(s.ports, p => `${p.number} ${p.name} (${p.protocol})` + (p.targetPort ? ` → ${p.targetPort}` : ""))));
  out.push(...trafficSection(view.edges, node.id));
  out.push(...section("VirtualServices", list(r.virtualServices, v => [
    `${v.namespace}/${v.name} (${v.reason}${v.shadowedBy ? ", shadowed by " + v.shadowedBy : ""})`,
    list(v.routes, routeText)])));
  const dr = r.destinationRule;
  out.push(...section("DestinationRule", dr ? el("div", {},
    el("p", {}, `${dr.namespace}/${dr.name}` + (dr.trafficPolicy && dr.trafficPolicy.tlsMode ? ` · TLS ${dr.trafficPolicy.tlsMode}` : "")),
    list(dr.subsets, ss => `subset ${ss.name}: ${Object.entries(ss.labels || {}).map(([k, v]) => k + "=" + v).join(", ")} (${ss.endpoints} endpoint${ss.endpoints === 1 ? "" : "s"})`))
    : el("p", { class: "muted" }, "none")));
  out.push(...section("Endpoints", list(r.endpoints, e => `${e.address}:${e.port} ${e.workload || ""} ${e.healthy ? "healthy" : "unhealthy"}`)));
  out.push(...policiesSection(r.workloads));
  out.push(...proxiesSection(view.proxies));
  if (r.warnings && r.warnings.length) out.push(...section("Warnings", list(r.warnings, w => w)));
  return out;
}

function renderWorkload(view, node) {
  const r = view.report;
  const w = r.workload;
  const out = [el("h2", {}, w.name),
    el("p", { class: "muted" }, `workload in ${w.namespace}${w.address ? " · " + w.address : ""} · ${w.source}`)];
  out.push(...section("Labels", list(Object.entries(w.labels || {}), ([k, v]) => `${k}=${v}`)));
  out.push(...trafficSection(view.edges, node.id));
  out.push(...section("Services", list(r.services, s => s.service.hostname)));
  out.push(...policiesSection([r.policies]));
  out.push(...proxiesSection(view.proxies));
  return out;
}

async function select(id) {
  selected = id;
  if (graph) draw(graph);
  const node = graph && graph.nodes.find(n => n.id === id);
  const panel = document.getElementById("panel");
  const body = document.getElementById("panel-body");
  panel.hidden = false;
  if (!node) return;
  body.replaceChildren(el("h2", {}, node.service || node.name), el("p", { class: "muted" }, "Loading…"));
  let url;
  if (node.kind === "service") url = "api/service?name=" + encodeURIComponent(node.service);
  else if (node.kind === "workload" || node.kind === "gateway") url = "api/workload?name=" + encodeURIComponent(node.name) + "&namespace=" + encodeURIComponent(node.namespace || "");
  if (!url) {
    body.replaceChildren(el("h2", {}, node.name), el("p", { class: "muted" }, "A peer the metrics do not name."));
    return;
  }
  try {
    const r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (selected !== id) return;
    if (!r.ok) {
      const edges = graph.edges.filter(e => e.source === id || e.target === id);
      body.replaceChildren(el("h2", {}, node.service || node.name), el("p", { class: "error" }, (await r.text()).trim()),
        ...trafficSection(edges, id));
      return;
    }
    const view = await r.json();
    if (selected !== id) return;
    body.replaceChildren(...(node.kind === "service" ? renderService(view, node) : renderWorkload(view, node)));
  } catch (err) {
    body.replaceChildren(el("h2", {}, node.name), el("p", { class: "error" }, "Cannot reach straitd: " + err.message));
  }
}

document.getElementById("close").addEventListener("click", () => {
  selected = null;
  document.getElementById("panel").hidden = true;
  if (graph) draw(graph);
});

refresh();
setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
