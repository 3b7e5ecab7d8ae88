// Live job status and counts on the manager page: polls the stats and jobs API every 3 seconds.
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
        bar.style.width = Math.min(100, (100 * stats.budget.spent) / stats.budget.label_budget) + "%";
      }
      const tbody = root.querySelector("#jobs tbody");
      tbody.replaceChildren();
      for (const job of jobs.slice(0, 10)) {
        const tr = document.createElement("tr");
        tr.append(
          cell(String(job.id)),
          cell(job.kind),
          cell(job.status, "status-" + job.status.toLowerCase()),
          cell(Math.round(job.progress * 100) + "%"),
          cell(job.error || job.message),
          cell(new Date(job.created_at).toLocaleTimeString()),
        );
        tbody.append(tr);
      }
    } catch (err) {
      // The next poll tries again.
    }
  }
  setInterval(refresh, 3000);
})();
