// jwdask dashboard: programs, per-stage progress, per-exposure status, errors, quick looks.
"use strict";

const STAGES = ["detector1", "image2", "image3"];
let token = localStorage.getItem("jwdask-token") || "";
let selected = null;
const quicklookUrls = new Map();

async function api(path, options = {}) {
  const response = await fetch(path, {...options, headers: {...(options.headers || {}), Authorization: `Bearer ${token}`}});
  if (response.status === 401) {
    showLogin("the token was refused");
    throw new Error("unauthorised");
  }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("main").hidden = true;
  document.getElementById("login-error").textContent = message || "";
}

function progress(stages) {
  const cell = el("td");
  for (const stage of STAGES) {
    const c = stages[stage];
    if (!c) continue;
    const bar = el("span", {class: "bar", "data-stage": stage, title: JSON.stringify(c)});
    let left = 0;
    for (const s of ["done", "failed", "skipped"]) {
      const w = 100 * (c[s] || 0) / c.total;
      bar.append(el("span", {class: s, style: `left:${left}%;width:${w}%`}));
      left += w;
    }
    const finished = (c.done || 0) + (c.failed || 0) + (c.skipped || 0);
    cell.append(el("span", {class: "stage"}, `${stage} `, bar, `${finished}/${c.total}`));
  }
  return cell;
}

async function refreshPrograms() {
  const programs = await (await api("/api/v1/programs")).json();
  const body = document.querySelector("#programs tbody");
  body.replaceChildren(...programs.map(p => {
    const row = el("tr", {class: "program" + (p.id === selected ? " selected" : ""), "data-id": p.id,
                          onclick: () => { selected = p.id; refresh(); }},
      el("td", {}, p.name, el("br"), el("small", {}, p.id)),
      el("td", {class: `status-${p.status}`}, p.status),
      progress(p.stages),
      el("td", {}, p.created.replace("T", " ").slice(0, 19)),
      el("td", {}, ["queued", "running"].includes(p.status)
        ? el("button", {class: "cancel", onclick: e => { e.stopPropagation(); cancel(p.id); }}, "cancel") : ""));
    return row;
  }));
}

async function cancel(id) {
  await api(`/api/v1/programs/${id}/cancel`, {method: "POST"});
  refresh();
}

async function refreshDetail() {
  const section = document.getElementById("detail");
  if (!selected) { section.hidden = true; return; }
  const p = await (await api(`/api/v1/programs/${selected}`)).json();
  section.hidden = false;
  document.getElementById("detail-title").textContent = `${p.name} (${p.id}): ${p.status}`;
  document.getElementById("detail-error").textContent = p.error || "";
  const stages = STAGES.filter(s => p.jobs.some(j => j.stage === s));
  const targets = [...new Set(p.jobs.map(j => j.target))];
  document.querySelector("#exposures thead").replaceChildren(
    el("tr", {}, el("th", {}, "exposure / association"), ...stages.map(s => el("th", {}, s))));
  document.querySelector("#exposures tbody").replaceChildren(...targets.map(t => el("tr", {"data-target": t},
    el("td", {}, t), ...stages.map(s => {
      const j = p.jobs.find(x => x.target === t && x.stage === s);
      return j ? el("td", {class: `status-${j.status}`, title: j.error || j.note || ""}, j.status) : el("td");
    }))));
  document.getElementById("errors").replaceChildren(...p.jobs.filter(j => j.status === "failed").map(j =>
    el("li", {class: "error"}, `${j.key}: ${j.error_file}: ${j.error}`)));
  const products = await (await api(`/api/v1/programs/${selected}/products`)).json();
  document.getElementById("products").replaceChildren(...products.map(prod =>
    el("li", {}, el("a", {href: "#", onclick: e => { e.preventDefault(); download(prod); }}, prod.name))));
  const looks = document.getElementById("quicklooks");
  for (const prod of products.filter(x => x.quicklook)) {
    if (quicklookUrls.has(prod.quicklook)) continue;
    quicklookUrls.set(prod.quicklook, "");
    const blob = await (await api(prod.quicklook)).blob();
    const url = URL.createObjectURL(blob);
    quicklookUrls.set(prod.quicklook, url);
    looks.append(el("figure", {"data-program": selected},
      el("img", {src: url, alt: `quick look of ${prod.name}`, class: "quicklook"}), el("figcaption", {}, prod.name)));
  }
  for (const fig of looks.querySelectorAll("figure")) fig.hidden = fig.dataset.program !== selected;
  const lines = await (await api(`/api/v1/programs/${selected}/logs`)).json();
  document.getElementById("log").textContent = lines.map(l => `${l.time} ${l.level} ${l.message}`).join("\n");
}

async function download(prod) {
  const blob = await (await api(prod.url)).blob();
  const a = el("a", {href: URL.createObjectURL(blob), download: prod.name});
  a.click();
}

async function refreshCluster() {
  const info = await (await api("/api/v1/cluster")).json();
  const link = document.getElementById("dask-dashboard");
  if (info.dashboard) { link.href = info.dashboard; link.hidden = false; }
  document.getElementById("cluster").textContent = `scheduler ${info.scheduler || "in process"}, ${info.workers} worker(s)`;
}

async function refresh() {
  if (!token) { showLogin(""); return; }
  try {
    await refreshPrograms();
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    await refreshDetail();
  } catch (err) {
    console.error(err);
  }
}

document.getElementById("save-token").addEventListener("click", async () => {
  token = document.getElementById("token").value.trim();
  localStorage.setItem("jwdask-token", token);
  await refresh();
  refreshCluster().catch(console.error);
});

refresh();
if (token) refreshCluster().catch(console.error);
setInterval(refresh, 2000);
