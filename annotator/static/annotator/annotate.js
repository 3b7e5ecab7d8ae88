// The annotate page: leases a document from the API, shows it with scored suggestions to accept or reject,
// searches labels on the server, submits, and lets the expert undo (revise) earlier answers. Keyboard first.
// No framework and nothing from a CDN. Document text and label names are only ever set with textContent.
// A small label set (the view sends it when it has at most ALABEL_LABEL_BUTTONS labels) is shown whole, as toggles
// with a key each; the suggestions are marked on them with their scores. After every submit, skip or undo the focus
// is on the document, so the next key is a command, never text in the search box.
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
    tree: root.dataset.treeUrl,
  };
  const labelButtons = JSON.parse(document.getElementById("label-buttons-data").textContent || "[]");
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
  let resultsFor = null; // the query the results on screen answer (null: none, or the box changed since)
  let searchSeq = 0; // only the answer to the newest request is ever shown
  let highlighted = -1;
  let noneArmed = false; // Enter with nothing chosen asks first; the second Enter records "none apply"
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
      const error = new Error(detail);
      error.status = response.status;
      throw error;
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
    disarmNone();
    for (const button of buttonsEl.children) {
      const name = button.dataset.label;
      button.setAttribute("aria-pressed", chosen.has(name) ? "true" : "false");
      button.classList.toggle("rejected", rejected.has(name));
    }
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

  function removeLast() { // Backspace: the label chosen last leaves the answer
    const last = Array.from(chosen).pop();
    if (last === undefined) return;
    chosen.delete(last);
    renderChosen();
    setStatus("Removed “" + last + "”.");
  }

  function keyName(i) { return i < 9 ? String(i + 1) : (i === 9 ? "0" : ""); }

  function renderSuggestions(suggestions) {
    suggestionsEl.replaceChildren();
    const rank = new Map(suggestions.map((s, i) => [s.label, i]));
    for (const button of buttonsEl.children) {
      const i = rank.get(button.dataset.label);
      const mark = button.querySelector(".mark");
      button.classList.toggle("suggested", i !== undefined);
      mark.hidden = i === undefined;
      mark.textContent = i === undefined ? "" : suggestions[i].score.toFixed(2);
      mark.title = i === undefined ? "" : "Suggestion " + (i + 1) + (i < 10 ? " (key " + keyName(i) + ")" : "");
    }
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

  // Who made the suggestions when it is not our model: an external source's pre-annotations (`source` on each).
  function renderSource(suggestions) {
    const box = el("suggestion-source");
    const external = suggestions.find((s) => s.source && s.source !== "model");
    box.hidden = !external;
    box.textContent = external ? "Suggested by " + external.source + " (imported pre-annotations)" : "";
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

  // The served document's own model version says why there are no suggestions, never the project's state now.
  function renderNoSuggestions(payload, revising) {
    const box = el("no-suggestions");
    box.hidden = payload === null || payload.suggestions.length > 0;
    if (box.hidden) { box.textContent = ""; return; }
    if (payload.model_version) {
      box.textContent = revising
        ? "Model v" + payload.model_version + " had no suggestions for this document."
        : "Model v" + payload.model_version + " has no suggestions for this document.";
    } else {
      box.textContent = "No suggestions yet: the first model is not trained.";
    }
  }

  // --- all labels as toggles (small label sets) ---------------------------------------------------------------------
  // Keys: letters, as mnemonic as they can be: first every label whose initial is free gets it, then the others a
  // free letter of their name, then any free letter; the labels still without a key then get Shift+letter the same
  // way (Shift+s is free: only s alone skips). The letters of commands (s u g d n) are kept for them; a label beyond
  // 21 + 26 = 47 has no key (a click or the search finds it).
  const COMMAND_LETTERS = new Set(["s", "u", "g", "d", "n"]);
  const ALL_LETTERS = "abcdefghijklmnopqrstuvwxyz".split("");
  const LETTERS = ALL_LETTERS.filter((c) => !COMMAND_LETTERS.has(c));
  const buttonsEl = el("label-buttons");
  const keyToLabel = new Map(); // "a" or "⇧a" -> label name

  function assignKeys(labels) {
    const keys = new Map();
    const letters = (name) => name.toLowerCase().normalize("NFD").split("");
    const stages = [
      (name, free) => (free.has(letters(name)[0]) ? letters(name)[0] : undefined),
      (name, free) => letters(name).find((c) => free.has(c)),
      (name, free) => free.values().next().value,
    ];
    for (const shift of ["", "⇧"]) {
      const free = new Set(shift ? ALL_LETTERS : LETTERS);
      for (const stage of stages) {
        for (const label of labels) {
          if (keys.has(label.name) || free.size === 0) continue;
          const letter = stage(label.name, free);
          if (letter === undefined) continue;
          free.delete(letter);
          keys.set(label.name, shift + letter);
        }
      }
    }
    return keys;
  }

  function renderButtons() {
    const box = el("label-toggles");
    box.hidden = labelButtons.length === 0;
    const keys = assignKeys(labelButtons);
    for (const label of labelButtons) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "toggle";
      button.dataset.label = label.name;
      button.setAttribute("aria-pressed", "false");
      if (label.description) button.title = label.description;
      const key = keys.get(label.name);
      const kbd = document.createElement("kbd");
      kbd.textContent = key ? (key.startsWith("⇧") ? "⇧" + key.slice(1).toUpperCase() : key) : "";
      kbd.hidden = !key;
      if (key) keyToLabel.set(key, label.name);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = label.name;
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.hidden = true;
      button.append(kbd, name, mark);
      button.addEventListener("click", (event) => {
        accept(label.name);
        if (event.detail > 0) focusDocument(); // a mouse click: Enter must submit next, not toggle again
      });
      buttonsEl.append(button);
    }
  }

  function focusDocument() {
    if (!textEl.hidden) textEl.focus({ preventScroll: true });
    else if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
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
    renderSource(payload.suggestions);
    renderNoSuggestions(payload, revising);
    renderPretick(revising || !payload.suggestions.length ? null : payload.pretick);
    renderChosen();
    clearSearch();
    // What the served item says, and nothing about why it was picked: an annotator must not be able to tell an
    // evaluation document from an active-learning pick.
    const doc = "Document " + payload.document.external_id;
    const version = payload.model_version
      ? (revising ? "suggested by model v" : "model v") + payload.model_version
      : "no model yet";
    el("provenance").textContent = doc + " · " + version;
    el("revising").hidden = !revising;
    el("revising").textContent = revising
      ? "Revising your answer for this document: submit to save the change, Esc to go back without changing it."
      : "";
    shownAt = performance.now();
    focusDocument();
  }

  function showEmpty(reason) {
    current = null;
    textEl.hidden = true;
    el("empty").hidden = false;
    el("empty-message").textContent = {
      budget: "The label budget of this project is spent. Thank you!",
      quota: "You have labelled your quota of documents in this project. Thank you!",
      archived: "This project is archived: nothing is served. Thank you!",
    }[reason] || "Nothing left to label right now. Thank you!";
    el("empty-summary").textContent = session.done
      ? "You labelled " + session.done + " document(s) in this session, " +
        (session.seconds / session.done).toFixed(1) + " s each on average."
      : "";
    renderSuggestions([]);
    renderPretick(null);
    renderNoSuggestions(null, false);
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
  function disarmNone() {
    noneArmed = false;
    el("none-confirm").hidden = true;
  }

  // Enter, Ctrl+Enter and the Submit button: with nothing chosen the first press only asks (a visible prompt), the
  // second records "none apply"; `n` records it at once.
  function requestSubmit() {
    if (!current || busy) return;
    if (chosen.size === 0 && !noneArmed) {
      noneArmed = true;
      el("none-confirm").hidden = false;
      focusDocument();
      return;
    }
    submit();
  }

  function submitNone() {
    if (!current || busy) return;
    if (chosen.size > 0) {
      setStatus("n records that no label applies: remove the chosen labels first (Backspace), or submit with Enter.", true);
      return;
    }
    submit();
  }

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
      focusDocument();
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
  function clearSearch() {
    clearTimeout(searchTimer);
    searchSeq += 1; // an answer on its way is for a query that is gone
    searchEl.value = "";
    clearResults();
  }

  function clearResults() {
    results = [];
    resultsFor = null;
    highlighted = -1;
    resultsEl.replaceChildren();
    el("no-match").hidden = true;
    searchEl.setAttribute("aria-expanded", "false");
    searchEl.removeAttribute("aria-activedescendant");
    el("result-description").hidden = true;
  }

  function renderResults() {
    resultsEl.replaceChildren();
    resultsEl.classList.remove("stale");
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
      li.append(name);
      if (label.match === "alias" && label.alias) {
        const via = document.createElement("span");
        via.className = "via";
        via.textContent = "via “" + label.alias + "”";
        li.append(via);
      } else if (label.match === "semantic") {
        li.classList.add("semantic");
        const via = document.createElement("span");
        via.className = "via";
        via.textContent = "similar meaning";
        li.append(via);
      }
      li.append(meta);
      if (label.description) li.title = label.description;
      li.addEventListener("mousedown", (event) => { event.preventDefault(); pick(i); });
      li.addEventListener("mouseenter", () => describe(i));
      resultsEl.append(li);
    });
    searchEl.setAttribute("aria-expanded", results.length ? "true" : "false");
    const noMatch = el("no-match");
    noMatch.hidden = results.length > 0 || resultsFor === null;
    noMatch.textContent = noMatch.hidden ? "" : "No label matches “" + resultsFor + "”.";
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
    clearSearch();
  }

  // Asks for the box's query now; its answer is shown only if it is still the newest request and the box still
  // holds that query, so a late answer to an older query ("kind" while "kindergarten" is typed) is dropped.
  async function search() {
    clearTimeout(searchTimer);
    const q = searchEl.value.trim();
    const seq = ++searchSeq;
    if (!q) { clearResults(); return; }
    let url = urls.labels + "?limit=15&q=" + encodeURIComponent(q);
    if (current) url += "&document=" + current.document.id;
    try {
      const result = await api(url);
      if (seq !== searchSeq || searchEl.value.trim() !== q) return;
      results = result.body;
      resultsFor = q;
      highlighted = results.length ? 0 : -1;
      renderResults();
      if (results.length < 15) searchByMeaning(url, q, seq);
    } catch (err) {
      if (seq === searchSeq) setStatus(err.message, true);
    }
  }

  // When the text finds fewer than a page, labels close in meaning (a synonym, another wording) fill the rest, after
  // every textual match: a second, slower request, shown only if its query is still the one in the box.
  async function searchByMeaning(url, q, seq) {
    try {
      const result = await api(url + "&semantic=1");
      if (seq !== searchSeq || searchEl.value.trim() !== q || resultsFor !== q) return;
      if (result.body.length <= results.length) return;
      results = result.body;
      if (highlighted < 0 && results.length) highlighted = 0;
      renderResults();
    } catch (err) {
      // The textual results stand: the semantic index may not be built yet.
    }
  }

  // Enter in the search box adds the highlighted match of the query in the box: if the results on screen answer an
  // older query, it waits for this one's first.
  async function pickCurrent() {
    const q = searchEl.value.trim();
    if (!q) return;
    if (resultsFor !== q) await search();
    if (searchEl.value.trim() === q && resultsFor === q && highlighted >= 0) pick(highlighted);
  }

  searchEl.addEventListener("input", () => {
    clearTimeout(searchTimer);
    resultsFor = null; // the results on screen no longer answer the box
    resultsEl.classList.add("stale");
    searchTimer = setTimeout(search, 80);
  });
  searchEl.addEventListener("keydown", (event) => {
    const fresh = resultsFor !== null && resultsFor === searchEl.value.trim();
    if (event.key === "ArrowDown" && fresh && results.length) {
      highlighted = (highlighted + 1) % results.length; renderResults(); event.preventDefault();
    } else if (event.key === "ArrowUp" && fresh && results.length) {
      highlighted = (highlighted - 1 + results.length) % results.length; renderResults(); event.preventDefault();
    } else if (event.key === "Enter") {
      event.preventDefault();
      event.stopPropagation();
      if (event.ctrlKey || event.metaKey) { clearSearch(); requestSubmit(); return; }
      pickCurrent();
    } else if (event.key === "Escape") {
      clearSearch(); focusDocument(); event.preventDefault(); event.stopPropagation();
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

  // --- browsing the hierarchy (projects whose labels have parents) ------------------------------------------------
  // GET labels/tree/?parent=ID&limit=&offset= -> {parent, count, labels: [{id, name, description, external_id,
  // children}]}; no parent: the roots. Hidden when the project has no hierarchy, or for good when the server has no
  // tree (404). A level longer than one page shows "more".
  const BROWSE_PAGE = 100;
  const browseEl = el("browse");
  const browsePath = []; // [{id, name}] from the root down to the level shown
  let browseLoaded = false;
  let browseShown = 0;

  async function browseLoad(append) {
    const parent = browsePath.length ? browsePath[browsePath.length - 1].id : null;
    const params = new URLSearchParams({ limit: String(BROWSE_PAGE), offset: String(append ? browseShown : 0) });
    if (parent !== null) params.set("parent", String(parent));
    let result;
    try {
      result = await api(urls.tree + "?" + params.toString());
    } catch (err) {
      if (err.status === 404 && parent === null) { browseEl.open = false; browseEl.hidden = true; return; }
      setStatus(err.message, true);
      return;
    }
    browseLoaded = true;
    const labels = result.body.labels || [];
    if (!append) { renderCrumbs(); el("browse-list").replaceChildren(); browseShown = 0; }
    appendBrowseItems(labels);
    browseShown += labels.length;
    const more = el("browse-more");
    const left = (result.body.count || 0) - browseShown;
    more.hidden = left <= 0;
    more.textContent = left > 0 ? "Show more (" + left + " left)" : "";
  }

  function renderCrumbs() {
    const nav = el("browse-path");
    nav.replaceChildren();
    const crumbs = [{ id: null, name: "All" }].concat(browsePath);
    crumbs.forEach((crumb, depth) => {
      if (depth) nav.append(" › ");
      if (depth === crumbs.length - 1) {
        const here = document.createElement("strong");
        here.textContent = crumb.name;
        nav.append(here);
        return;
      }
      const up = document.createElement("button");
      up.type = "button";
      up.className = "link";
      up.textContent = crumb.name;
      up.addEventListener("click", () => { browsePath.length = depth; browseLoad(false); });
      nav.append(up);
    });
  }

  function appendBrowseItems(labels) {
    const list = el("browse-list");
    for (const label of labels) {
      const li = document.createElement("li");
      li.className = "browse-item";
      const choose = document.createElement("button");
      choose.type = "button";
      choose.className = "choose" + (chosen.has(label.name) ? " chosen" : "");
      choose.textContent = label.name;
      choose.title = label.description ? label.description : "Choose " + label.name;
      choose.setAttribute("aria-label", "Choose " + label.name);
      choose.addEventListener("click", () => {
        chosen.add(label.name);
        rejected.delete(label.name);
        renderChosen();
        choose.classList.add("chosen");
        setStatus("Added “" + label.name + "”.");
      });
      li.append(choose);
      if (label.children > 0) {
        const open = document.createElement("button");
        open.type = "button";
        open.className = "expand";
        open.textContent = "▸ " + label.children;
        open.setAttribute("aria-label", "Show the " + label.children + " narrower labels of " + label.name);
        open.addEventListener("click", () => { browsePath.push({ id: label.id, name: label.name }); browseLoad(false); });
        li.append(open);
      }
      list.append(li);
    }
  }

  el("browse-more").addEventListener("click", () => browseLoad(true));
  browseEl.hidden = root.dataset.hasHierarchy !== "true";
  browseEl.addEventListener("toggle", () => { if (browseEl.open && !browseLoaded) browseLoad(false); });

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
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { requestSubmit(); event.preventDefault(); return; }
    if (event.key === "/") { searchEl.focus(); event.preventDefault(); return; }
    if (event.key === "?") { openHelp(); event.preventDefault(); return; }
    if (event.key === "Enter" && !(target instanceof HTMLButtonElement) && !(target instanceof HTMLAnchorElement) &&
        !(target instanceof HTMLElement && target.tagName === "SUMMARY")) {
      requestSubmit(); event.preventDefault(); return;
    }
    if (event.key === "Escape") { disarmNone(); stopRevising(); return; }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "Backspace") { removeLast(); event.preventDefault(); return; }
    const digit = /^(?:Digit|Numpad)([0-9])$/.exec(event.code || "");
    if (digit && current) {
      const index = digit[1] === "0" ? 9 : Number(digit[1]) - 1;
      const s = current.suggestions[index];
      if (s) { if (event.shiftKey) reject(s.label); else accept(s.label); event.preventDefault(); }
      return;
    }
    const key = event.key.toLowerCase();
    const toggle = key.length === 1 ? keyToLabel.get((event.shiftKey ? "⇧" : "") + key) : undefined;
    if (toggle !== undefined && current) { accept(toggle); event.preventDefault(); return; }
    if (event.shiftKey) return;
    if (key === "s") { skip(); event.preventDefault(); }
    else if (key === "u") { undo(); event.preventDefault(); }
    else if (key === "g") { toggleGuidelines(); event.preventDefault(); }
    else if (key === "d") { toggleDescriptions(); event.preventDefault(); }
    else if (key === "n") { submitNone(); event.preventDefault(); }
  });
  el("submit").addEventListener("click", requestSubmit);
  el("submit-none").addEventListener("click", submitNone);
  el("skip").addEventListener("click", skip);
  el("undo").addEventListener("click", undo);

  renderButtons();
  loadNext();
})();
