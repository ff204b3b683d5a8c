// Live job page: follows the job's server-sent events, opens a candidate's scores in a dialog.
(function () {
  "use strict";
  const root = document.getElementById("job");
  const jobId = root.dataset.job;
  const deliver = Number(document.querySelector(".progress").getAttribute("aria-valuemax"));
  const bar = document.getElementById("bar");
  const byId = new Map(JSON.parse(document.getElementById("candidates-data").textContent).map((c) => [c.id, c]));

  function progress(passed) {
    bar.style.width = Math.min(100, (100 * passed) / Math.max(1, deliver)) + "%";
    document.querySelector(".progress").setAttribute("aria-valuenow", String(passed));
  }
  progress(Number(document.getElementById("passed").textContent));

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text; // never innerHTML: reasons and names are user-influenced text
    if (cls) td.className = cls;
    row.appendChild(td);
  }
  function fmt(v) { return v === null || v === undefined ? "—" : Number(v).toPrecision(4); }

  function openScores(id) {
    const cand = byId.get(id);
    if (!cand) return;
    const dialog = document.getElementById("scores");
    dialog.querySelector("h3").textContent = "Candidate #" + id + " · " + cand.provider + (cand.passed ? " · passed" : " · rejected");
    const body = dialog.querySelector("tbody");
    body.replaceChildren();
    for (const d of cand.dimensions) {
      const row = document.createElement("tr");
      row.dataset.dimension = d.name;
      cell(row, d.name);
      cell(row, fmt(d.value), "value");
      cell(row, fmt(d.threshold), "threshold");
      cell(row, d.passed ? "pass" : "FAIL", d.passed ? "verdict-pass" : "verdict-fail");
      body.appendChild(row);
    }
    dialog.showModal();
  }
  document.addEventListener("click", (event) => {
    const thumb = event.target.closest("button.thumb");
    if (thumb) openScores(Number(thumb.dataset.candidate));
  });

  const status = root.dataset.status;
  if (status !== "queued" && status !== "running") return;
  const source = new EventSource("/v1/jobs/" + jobId + "/events");
  const live = document.getElementById("live");
  source.addEventListener("wave_started", () => {
    document.getElementById("status").textContent = "running";
  });
  source.addEventListener("candidate_scored", (event) => {
    const data = JSON.parse(event.data);
    document.getElementById("passed").textContent = data.passed_total;
    document.getElementById("generated").textContent = data.generated_total;
    document.getElementById("spent").textContent = Number(data.spent_usd).toFixed(4);
    progress(data.passed_total);
    // The page was rendered with the candidates scored so far; an event may repeat one of them.
    if (live.querySelector('li[data-candidate="' + data.candidate_id + '"]')) return;
    const dot = document.createElement("li");
    dot.className = data.passed ? "ok" : "bad";
    dot.dataset.candidate = String(data.candidate_id);
    dot.dataset.source = "live";
    dot.title = "#" + data.candidate_id + " " + data.provider + (data.reasons.length ? ": " + data.reasons.join("; ") : "");
    live.appendChild(dot);
  });
  for (const kind of ["delivered", "partial", "failed", "cancelled"]) {
    source.addEventListener(kind, () => {
      source.close();
      window.location.reload(); // the final gallery and rejects are rendered by the server
    });
  }
})();
