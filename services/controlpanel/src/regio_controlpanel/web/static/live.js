// Live parts of the Control Panel's pages, written for this project (no library): they poll
// small JSON answers of the web routes with the page's session cookie.
//   [data-deployment=URL]  a deployment's status, percent and log, until it ends
//   [data-runtime-log=URL] an environment's runtime log, followed while the page is open
"use strict";

function poll(everyMs, step) {
  async function tick() {
    let again = true;
    try {
      again = await step();
    } catch (error) {
      again = true; // a network hiccup: try again at the next tick
    }
    if (again !== false) setTimeout(tick, everyMs);
  }
  tick();
}

async function getJson(url) {
  const response = await fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
  if (response.redirected || !response.ok) return null; // signed out, or gone
  return response.json();
}

function append(pre, text) {
  const following = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
  pre.append(document.createTextNode(text));
  if (following) pre.scrollTop = pre.scrollHeight;
}

function followDeployment(el) {
  const url = el.dataset.deployment;
  const log = el.querySelector("[data-log]");
  const bar = el.querySelector("[data-percent]");
  const status = el.querySelector("[data-status]");
  const error = el.querySelector("[data-error]");
  let offset = 0;
  poll(1000, async () => {
    const d = await getJson(`${url}?offset=${offset}`);
    if (d === null) return false;
    if (log && d.log) append(log, d.log);
    offset = d.next_offset;
    if (bar) { bar.value = d.percent; bar.textContent = `${d.percent}%`; }
    if (status) status.textContent = `${d.status} (${d.percent}%)`;
    const commit = el.querySelector("[data-commit]");
    if (commit && d.commit) commit.textContent = d.commit;
    el.dataset.state = d.ended ? (d.success ? "succeeded" : "failed") : "running";
    if (!d.ended) return true;
    if (error && d.error) { error.textContent = d.error; error.style.display = ""; }
    if ("reloadWhenEnded" in el.dataset) setTimeout(() => location.reload(), 1000);
    return false;
  });
}

function followRuntimeLog(el) {
  const url = el.dataset.runtimeLog;
  const pre = el.querySelector("[data-log]");
  let after = null;
  poll(2000, async () => {
    const d = await getJson(after === null ? url : `${url}?after=${after}`);
    if (d === null) return false;
    for (const line of d.lines) append(pre, `${line.timestamp} [${line.service}] ${line.message}\n`);
    after = d.after;
    return true;
  });
}

document.querySelectorAll("[data-deployment]").forEach(followDeployment);
document.querySelectorAll("[data-runtime-log]").forEach(followRuntimeLog);
