// The annotate page: leases a document from the API, shows it with scored suggestions, and submits the answer.
// No framework and nothing from a CDN. Document text is only ever set with textContent (always escaped).
(function () {
  "use strict";
  const root = document.getElementById("annotate");
  if (!root) return;
  const urls = {
    next: root.dataset.nextUrl,
    submit: root.dataset.submitUrl,
    skip: root.dataset.skipUrl,
    labels: root.dataset.labelsUrl,
  };
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const el = (id) => document.getElementById(id);
  const textEl = el("doc-text");
  const suggestionsEl = el("suggestions");
  const searchEl = el("label-search");
  const resultsEl = el("search-results");
  const chosenEl = el("chosen");
  const statusEl = el("status");

  let current = null; // the served payload
  let chosen = new Set();
  let shownAt = 0;
  let results = [];
  let highlighted = -1;
  let done = 0;
  let busy = false;
  let searchTimer = null;

  function setStatus(message, isError) {
    statusEl.textContent = message || "";
    statusEl.classList.toggle("error", Boolean(isError));
  }

  async function api(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
    if (response.status === 204) return { status: 204, reason: response.headers.get("X-Reason") };
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : "request failed (" + response.status + ")";
      throw new Error(detail);
    }
    return { status: response.status, body: body };
  }

  function renderChosen() {
    chosenEl.replaceChildren();
    for (const name of chosen) {
      const li = document.createElement("li");
      li.className = "chip";
      const span = document.createElement("span");
      span.textContent = name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chip-remove";
      remove.setAttribute("aria-label", "Remove " + name);
      remove.textContent = "×";
      remove.addEventListener("click", () => toggle(name));
      li.append(span, remove);
      chosenEl.append(li);
    }
    el("none-apply").hidden = chosen.size > 0;
    for (const box of suggestionsEl.querySelectorAll("input[type=checkbox]")) {
      box.checked = chosen.has(box.dataset.label);
    }
  }

  function toggle(name) {
    if (chosen.has(name)) chosen.delete(name); else chosen.add(name);
    renderChosen();
  }

  function renderSuggestions(suggestions) {
    suggestionsEl.replaceChildren();
    el("no-suggestions").hidden = suggestions.length > 0;
    suggestions.forEach((s, i) => {
      const li = document.createElement("li");
      li.className = "suggestion";
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.dataset.label = s.label;
      box.checked = chosen.has(s.label);
      box.addEventListener("change", () => toggle(s.label));
      const key = document.createElement("kbd");
      key.textContent = i < 9 ? String(i + 1) : (i === 9 ? "0" : "");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = s.label;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = s.score.toFixed(2);
      const bar = document.createElement("span");
      bar.className = "score-bar";
      const fill = document.createElement("span");
      fill.style.width = Math.round(s.score * 100) + "%";
      bar.append(fill);
      label.append(box, key, name, bar, score);
      li.append(label);
      suggestionsEl.append(li);
    });
  }

  function showEmpty(reason) {
    current = null;
    textEl.hidden = true;
    const empty = el("empty");
    empty.hidden = false;
    empty.textContent = reason === "budget"
      ? "The label budget of this project is spent. Thank you!"
      : "Nothing left to label right now. Thank you!";
    renderSuggestions([]);
    el("no-suggestions").hidden = true;
    el("provenance").textContent = "";
  }

  async function loadNext() {
    setStatus("");
    chosen = new Set();
    renderChosen();
    clearResults();
    searchEl.value = "";
    let result;
    try {
      result = await api(urls.next);
    } catch (err) {
      setStatus(err.message, true);
      return;
    }
    if (result.status === 204) { showEmpty(result.reason); return; }
    current = result.body;
    textEl.hidden = false;
    el("empty").hidden = true;
    textEl.textContent = current.document.text;
    textEl.scrollTop = 0;
    for (const s of current.suggestions) if (s.preselected) chosen.add(s.label);
    renderSuggestions(current.suggestions);
    renderChosen();
    const version = current.model_version ? "model v" + current.model_version : "no model yet";
    el("provenance").textContent = "Document " + current.document.external_id + " · picked by " +
      current.strategy.replace("_", " ") + " · " + version;
    shownAt = performance.now();
  }

  async function submit() {
    if (!current || busy) return;
    busy = true;
    try {
      await api(urls.submit, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({
          document: current.document.id,
          labels: Array.from(chosen),
          seconds_spent: Math.round((performance.now() - shownAt) / 100) / 10,
          source: "ui",
        }),
      });
      done += 1;
      el("done-count").textContent = String(done);
      await loadNext();
      setStatus("Saved.");
    } catch (err) {
      setStatus(err.message, true);
    } finally {
      busy = false;
    }
  }

  async function skip() {
    if (!current || busy) return;
    busy = true;
    try {
      await api(urls.skip, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ document: current.document.id }),
      });
      await loadNext();
      setStatus("Skipped.");
    } catch (err) {
      setStatus(err.message, true);
    } finally {
      busy = false;
    }
  }

  function clearResults() {
    results = [];
    highlighted = -1;
    resultsEl.replaceChildren();
    searchEl.setAttribute("aria-expanded", "false");
  }

  function renderResults() {
    resultsEl.replaceChildren();
    results.forEach((label, i) => {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.id = "result-" + i;
      li.className = "result" + (i === highlighted ? " active" : "") + (chosen.has(label.name) ? " chosen" : "");
      li.textContent = label.name;
      if (label.description) li.title = label.description;
      li.addEventListener("mousedown", (event) => { event.preventDefault(); pick(i); });
      resultsEl.append(li);
    });
    searchEl.setAttribute("aria-expanded", results.length ? "true" : "false");
    if (highlighted >= 0) searchEl.setAttribute("aria-activedescendant", "result-" + highlighted);
  }

  function pick(i) {
    const label = results[i];
    if (!label) return;
    if (!chosen.has(label.name)) chosen.add(label.name);
    renderChosen();
    searchEl.value = "";
    clearResults();
  }

  async function search() {
    const q = searchEl.value.trim();
    if (!q) { clearResults(); return; }
    try {
      const result = await api(urls.labels + "?limit=15&q=" + encodeURIComponent(q));
      if (searchEl.value.trim() !== q) return; // a newer query is on its way
      results = result.body;
      highlighted = results.length ? 0 : -1;
      renderResults();
    } catch (err) {
      setStatus(err.message, true);
    }
  }

  searchEl.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 120);
  });
  searchEl.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && results.length) {
      highlighted = (highlighted + 1) % results.length; renderResults(); event.preventDefault();
    } else if (event.key === "ArrowUp" && results.length) {
      highlighted = (highlighted - 1 + results.length) % results.length; renderResults(); event.preventDefault();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (event.ctrlKey || event.metaKey) { submit(); return; }
      if (highlighted >= 0) pick(highlighted);
    } else if (event.key === "Escape") {
      clearResults(); searchEl.blur(); event.preventDefault();
    }
  });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLInputElement && !["checkbox", "radio", "button", "submit"].includes(target.type));
    if (typing) return;
    if (event.key === "/") { searchEl.focus(); event.preventDefault(); return; }
    if (event.key === "Enter" && !(event.target instanceof HTMLButtonElement)) {
      submit(); event.preventDefault(); return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (/^[0-9]$/.test(event.key) && current) {
      const index = event.key === "0" ? 9 : Number(event.key) - 1;
      const s = current.suggestions[index];
      if (s) { toggle(s.label); event.preventDefault(); }
      return;
    }
    if (event.key === "s") { skip(); event.preventDefault(); }
  });
  el("submit").addEventListener("click", submit);
  el("skip").addEventListener("click", skip);

  // Keep the lease while the page is open: `next` renews the lease of the document already held.
  setInterval(() => { if (current && document.visibilityState === "visible") api(urls.next).catch(() => {}); }, 60000);

  loadNext();
})();
