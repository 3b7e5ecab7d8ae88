// Live job status and counts on the manager page: polls the stats and jobs API every 3 seconds; cancels jobs.
(function () {
  "use strict";
  const root = document.getElementById("manage");
  if (!root) return;
  const set = (name, value) => {
    const node = root.querySelector('[data-stat="' + name + '"]');
    if (node && value !== null && value !== undefined) node.textContent = String(value);
  };
  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }
  const csrf = () => (root.querySelector("[name=csrfmiddlewaretoken]") || {}).value || "";
  async function cancel(jobId) {
    try {
      await fetch(root.dataset.jobsUrl + jobId + "/cancel/", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrf() },
      });
    } finally {
      refresh();
    }
  }
  // The savings panel: the newest estimate job's status; a finished one newer than the estimate shown asks for a
  // reload (the panel itself is rendered on the server).
  function savingsStatus(jobs) {
    const panel = document.getElementById("savings");
    const line = document.getElementById("savings-job");
    const job = jobs.find((j) => j.kind === "estimate");
    if (!panel || !line || !job) return;
    if (job.status === "PENDING" || job.status === "RUNNING") {
      line.textContent =
        "Estimating (" + job.status.toLowerCase() + ", job " + job.id + "): " + Math.round(job.progress * 100) + "%" +
        (job.message ? ", " + job.message : "") + ".";
    } else if (job.status === "SUCCEEDED" && String(job.id) !== panel.dataset.estimateJob) {
      line.replaceChildren(document.createTextNode("A new estimate is ready: "));
      const link = document.createElement("a");
      link.href = "#savings";
      link.textContent = "reload";
      link.addEventListener("click", () => window.location.reload());
      line.append(link, document.createTextNode("."));
    } else if (job.status === "FAILED") {
      line.textContent = "The last estimate (job " + job.id + ") failed: " + (job.error || job.message);
    } else {
      line.textContent = "";
    }
  }
  async function refresh() {
    try {
      const [stats, jobs] = await Promise.all([
        fetch(root.dataset.statsUrl, { credentials: "same-origin" }).then((r) => r.json()),
        // The 20 newest jobs (the table shows 10; the savings panel looks for the newest estimate among them).
        fetch(root.dataset.jobsUrl + "?limit=20", { credentials: "same-origin" }).then((r) => r.json()),
      ]);
      set("spent", stats.budget.spent);
      set("remaining", stats.budget.remaining);
      set("documents", stats.documents);
      set("annotated", stats.annotated_documents);
      set("new", stats.new_annotations_since_model);
      const bar = root.querySelector('[data-stat="budget-bar"]');
      if (bar && stats.budget.label_budget) {
        bar.max = stats.budget.label_budget;
        bar.value = Math.min(stats.budget.spent, stats.budget.label_budget);
      }
      savingsStatus(jobs);
      const tbody = root.querySelector("#jobs tbody");
      tbody.replaceChildren();
      const time = (value) => (value ? new Date(value).toLocaleTimeString() : "");
      for (const job of jobs.slice(0, 10)) {
        const tr = document.createElement("tr");
        tr.dataset.job = String(job.id);
        const progress = cell("");
        const bar = document.createElement("progress");
        bar.max = 1;
        bar.value = job.progress;
        progress.append(bar, document.createTextNode(" " + Math.round(job.progress * 100) + "%"));
        const action = cell("");
        if ((job.status === "PENDING" || job.status === "RUNNING") && !job.cancel_requested) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "link";
          button.textContent = "Cancel";
          button.dataset.cancel = String(job.id);
          button.addEventListener("click", () => cancel(job.id));
          action.append(button);
        } else if (job.cancel_requested && job.status === "RUNNING") {
          action.textContent = "stopping";
        }
        tr.append(
          cell(String(job.id)),
          cell(job.kind + (job.mode ? " (" + job.mode + ")" : "")),
          cell(job.status, "status-" + job.status.toLowerCase()),
          progress,
          cell(job.error || job.message),
          cell(job.worker + (job.device ? " (" + job.device + ")" : "")),
          cell(time(job.created_at)),
          cell(time(job.started_at)),
          cell(time(job.finished_at)),
          action,
        );
        tbody.append(tr);
      }
    } catch (err) {
      // The next poll tries again.
    }
  }
  setInterval(refresh, 3000);
})();

// The taxonomy section: import a label file, search labels, edit, rename, merge, deprecate / restore (the labels API).
(function () {
  "use strict";
  const root = document.getElementById("taxonomy");
  if (!root) return;
  const status = document.getElementById("taxonomy-status");
  const errors = document.getElementById("taxonomy-errors");
  const tbody = root.querySelector("#taxonomy-labels tbody");
  const count = document.getElementById("taxonomy-count");
  const search = document.getElementById("label-search-form");
  const editor = document.getElementById("label-edit-form");
  const fileForm = document.getElementById("label-file-form");
  const csrf = () => (root.querySelector("[name=csrfmiddlewaretoken]") || {}).value || "";
  const labelUrl = (id) => root.dataset.labelsUrl + encodeURIComponent(String(id)) + "/";

  function say(message, problems, isError) {
    status.textContent = message;
    status.classList.toggle("error", Boolean(isError));
    errors.replaceChildren();
    for (const problem of problems || []) {
      const li = document.createElement("li");
      li.textContent = problem;
      errors.append(li);
    }
  }

  async function call(url, method, body) {
    const options = { method, credentials: "same-origin", headers: { "X-CSRFToken": csrf() } };
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const detail = (data && data.detail) || "the server answered " + response.status;
      const error = new Error(detail);
      error.problems = (data && data.errors) || [];
      throw error;
    }
    return data;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  async function list() {
    const params = new URLSearchParams({
      q: search.elements.q.value,
      status: search.elements.status.value,
      limit: "50",
    });
    try {
      const data = await call(root.dataset.listUrl + "?" + params.toString(), "GET");
      tbody.replaceChildren();
      for (const label of data.labels) {
        const tr = document.createElement("tr");
        tr.dataset.label = String(label.id);
        const name = cell(label.name);
        if (label.deprecated) {
          name.append(document.createTextNode(" (deprecated)"));
          tr.classList.add("deprecated");
        }
        if (label.description) name.title = label.description;
        const action = cell("");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "link";
        button.textContent = "Edit";
        button.setAttribute("aria-label", "Edit " + label.name);
        button.addEventListener("click", () => edit(label.id));
        action.append(button);
        tr.append(
          name,
          cell(label.external_id),
          cell(label.parent_name || ""),
          cell(label.alt_names.join(" | ")),
          cell(String(label.frequency)),
          action,
        );
        tbody.append(tr);
      }
      count.textContent =
        data.count === 0 ? "No label matches." : "Showing " + data.labels.length + " of " + data.count + " label(s).";
    } catch (err) {
      say(err.message, err.problems, true);
    }
  }

  async function edit(id) {
    try {
      const label = await call(labelUrl(id), "GET");
      editor.hidden = false;
      editor.querySelector('[data-field="title"]').textContent = label.name;
      editor.elements.id.value = String(label.id);
      editor.elements.name.value = label.name;
      editor.elements.description.value = label.description;
      editor.elements.alt_names.value = label.alt_names.join("\n");
      editor.elements.external_id.value = label.external_id;
      editor.elements.parent.value = label.parent_name || "";
      editor.elements.into.value = "";
      editor.querySelector('[data-action="deprecate"]').hidden = label.deprecated;
      editor.querySelector('[data-action="restore"]').hidden = !label.deprecated;
      editor.elements.name.focus();
    } catch (err) {
      say(err.message, err.problems, true);
    }
  }

  // A label named by its exact name or external id (for the parent and the merge target).
  async function resolve(text, what) {
    const wanted = text.trim();
    const data = await call(root.dataset.listUrl + "?" + new URLSearchParams({ q: wanted, limit: "200" }), "GET");
    const found = data.labels.find((l) => l.name === wanted || (l.external_id && l.external_id === wanted));
    if (!found) throw new Error(what + ": no label is named or has the external id " + JSON.stringify(wanted));
    return found;
  }

  editor.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = editor.elements.id.value;
    try {
      const body = {
        name: editor.elements.name.value.trim(),
        description: editor.elements.description.value,
        alt_names: editor.elements.alt_names.value
          .split("\n")
          .map((s) => s.trim())
          .filter(Boolean),
        external_id: editor.elements.external_id.value.trim(),
      };
      const parent = editor.elements.parent.value.trim();
      body.parent = parent ? (await resolve(parent, "parent")).id : null;
      const label = await call(labelUrl(id), "PATCH", body);
      say("Saved " + JSON.stringify(label.name) + ".");
      editor.querySelector('[data-field="title"]').textContent = label.name;
      await list();
    } catch (err) {
      say(err.message, err.problems, true);
    }
  });

  editor.addEventListener("click", async (event) => {
    const action = event.target.dataset && event.target.dataset.action;
    if (!action) return;
    const id = editor.elements.id.value;
    const name = editor.elements.name.value;
    try {
      if (action === "close") {
        editor.hidden = true;
        return;
      }
      if (action === "deprecate" || action === "restore") {
        await call(labelUrl(id) + action + "/", "POST");
        say((action === "deprecate" ? "Deprecated " : "Restored ") + JSON.stringify(name) + ".");
        await edit(id);
      } else if (action === "merge") {
        const into = await resolve(editor.elements.into.value, "merge into");
        if (!window.confirm("Merge " + JSON.stringify(name) + " into " + JSON.stringify(into.name) + "?")) return;
        const kept = await call(labelUrl(id) + "merge/", "POST", { into: into.id });
        say("Merged " + JSON.stringify(name) + " into " + JSON.stringify(kept.name) + ".");
        await edit(kept.id);
      }
      await list();
    } catch (err) {
      say(err.message, err.problems, true);
    }
  });

  search.addEventListener("submit", (event) => {
    event.preventDefault();
    list();
  });

  fileForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = fileForm.elements.file.files[0];
    if (!file) return;
    const body = new FormData();
    body.append("file", file);
    say("Importing " + file.name + "…");
    try {
      const result = await call(root.dataset.importUrl, "POST", body);
      say(
        "Imported " + file.name + ": " + result.created + " created, " + result.updated + " updated, " +
          result.unchanged + " unchanged; " + result.labels + " labels in the project." +
          (result.ignored_columns.length ? " Columns not read: " + result.ignored_columns.join(", ") + "." : ""),
      );
      fileForm.reset();
      await list();
    } catch (err) {
      say("Nothing was imported: " + err.message, err.problems, true);
    }
  });

  list();
})();
