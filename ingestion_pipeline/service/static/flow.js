// What every page of the import flow does: tell the host page (when the flow is embedded)
// where the job stands, and follow a job that is running until it settles.
"use strict";

(function () {
  const config = JSON.parse(document.body.dataset.events || "{}");
  const origins = config.origins || [];
  const EVENTS = {
    NEEDS_MAPPING: "import.needs_mapping",
    NEEDS_REVIEW: "import.needs_review",
    WAITING_FOR_REFERENCES: "import.waiting_for_references",
    COMPLETED: "import.completed",
    FAILED: "import.failed",
  };

  function counts(job) {
    const keys = ["total_rows", "processed_rows", "issue_count", "rows_inserted",
      "rows_updated", "rows_unchanged", "contacts_created"];
    const out = {};
    for (const k of keys) if (k in job) out[k] = job[k];
    return out;
  }

  // Posts `type` for `job` to the host page once per job, event and count of open issues: a
  // page shown again (a reload, a form sent back) does not repeat what the host heard, and a
  // reprocess that leaves other issues open is news.
  const embedded = window.parent !== window && origins.length > 0;

  function notify(type, job) {
    if (!embedded) return;
    const once = `ip:${job.job_id}:${type}:${job.issue_count}`;
    try {
      if (sessionStorage.getItem(once)) return;
      sessionStorage.setItem(once, "1");
    } catch (e) { /* storage refused in this frame: send anyway */ }
    const message = {
      type, job_id: job.job_id, status: job.status, dataset: job.dataset,
      file: job.file, user: config.user || null, counts: counts(job),
    };
    // Only to the origins the tenant allows: a host at any other origin hears nothing.
    for (const origin of origins) window.parent.postMessage(message, origin);
  }

  function show(job) {
    const status = document.getElementById("status");
    if (status) { status.textContent = job.status; status.className = `status ${job.status}`; }
    const bar = document.getElementById("progress");
    if (bar) { bar.max = job.total_rows || 1; bar.value = job.processed_rows; }
    const text = document.getElementById("counts");
    if (text) {
      text.textContent = `${job.processed_rows} / ${job.total_rows} rows · ` +
        `${job.issue_count} open issue(s)`;
    }
  }

  async function fetchJob(id) {
    const headers = {};
    const link = new URLSearchParams(location.search).get("link");
    if (link) headers.Authorization = `Bearer ${link}`;
    const r = await fetch(`/v1/jobs/${encodeURIComponent(id)}`, {headers, credentials: "same-origin"});
    return r.ok ? r.json() : null;
  }

  const here = document.getElementById("job");
  if (here && here.dataset.job) {
    const before = {status: here.dataset.status, updated: here.dataset.updated};
    const type = EVENTS[before.status];
    if (type && embedded) {  // a page on its own tells no one: no request for the counts
      fetchJob(here.dataset.job).then((job) => { if (job) notify(type, job); });
    }
    if (here.dataset.follow) {
      const follow = async () => {
        const job = await fetchJob(here.dataset.job).catch(() => null);
        if (job) {
          show(job);
          const settled = !["PENDING", "PROCESSING"].includes(job.status);
          if (settled && (job.status !== before.status || job.updated_at !== before.updated)) {
            location.replace(here.dataset.reload);
            return;
          }
        }
        setTimeout(follow, 700);
      };
      setTimeout(follow, 500);
    }
  }

  window.ingestionFlow = {notify, fetchJob};
})();
