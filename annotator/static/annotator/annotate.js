// The annotate page: leases a document from the API, shows it with scored suggestions to accept or reject,
// searches labels on the server, submits, and lets the expert undo (revise) earlier answers. Keyboard first.
// No framework and nothing from a CDN. Document text and label names are only ever set with textContent.
(function () {
  "use strict";
  const root = document.getElementById("annotate");
  if (!root) return;
  const urls = {
    next: root.dataset.nextUrl,
    submit: root.dataset.submitUrl,
    skip: root.dataset.skipUrl,
    lease: root.dataset.leaseUrl,
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
  const helpEl = el("help");

  let current = null; // {document, suggestions, revising: bool, ...}
  let held = null; // id of the document leased to us (kept while revising an earlier one)
  let chosen = new Set();
  let rejected = new Set();
  let shownAt = 0;
  let results = [];
  let highlighted = -1;
  let busy = false;
  let searchTimer = null;
  let renewTimer = null;
  let showDescriptions = false;
  const history = []; // document ids submitted in this session, last at the end (undo pops)
  const session = { done: 0, seconds: 0 };

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

  function post(url, payload) {
    return api(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(payload),
    });
  }

  // --- session feedback ------------------------------------------------------------------------------------------
  function renderSession(budget) {
    el("done-count").textContent = String(session.done);
    el("avg-time").textContent = session.done ? (session.seconds / session.done).toFixed(1) + " s" : "–";
    if (budget) {
      el("budget-left").textContent = budget.label_budget === null
        ? "no budget set"
        : budget.remaining + " of " + budget.label_budget + " left in the budget";
    }
    el("undo").disabled = history.length === 0;
  }

  setInterval(() => {
    el("doc-time").textContent = current ? Math.round((performance.now() - shownAt) / 1000) + " s" : "–";
  }, 1000);

  // --- chosen labels and suggestions -------------------------------------------------------------------------------
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
      remove.addEventListener("click", () => accept(name));
      li.append(span, remove);
      chosenEl.append(li);
    }
    el("none-apply").hidden = chosen.size > 0;
    for (const li of suggestionsEl.children) {
      const name = li.dataset.label;
      li.querySelector("input[type=checkbox]").checked = chosen.has(name);
      li.classList.toggle("rejected", rejected.has(name));
      const reject = li.querySelector(".reject");
      reject.setAttribute("aria-pressed", rejected.has(name) ? "true" : "false");
    }
  }

  function accept(name) { // toggles a label in or out of the answer
    if (chosen.has(name)) chosen.delete(name); else { chosen.add(name); rejected.delete(name); }
    renderChosen();
  }

  function reject(name) { // toggles an explicit rejection of a suggestion
    if (rejected.has(name)) rejected.delete(name); else { rejected.add(name); chosen.delete(name); }
    renderChosen();
  }

  function keyName(i) { return i < 9 ? String(i + 1) : (i === 9 ? "0" : ""); }

  function renderSuggestions(suggestions) {
    suggestionsEl.replaceChildren();
    el("no-suggestions").hidden = suggestions.length > 0;
    suggestions.forEach((s, i) => {
      const li = document.createElement("li");
      li.className = "suggestion";
      li.dataset.label = s.label;
      if (s.description) li.title = s.description;
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.dataset.label = s.label;
      box.addEventListener("change", () => accept(s.label));
      const key = document.createElement("kbd");
      key.textContent = keyName(i);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = s.label;
      const bar = document.createElement("span");
      bar.className = "score-bar";
      const fill = document.createElement("span");
      fill.style.width = Math.round(s.score * 100) + "%";
      bar.append(fill);
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = s.score.toFixed(2);
      label.append(box, key, name, bar, score);
      const no = document.createElement("button");
      no.type = "button";
      no.className = "reject";
      no.textContent = "✗";
      no.title = "Reject (Shift+" + keyName(i) + ")";
      no.setAttribute("aria-label", "Reject " + s.label);
      no.addEventListener("click", () => reject(s.label));
      const description = document.createElement("p");
      description.className = "description";
      description.textContent = s.description || "No description.";
      description.hidden = !showDescriptions;
      li.append(label, no, description);
      suggestionsEl.append(li);
    });
  }

  // Why some suggestions come pre-ticked (the `pretick` rule of `next`); hidden while revising and without suggestions.
  function renderPretick(rule) {
    const box = el("pretick-rule");
    box.hidden = !rule;
    if (!rule) { box.textContent = ""; return; }
    const percent = (share) => Math.round(share * 100) + " %";
    if (rule.threshold === null) {
      box.textContent = "Nothing pre-ticked: " + rule.reason + ".";
      return;
    }
    let text = "Pre-ticked: suggestions scoring ≥ " + String(Number(rule.threshold.toFixed(3)));
    if (typeof rule.precision === "number") text += " — right " + percent(rule.precision) + " of the time";
    box.textContent = text + " (floor " + percent(rule.floor) + "; " + rule.source + ").";
  }

  function toggleDescriptions() {
    showDescriptions = !showDescriptions;
    for (const p of suggestionsEl.querySelectorAll(".description")) p.hidden = !showDescriptions;
  }

  // --- showing a document ------------------------------------------------------------------------------------------
  function show(payload, revising) {
    current = Object.assign({ revising: revising }, payload);
    textEl.hidden = false;
    el("empty").hidden = true;
    textEl.textContent = payload.document.text;
    textEl.scrollTop = 0;
    renderSuggestions(payload.suggestions);
    renderPretick(revising || !payload.suggestions.length ? null : payload.pretick);
    renderChosen();
    clearResults();
    searchEl.value = "";
    const doc = "Document " + payload.document.external_id;
    const version = payload.model_version ? "model v" + payload.model_version : "no model yet";
    const picked = payload.strategy ? " · picked by " + payload.strategy.replace(/_/g, " ") : "";
    el("provenance").textContent = doc + picked + " · " + version;
    el("revising").hidden = !revising;
    el("revising").textContent = revising
      ? "Revising your answer for this document: submit to save the change, Esc to go back without changing it."
      : "";
    shownAt = performance.now();
  }

  function showEmpty(reason) {
    current = null;
    textEl.hidden = true;
    el("empty").hidden = false;
    el("empty-message").textContent = {
      budget: "The label budget of this project is spent. Thank you!",
      quota: "You have labelled your quota of documents in this project. Thank you!",
    }[reason] || "Nothing left to label right now. Thank you!";
    el("empty-summary").textContent = session.done
      ? "You labelled " + session.done + " document(s) in this session, " +
        (session.seconds / session.done).toFixed(1) + " s each on average."
      : "";
    renderSuggestions([]);
    renderPretick(null);
    el("no-suggestions").hidden = true;
    el("provenance").textContent = "";
    el("revising").hidden = true;
    chosen = new Set(); rejected = new Set(); renderChosen();
  }

  async function loadNext() {
    setStatus("");
    let result;
    try {
      result = await api(urls.next);
    } catch (err) {
      setStatus(err.message, true);
      return;
    }
    if (result.status === 204) { held = null; showEmpty(result.reason); renderSession(null); return; }
    const payload = result.body;
    held = payload.document.id;
    chosen = new Set(payload.suggestions.filter((s) => s.preselected).map((s) => s.label));
    rejected = new Set();
    show(payload, false);
    renderSession(payload.budget);
    scheduleRenewal(payload.lease_seconds);
  }

  // --- leases: renewed while the page is open, released when it closes -----------------------------------------------
  function scheduleRenewal(leaseSeconds) {
    clearInterval(renewTimer);
    const every = Math.max(5, Math.floor((leaseSeconds || 600) / 3)) * 1000;
    renewTimer = setInterval(renew, every);
  }

  async function renew() {
    if (held === null) return;
    try {
      const result = await post(urls.lease, { document: held, action: "renew" });
      if (!result.body.held && current && !current.revising && current.document.id === held) {
        setStatus("Your hold on this document expired and someone else has it; your answer is still saved.", true);
      }
    } catch (err) { /* offline for a moment: the next renewal tries again */ }
  }

  window.addEventListener("pagehide", () => {
    if (held === null || !navigator.sendBeacon) return;
    const form = new FormData();
    form.append("document", String(held));
    form.append("action", "release");
    form.append("csrfmiddlewaretoken", csrf);
    navigator.sendBeacon(urls.lease, form);
  });

  // --- submit, skip, undo ------------------------------------------------------------------------------------------
  async function submit() {
    if (!current || busy) return;
    busy = true;
    const seconds = Math.round((performance.now() - shownAt) / 100) / 10;
    const wasRevising = current.revising;
    const documentId = current.document.id;
    try {
      await post(urls.submit, {
        document: documentId,
        labels: Array.from(chosen),
        rejected: Array.from(rejected),
        seconds_spent: seconds,
        source: "ui",
      });
      history.push(documentId);
      if (!wasRevising) { session.done += 1; session.seconds += seconds; }
      await loadNext();
      setStatus(wasRevising ? "Answer changed." : "Saved.");
    } catch (err) {
      setStatus(err.message, true);
    } finally {
      busy = false;
      renderSession(null);
    }
  }

  async function skip() {
    if (!current || current.revising || busy) return;
    busy = true;
    try {
      await post(urls.skip, { document: current.document.id });
      await loadNext();
      setStatus("Skipped.");
    } catch (err) {
      setStatus(err.message, true);
    } finally {
      busy = false;
    }
  }

  async function undo() {
    if (busy || history.length === 0) return;
    busy = true;
    const documentId = history.pop();
    try {
      const result = await api(urls.submit + documentId + "/");
      const answer = result.body;
      chosen = new Set(answer.labels);
      rejected = new Set(answer.suggestions.filter((s) => s.decision === "rejected").map((s) => s.label));
      show(answer, true);
      setStatus("Reopened your answer: change it and submit.");
    } catch (err) {
      history.push(documentId);
      setStatus(err.message, true);
    } finally {
      busy = false;
      renderSession(null);
    }
  }

  function stopRevising() {
    if (current && current.revising) {
      history.push(current.document.id);
      loadNext();
    }
  }

  // --- label search ----------------------------------------------------------------------------------------------
  function clearResults() {
    results = [];
    highlighted = -1;
    resultsEl.replaceChildren();
    searchEl.setAttribute("aria-expanded", "false");
    searchEl.removeAttribute("aria-activedescendant");
    el("result-description").hidden = true;
  }

  function renderResults() {
    resultsEl.replaceChildren();
    results.forEach((label, i) => {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === highlighted ? "true" : "false");
      li.id = "result-" + i;
      li.className = "result" + (i === highlighted ? " active" : "") + (chosen.has(label.name) ? " chosen" : "");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = label.name;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = label.score !== null ? label.score.toFixed(2) : (label.frequency ? "×" + label.frequency : "");
      li.append(name, meta);
      if (label.description) li.title = label.description;
      li.addEventListener("mousedown", (event) => { event.preventDefault(); pick(i); });
      li.addEventListener("mouseenter", () => describe(i));
      resultsEl.append(li);
    });
    searchEl.setAttribute("aria-expanded", results.length ? "true" : "false");
    if (highlighted >= 0) {
      searchEl.setAttribute("aria-activedescendant", "result-" + highlighted);
      const active = el("result-" + highlighted);
      if (active) active.scrollIntoView({ block: "nearest" });
    }
    describe(highlighted);
  }

  function describe(i) {
    const box = el("result-description");
    const label = results[i];
    box.hidden = !(label && label.description);
    box.textContent = label && label.description ? label.name + ": " + label.description : "";
  }

  function pick(i) {
    const label = results[i];
    if (!label) return;
    chosen.add(label.name);
    rejected.delete(label.name);
    renderChosen();
    searchEl.value = "";
    clearResults();
  }

  async function search() {
    const q = searchEl.value.trim();
    if (!q) { clearResults(); return; }
    let url = urls.labels + "?limit=15&q=" + encodeURIComponent(q);
    if (current) url += "&document=" + current.document.id;
    try {
      const result = await api(url);
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
    searchTimer = setTimeout(search, 80);
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
      clearResults(); searchEl.blur(); event.preventDefault(); event.stopPropagation();
    }
  });

  // --- help overlay and guidelines -----------------------------------------------------------------------------------
  let focusBeforeHelp = null;
  function openHelp() {
    focusBeforeHelp = document.activeElement;
    helpEl.hidden = false;
    el("help-close").focus();
  }
  function closeHelp() {
    helpEl.hidden = true;
    if (focusBeforeHelp && focusBeforeHelp.focus) focusBeforeHelp.focus();
  }
  el("help-open").addEventListener("click", openHelp);
  el("help-close").addEventListener("click", closeHelp);
  helpEl.addEventListener("click", (event) => { if (event.target === helpEl) closeHelp(); });

  function toggleGuidelines() {
    const details = el("guidelines");
    details.open = !details.open;
    if (details.open) details.scrollIntoView({ block: "nearest" });
  }

  // --- keys --------------------------------------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    if (!helpEl.hidden) {
      if (event.key === "Escape" || event.key === "?") { closeHelp(); event.preventDefault(); }
      return;
    }
    const target = event.target;
    const typing = target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLInputElement && !["checkbox", "radio", "button", "submit"].includes(target.type));
    if (typing) return;
    if (event.key === "/") { searchEl.focus(); event.preventDefault(); return; }
    if (event.key === "?") { openHelp(); event.preventDefault(); return; }
    if (event.key === "Enter" && !(target instanceof HTMLButtonElement) && !(target instanceof HTMLAnchorElement)) {
      submit(); event.preventDefault(); return;
    }
    if (event.key === "Escape") { stopRevising(); return; }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const digit = /^(?:Digit|Numpad)([0-9])$/.exec(event.code || "");
    if (digit && current) {
      const index = digit[1] === "0" ? 9 : Number(digit[1]) - 1;
      const s = current.suggestions[index];
      if (s) { if (event.shiftKey) reject(s.label); else accept(s.label); event.preventDefault(); }
      return;
    }
    const key = event.key.toLowerCase();
    if (event.shiftKey) return;
    if (key === "s") { skip(); event.preventDefault(); }
    else if (key === "u") { undo(); event.preventDefault(); }
    else if (key === "g") { toggleGuidelines(); event.preventDefault(); }
    else if (key === "d") { toggleDescriptions(); event.preventDefault(); }
  });
  el("submit").addEventListener("click", submit);
  el("skip").addEventListener("click", skip);
  el("undo").addEventListener("click", undo);

  loadNext();
})();
