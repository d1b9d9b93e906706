// jobworkerp dashboard: the few live parts. No framework, no build step. Everything shown is set
// with textContent (never innerHTML), so values from the server stay text.
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function statusClass(name) {
  if (name === "SUCCESS") return "ok";
  if (name === "CANCELLED") return "muted";
  if (name === "running" || name === "RUNNING") return "run";
  if (name === "queued" || name === "scheduled" || name === "PENDING") return "wait";
  return "bad";
}

function short(value, limit) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? text.slice(0, limit) + "…" : text;
}

// Hidden "tz" inputs: the browser's offset from UTC, so datetime-local values mean local time.
function fillTimeZones() {
  for (const input of document.querySelectorAll("input.tz")) {
    input.value = String(new Date().getTimezoneOffset());
  }
}

// Forms that delete something ask first.
function confirmForms() {
  for (const form of document.querySelectorAll("form.confirm")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm || "Sure?")) event.preventDefault();
    });
  }
}

// ---- overview: numbers and charts --------------------------------------------------------
const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030", "#2c7a7b"];

function drawChart(canvas, starts, series, opts) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 44, bottom = 20, top = 8, right = 8;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px sans-serif";
  let max = opts.max || 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  if (max <= 0) max = 1;
  ctx.strokeStyle = "#d0d7de"; ctx.fillStyle = "#57606a"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + (h - top - bottom) * (1 - i / 4);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
    const label = opts.percent ? Math.round(max * i / 4 * 100) + "%" : (max * i / 4).toFixed(max < 4 ? 1 : 0);
    ctx.fillText(label, 4, y + 4);
  }
  const n = starts.length;
  const x = (i) => left + (w - left - right) * (n <= 1 ? 0 : i / (n - 1));
  for (const minutes of [10, 5, 0]) {
    const i = n - 1 - minutes * 60 / 5;
    if (i >= 0) ctx.fillText(minutes ? `-${minutes} min` : "now", Math.min(x(i) - 10, w - 30), h - 5);
  }
  series.forEach((s, k) => {
    ctx.strokeStyle = COLORS[k % COLORS.length]; ctx.lineWidth = 2; ctx.beginPath();
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const y = top + (h - top - bottom) * (1 - v / max);
      if (pen) ctx.lineTo(x(i), y); else ctx.moveTo(x(i), y);
      pen = true;
    });
    ctx.stroke();
    ctx.fillStyle = COLORS[k % COLORS.length];
    ctx.fillText(s.name, left + 6 + k * 110, top + 12);
  });
}

function channelLabel(name) { return name === "__default_job_channel__" ? "default" : name; }

function renderChannels(tbody, channels) {
  tbody.replaceChildren();
  for (const c of channels) {
    const row = el("tr");
    row.append(el("td", c.channel), el("td", c.concurrency === null ? "–" : c.concurrency), el("td", c.workers));
    const queued = el("td", c.queued_total + " ");
    let detail = `(${c.queued.HIGH} / ${c.queued.MEDIUM} / ${c.queued.LOW}`;
    if (c.queued_unknown) detail += `, ${c.queued_unknown} unknown`;
    queued.append(el("small", detail + ")"));
    const running = el("td", c.running + " ");
    if (c.wait_result) running.append(el("small", `+${c.wait_result} reporting`));
    row.append(queued, el("td", c.scheduled), running, ...hostCells(c));
    tbody.append(row);
  }
}

// Runner hosts (exclusive / shared) and their restarts, the causes in a small list and on hover.
function hostCells(c) {
  if (c.hosts === null) return [el("td", "–", "hosts"), el("td", "–", "restarts")];
  const hosts = el("td", c.hosts + " ", "hosts");
  hosts.append(el("small", `(${c.exclusive_hosts} / ${c.shared_hosts})`));
  hosts.title = `in ${c.processes} worker process(es)`;
  const restarts = el("td", c.restarts + " ", "restarts");
  const causes = c.restarts_by_cause.map(([cause, n]) => `${cause} ${n}`);
  if (causes.length) restarts.append(el("small", `(${causes.join(", ")})`));
  restarts.title = causes.length ? c.restarts_by_cause.map(([cause, n]) => `${cause}: ${n}`).join(", ") : "none";
  return [hosts, restarts];
}

async function pollOverview(root) {
  const rateCanvas = document.getElementById("chart-rate");
  const failCanvas = document.getElementById("chart-failure");
  const tbody = document.querySelector("#channels tbody");
  async function once() {
    let state;
    try {
      const response = await fetch(root.dataset.endpoint, {credentials: "same-origin", cache: "no-store"});
      if (!response.ok) return;
      state = await response.json();
    } catch (e) { return; }
    document.getElementById("in-flight").textContent = state.in_flight + (state.truncated ? "+" : "");
    document.getElementById("workers-count").textContent = state.workers;
    renderChannels(tbody, state.channels);
    const rates = state.rates;
    const names = Object.keys(rates.channels);
    const rate = names.map((n) => ({name: channelLabel(n), values: rates.channels[n].finished_per_s}));
    const fail = names.map((n) => ({name: channelLabel(n), values: rates.channels[n].failure_rate}));
    drawChart(rateCanvas, rates.starts, rate, {});
    drawChart(failCanvas, rates.starts, fail, {percent: true, max: 1});
    let now = 0, finished = 0, failed = 0;
    for (const n of names) {
      const r = rates.channels[n].finished_per_s, f = rates.channels[n].failure_rate;
      now += r[r.length - 1] || 0;
      for (let i = Math.max(0, r.length - 12); i < r.length; i++) {
        finished += r[i] * rates.bucket_s;
        failed += (f[i] || 0) * r[i] * rates.bucket_s;
      }
    }
    document.getElementById("rate-now").textContent = now.toFixed(1);
    document.getElementById("failure-now").textContent = finished ? (100 * failed / finished).toFixed(1) + "%" : "–";
    const note = document.getElementById("rates-note");
    if (rates.since_ms) {
      let text = `Counting since ${new Date(rates.since_ms).toLocaleTimeString()} from the result streams of ${rates.followed} worker(s)`;
      if (rates.skipped) text += ` (${rates.skipped} more not followed)`;
      note.textContent = text + "; DIRECT workers have no stream and are not counted.";
    }
  }
  await once();
  setInterval(once, 2000);
}

// ---- live tail -----------------------------------------------------------------------------
function followLive(table) {
  const tbody = table.querySelector("tbody");
  const state = document.getElementById("live-state");
  const seen = new Set();
  const source = new EventSource(table.dataset.stream);
  function setState(text, cls) { state.textContent = text; state.className = "status " + cls; }
  source.addEventListener("ready", () => setState("live", "ok"));
  source.addEventListener("result", (event) => {
    const r = JSON.parse(event.data);
    if (seen.has(r.id)) return;
    seen.add(r.id);
    const row = el("tr");
    row.dataset.result = r.id;
    const link = el("a", r.id); link.href = "/results/" + encodeURIComponent(r.id);
    const idCell = el("td"); idCell.append(link);
    const status = el("td"); status.append(el("span", r.status, "status " + statusClass(r.status)));
    const output = (r.output || []).map((item) => typeof item === "string" ? item : JSON.stringify(item)).join("\n");
    row.append(idCell, el("td", r.job_id), status, el("td", r.end_time || "–"), el("td", short(r.args, 80), "mono"),
               el("td", short(output, 200), "mono output"));
    tbody.prepend(row);
    while (tbody.rows.length > 500) tbody.deleteRow(-1);
  });
  source.addEventListener("dropped", (event) => {
    const info = JSON.parse(event.data);
    const row = el("tr"); row.append(el("td", `${info.count} result(s) skipped: this page fell behind`, "muted"));
    tbody.prepend(row);
  });
  source.addEventListener("end", (event) => { setState(JSON.parse(event.data).message, "bad"); source.close(); });
  source.onerror = () => setState("reconnecting…", "wait");
}

document.addEventListener("DOMContentLoaded", () => {
  fillTimeZones();
  confirmForms();
  const overview = document.getElementById("overview-live");
  if (overview) pollOverview(overview);
  const live = document.getElementById("live-table");
  if (live) followLive(live);
});
