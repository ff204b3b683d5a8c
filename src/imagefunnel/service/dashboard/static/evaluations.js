// Upload images for scoring; go to the evaluation's page when it is stored.
(function () {
  "use strict";
  const form = document.getElementById("upload");
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "scoring…";
    const answer = await fetch("/v1/evaluations", { method: "POST", body: new FormData(form) });
    const body = await answer.json();
    if (!answer.ok) {
      status.textContent = body.error ? body.error.message : "upload failed";
      return;
    }
    window.location.assign("/evaluations/" + body.id);
  });
})();
