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
        fetch(root.dataset.jobsUrl, { credentials: "same-origin" }).then((r) => r.json()),
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
