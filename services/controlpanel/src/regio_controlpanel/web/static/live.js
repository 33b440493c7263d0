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
    if (error && d.error) { error.textContent = d.error; error.hidden = false; }
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

// The pages carry no inline script (their Content-Security-Policy forbids it), so what a form
// or link does beyond submitting is declared in data attributes and done here:
//   form[data-confirm]  asks before sending; "{field}" is replaced by that field's chosen option
//   a[data-back]        goes back in the history (the link's address is for when there is none)
function confirmBeforeSending(form) {
  form.addEventListener("submit", (event) => {
    const question = form.dataset.confirm.replace(/\{(\w+)\}/g, (_, name) => {
      const field = form.elements[name];
      return field?.selectedOptions?.[0]?.text ?? field?.value ?? "";
    });
    if (!confirm(question)) event.preventDefault();
  });
}

function backInHistory(link) {
  link.addEventListener("click", (event) => {
    if (history.length > 1) { event.preventDefault(); history.back(); }
  });
}

document.querySelectorAll("form[data-confirm]").forEach(confirmBeforeSending);
document.querySelectorAll("a[data-back]").forEach(backInHistory);
document.querySelectorAll("[data-deployment]").forEach(followDeployment);
document.querySelectorAll("[data-runtime-log]").forEach(followRuntimeLog);
