// Accept / reject buttons: a person's verdict per image, stored for calibration.
(function () {
  "use strict";
  const root = document.getElementById("evaluation");
  root.addEventListener("click", async (event) => {
    const button = event.target.closest(".feedback button");
    if (!button) return;
    const card = button.closest(".image-card");
    const verdict = button.dataset.verdict;
    const answer = await fetch("/v1/evaluations/" + root.dataset.evaluation + "/feedback", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ items: [{ image: Number(card.dataset.position), verdict: verdict }] }),
    });
    card.querySelector(".given").textContent = answer.ok ? "you said: " + verdict : "not saved";
  });
})();
