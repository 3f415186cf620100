// The upload page: a file goes up as a resumable session of parts. The session of a file is
// kept in localStorage under its name, size and date, so a page reloaded (or a connection
// dropped) mid-way resumes: the parts the server has are not sent again.
"use strict";

(function () {
  const root = document.getElementById("import");
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file");
  const drop = document.getElementById("drop");
  const bar = document.getElementById("upload-progress");
  const statusLine = document.getElementById("upload-status");
  const errorLine = document.getElementById("upload-error");
  const button = document.getElementById("upload");
  const link = root.dataset.link;
  const PART_ATTEMPTS = 4;

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (link) h.Authorization = `Bearer ${link}`;
    return h;
  }

  function say(text) { statusLine.textContent = text; }
  function fail(text) { errorLine.textContent = text; say(""); button.disabled = false; }

  async function api(method, path, body) {
    const r = await fetch(path, {
      method, credentials: "same-origin",
      headers: headers(body ? {"Content-Type": "application/json"} : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await r.json().catch(() => ({}));
    return {ok: r.ok, status: r.status, data};
  }

  // One part by XMLHttpRequest, for its upload progress; resolves to the session after it.
  function sendPart(session, number, blob, onBytes) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", `/v1/upload-sessions/${session.session_id}/parts/${number}`);
      xhr.withCredentials = true;
      const h = headers({"Content-Type": "application/octet-stream"});
      for (const k in h) xhr.setRequestHeader(k, h[k]);
      xhr.upload.onprogress = (e) => onBytes(e.loaded);
      xhr.onload = () => {
        let data = {};
        try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(Object.assign(new Error(data.detail || `HTTP ${xhr.status}`), {status: xhr.status}));
      };
      xhr.onerror = () => reject(Object.assign(new Error("the connection dropped"), {retry: true}));
      xhr.send(blob);
    });
  }

  function storageKey(file, dataset) {
    return `ip-upload:${dataset}:${file.name}:${file.size}:${file.lastModified}`;
  }

  async function openSession(file, dataset) {
    const key = storageKey(file, dataset);
    const known = localStorage.getItem(key);
    if (known) {
      const found = await api("GET", `/v1/upload-sessions/${encodeURIComponent(known)}`);
      if (found.ok) return {session: found.data, key, resumed: true};
      localStorage.removeItem(key);
    }
    const made = await api("POST", "/v1/upload-sessions",
      {file_name: file.name, size: file.size, dataset});
    if (!made.ok) throw new Error(made.data.detail || `HTTP ${made.status}`);
    localStorage.setItem(key, made.data.session_id);
    return {session: made.data, key, resumed: false};
  }

  async function upload(file) {
    errorLine.textContent = "";
    const dataset = document.getElementById("dataset").value;
    button.disabled = true;
    let opened;
    try {
      opened = await openSession(file, dataset);
    } catch (e) {
      return fail(`${file.name}: ${e.message}`);
    }
    let session = opened.session;
    const count = Math.max(1, Math.ceil(file.size / session.part_size));
    const have = new Set(session.parts_received);
    const partBytes = (n) => Math.min(session.part_size, file.size - (n - 1) * session.part_size);
    let done = 0;
    for (const n of have) done += partBytes(n);
    if (opened.resumed && have.size) {
      say(`Resuming ${file.name}: ${have.size} of ${count} part(s) are already on the server.`);
    } else {
      say(`Uploading ${file.name}…`);
    }
    bar.max = file.size; bar.value = done;
    if (!session.job_id) {
      for (let n = 1; n <= count; n++) {
        if (have.has(n)) continue;
        const start = (n - 1) * session.part_size;
        const blob = file.slice(start, start + partBytes(n));
        for (let attempt = 1; ; attempt++) {
          try {
            session = await sendPart(session, n, blob, (sent) => { bar.value = done + sent; });
            break;
          } catch (e) {
            if (!e.retry || attempt >= PART_ATTEMPTS) {
              return fail(`${file.name}: part ${n} of ${count} was not stored (${e.message}). ` +
                "Upload again to resume where it stopped.");
            }
            say(`${file.name}: the connection dropped; trying part ${n} again…`);
            await new Promise((r) => setTimeout(r, 1000 * attempt));
          }
        }
        done += blob.size;
        bar.value = done;
        root.dataset.partsSent = String(Number(root.dataset.partsSent || 0) + 1);
        say(`Uploading ${file.name}: ${Math.round((100 * done) / file.size)}% ` +
          `(${n} of ${count} part(s)).`);
      }
    }
    const finished = await api("POST", `/v1/upload-sessions/${session.session_id}/complete`);
    if (!finished.ok) return fail(`${file.name}: ${finished.data.detail || finished.status}`);
    localStorage.removeItem(opened.key);
    bar.value = file.size;
    const job = finished.data;
    window.ingestionFlow.notify("import.uploaded", job);
    showAnswer(job, file.name);
  }

  function fact(list, term, value) {
    if (value === null || value === undefined || value === "") return;
    const dt = document.createElement("dt"); dt.textContent = term;
    const dd = document.createElement("dd"); dd.textContent = value;
    list.append(dt, dd);
  }

  function showAnswer(job, name) {
    const answer = job.first_answer || {};
    const list = document.getElementById("answer-facts");
    list.replaceChildren();
    if (answer.error) {
      fact(list, "Cannot be read", answer.error);
      errorLine.textContent = answer.error;
    } else {
      fact(list, "Format", answer.format + (answer.compression ? ` (${answer.compression})` : ""));
      fact(list, "Encoding", answer.encoding);
      fact(list, "Delimiter", answer.delimiter);
      fact(list, "Sheet", answer.sheet);
      fact(list, "Header", (answer.header || []).join(", "));
      fact(list, "Rows", answer.row_estimate === null ? "not known yet" : `about ${answer.row_estimate}`);
      fact(list, "Next", answer.needs_mapping
        ? "confirm which column feeds which field"
        : "the import runs now");
    }
    const next = document.getElementById("continue");
    next.href = root.dataset.jobUrl.replace("JOB", encodeURIComponent(job.job_id));
    const section = document.getElementById("answer");
    section.hidden = false;
    say(`${name} uploaded: job ${job.job_id}.`);
    document.getElementById("answer-title").focus();
    button.disabled = false;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const file = input.files[0];
    if (!file) { fail("Choose a file first."); input.focus(); return; }
    upload(file);
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      upload(e.dataTransfer.files[0]);
    }
  });
})();
