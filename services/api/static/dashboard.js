// The kafka-tasks dashboard: polls the API once a second and redraws. No build step.
"use strict";

const STATES = ["PENDING", "PROGRESS", "RETRY", "COMPLETE", "FAILURE", "CANCELLED", "EXPIRED"];
const KEY_STORAGE = "kafka-tasks-api-key";
let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
let openTask = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: apiKey ? { "X-API-Key": apiKey } : {} });
  if (response.status === 401) throw new Error("unauthorized");
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function progressBar(percent) {
  return el("div", { class: "bar", title: `${percent.toFixed(0)}%` },
    el("span", { style: `width: ${Math.max(0, Math.min(100, percent))}%` }));
}

function renderTotals(counts) {
  const totals = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const perState of Object.values(counts)) {
    for (const s of STATES) totals[s] += perState[s] || 0;
  }
  $("totals").replaceChildren(...STATES.map((s) =>
    el("div", { class: "card", "data-state": s }, el("b", { class: `state-${s}` }, totals[s]), s)));
}

function renderPerTask(counts) {
  $("per-task").tHead.replaceChildren(el("tr", {}, el("th", {}, "task"),
    ...STATES.map((s) => el("th", { class: "num" }, s))));
  $("per-task").tBodies[0].replaceChildren(...Object.entries(counts).map(([task, perState]) =>
    el("tr", {}, el("td", {}, task), ...STATES.map((s) => el("td", { class: "num" }, perState[s] || 0)))));
}

function renderRates(rates) {
  const svg = $("rates");
  const complete = rates.COMPLETE || [];
  const failure = rates.FAILURE || [];
  const peak = Math.max(1, ...complete, ...failure);
  const width = 600, height = 140, step = width / Math.max(1, complete.length - 1);
  const line = (series) => series.map((v, i) =>
    `${(i * step).toFixed(1)},${(height - 4 - (v / peak) * (height - 12)).toFixed(1)}`).join(" ");
  svg.innerHTML =
    `<polyline fill="none" stroke="var(--complete)" stroke-width="2" points="${line(complete)}"/>` +
    `<polyline fill="none" stroke="var(--failure)" stroke-width="2" points="${line(failure)}"/>`;
  const last = (series) => series.slice(-10).reduce((a, b) => a + b, 0) / 10;
  $("rate-now").textContent = `scale: peak ${peak}/s · last 10 s: ` +
    `${last(complete).toFixed(1)} completed/s, ${last(failure).toFixed(1)} failed/s`;
}

function renderLag(scaling) {
  $("lag").tBodies[0].replaceChildren(...scaling.topics.map((t) =>
    el("tr", {}, el("td", {}, t.topic), el("td", { class: "num" }, t.partitions),
      el("td", { class: "num" }, t.lag), el("td", { class: "num" }, t.replicas))));
  $("lag-note").textContent = scaling.note;
}

function renderSchedules(page) {
  const when = (value) => (value ? new Date(value).toLocaleString() : "–");
  $("schedules").tBodies[0].replaceChildren(...page.items.map((s) =>
    el("tr", { "data-schedule": s.name }, el("td", {}, s.name), el("td", {}, s.task), el("td", {}, s.rule),
      el("td", {}, when(s.next_run_at)), el("td", {}, when(s.last_run_at)),
      el("td", {}, s.last_task_id ? el("a", { onclick: () => showDetail(s.last_task_id) }, s.last_task_id.slice(0, 8)) : "–"),
      el("td", { class: "num" }, s.skipped))));
  $("schedules-note").textContent = page.items.length === 0 ? "no periodic schedules"
    : (page.leader ? `fired by the worker holding the scheduler lease (${page.leader.slice(0, 8)})`
      : "no worker holds the scheduler lease right now");
}

function renderRecent(items) {
  $("recent").tBodies[0].replaceChildren(...items.map((t) => {
    const percent = t.progress ? t.progress.percent : (t.status === "COMPLETE" ? 100 : 0);
    return el("tr", { "data-task-id": t.id },
      el("td", {}, el("a", { onclick: () => showDetail(t.id) }, t.id.slice(0, 8))),
      el("td", {}, t.task),
      el("td", { class: `state-${t.status}` }, t.status,
        t.status === "PENDING" && t.due_at ? el("small", { class: "muted" }, ` until ${new Date(t.due_at).toLocaleTimeString()} (${t.held_by})`) : ""),
      el("td", {}, progressBar(percent)),
      el("td", { class: "num" }, t.attempts),
      el("td", {}, new Date(t.created_at).toLocaleTimeString()));
  }));
}

async function showDetail(id) {
  openTask = id;
  await refreshDetail();
  $("detail").hidden = false;
}

async function refreshDetail() {
  if (!openTask) return;
  const [record, history] = await Promise.all([
    api(`/tasks/${openTask}`), api(`/tasks/${openTask}/history`)]);
  $("detail-id").textContent = `${record.id} (${record.task}, ${record.status})`;
  $("detail-payload").textContent = JSON.stringify(record.payload, null, 2);
  if (record.error) {
    $("detail-outcome-title").textContent = `Error: ${record.error.type}`;
    $("detail-outcome").textContent = `${record.error.message}\n\n${record.error.traceback || ""}`;
  } else {
    $("detail-outcome-title").textContent = "Result";
    $("detail-outcome").textContent = JSON.stringify(record.result, null, 2);
  }
  $("detail-history").tBodies[0].replaceChildren(...history.map((h) =>
    el("tr", {}, el("td", { class: "num" }, h.version), el("td", { class: `state-${h.status}` }, h.status),
      el("td", {}, h.progress ? `${h.progress.percent.toFixed(0)}% ${h.progress.message}` : ""),
      el("td", {}, new Date(h.updated_at).toLocaleTimeString()))));
  await renderWorkflow(record.workflow);
}

// The workflow a task is a member of: its state, n of m done, and every member.
async function renderWorkflow(link) {
  $("detail-workflow").hidden = !link;
  if (!link) return;
  const flow = await api(`/workflows/${link.id}`);
  $("workflow-title").textContent =
    `${flow.id.slice(0, 8)} (${flow.kind}): ${flow.status}, ${flow.done} of ${flow.total} done`;
  const steps = flow.callback ? [...flow.members, flow.callback] : flow.members;
  $("workflow-members").tBodies[0].replaceChildren(...steps.map((m) => {
    const result = m.is_callback ? flow.result : flow.results[m.step];
    return el("tr", { "data-step": m.step },
      el("td", {}, m.is_callback ? "callback" : m.step), el("td", {}, m.task),
      el("td", { class: m.status ? `state-${m.status}` : "muted" }, m.status || "not submitted"),
      el("td", {}, m.task_id ? el("a", { onclick: () => showDetail(m.task_id) }, m.task_id.slice(0, 8)) : "–"),
      el("td", {}, result === null || result === undefined ? "" : JSON.stringify(result)));
  }));
}

async function refresh() {
  try {
    const [summary, recent, schedules] = await Promise.all([
      api("/dashboard/summary"), api("/tasks?limit=25"), api("/schedules")]);
    $("login").hidden = true;
    $("board").hidden = false;
    $("namespace").textContent = `namespace ${summary.namespace}`;
    renderTotals(summary.counts);
    renderPerTask(summary.counts);
    renderRates(summary.finished_per_second);
    renderLag(summary.scaling);
    renderRecent(recent.items);
    renderSchedules(schedules);
    await refreshDetail();
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (error.message === "unauthorized") {
      $("board").hidden = true;
      $("login").hidden = false;
      $("login-error").textContent = apiKey ? "that key was refused" : "";
    } else {
      $("updated").textContent = `update failed: ${error.message}`;
    }
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = $("api-key").value;
  sessionStorage.setItem(KEY_STORAGE, apiKey);
  refresh();
});
$("detail-close").addEventListener("click", () => { openTask = null; $("detail").hidden = true; });

refresh();
setInterval(refresh, 1000);
