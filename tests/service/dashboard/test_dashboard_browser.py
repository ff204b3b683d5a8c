"""The dashboard as a person sees it, in a real headless Chromium: a job submitted through the
jobs page's form (with a reference photo) progressing live, its delivered gallery, a reject's scores, and feedback on an evaluation. Screenshots go to
``test-artifacts/screenshots`` (kept by CI)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import uvicorn
import yaml
from playwright.sync_api import Locator, Page, sync_playwright
from service_fixtures import MODEL, fast_settings, spec

from imagefunnel.cli.demo import market_providers
from imagefunnel.market.server import MarketServer
from imagefunnel.market.serving import ThreadedServer
from imagefunnel.service import create_app

SHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if path is None:
        if os.environ.get("IMAGEFUNNEL_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (IMAGEFUNNEL_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium-headless-shell)")
    return path


@pytest.fixture
def site(market: MarketServer, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The service on a loopback port (SQLite: the browser flow does not depend on the database)."""
    settings = fast_settings(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    app = create_app(
        settings,
        providers=lambda s: market_providers(market, s.model),
        catalog=market_providers(market, MODEL),
    )
    key = app.state.runtime.tenancy.create_key("browser").secret
    server = ThreadedServer(
        uvicorn.Config(app, log_level="warning", lifespan="on"), host="127.0.0.1", port=0, name="service"
    )
    port = server.start()
    yield f"http://127.0.0.1:{port}", key
    server.stop()


def visible_and_uncovered(page: Page, locator: Locator) -> None:
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    view = page.viewport_size
    assert view is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= view["width"] + 1
    assert box["y"] >= 0 and box["y"] + box["height"] <= view["height"] + 1
    center = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    on_top = locator.evaluate(
        "(el, [x, y]) => { const top = document.elementFromPoint(x, y); return el === top || el.contains(top); }",
        list(center),
    )
    assert on_top, "something covers the element"


def test_submit_a_job_watch_it_live_inspect_a_reject_and_give_feedback(
    site: tuple[str, str], chromium: str
) -> None:
    import httpx

    base, key = site
    SHOTS.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {key}"}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/login")
        page.fill("input[name=key]", key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        photo = (
            resources.files("imagefunnel.market") / "assets" / "portraits" / "grace_hopper.jpg"
        ).read_bytes()
        # A person submits the job through the form: first a spec the API refuses, shown as its message.
        form = page.locator("form#submit-job")
        visible_and_uncovered(page, form.locator("textarea[name=spec]"))
        page.fill("textarea[name=spec]", "prompts: [p]\ndeliver: 0\nbudget_usd: 1\n")
        page.click("#submit-button")
        assert page.locator("#submit-error").inner_text() == "spec:2:1: deliver: must be ≥ 1"
        page.screenshot(path=str(SHOTS / "submit-refused.png"))
        job_spec = spec(deliver=3, concurrency=1, max_candidates=30, name="<script>alert(1)</script> shots")
        page.fill("textarea[name=spec]", yaml.safe_dump(job_spec))
        page.set_input_files(
            "input[name=references]",
            files=[{"name": "hopper.jpg", "mimeType": "image/jpeg", "buffer": photo}],
        )
        page.screenshot(path=str(SHOTS / "submit-form.png"))
        page.click("#submit-button")
        # Sent straight to the job's live page, open while the job runs.
        page.wait_for_url(f"{base}/jobs/*")
        job = httpx.get(f"{base}/v1/jobs/{page.url.rsplit('/', 1)[-1]}", headers=headers).json()
        upload = httpx.get(f"{base}/v1/uploads", headers=headers).json()[0]
        assert upload["filename"] == "hopper.jpg" and job["spec"]["references"] == [upload["ref"]]
        reference = page.locator(".refs img").first  # the photo, shown with the job's spec
        reference.wait_for()
        loaded = "img => img.complete ? img.naturalWidth : new Promise(r => { img.onload = () => r(img.naturalWidth); })"
        assert reference.evaluate(loaded) > 0
        # A candidate scored after the page was rendered, pushed over SSE.
        page.wait_for_selector("#live li[data-source=live]", timeout=120_000)
        page.screenshot(path=str(SHOTS / "job-live.png"))
        page.wait_for_selector("#job[data-status=delivered]", timeout=180_000)  # reloaded at the end
        page.goto(f"{base}/")
        assert page.locator(f'tr[data-job="{job["id"]}"]').is_visible()
        assert (
            "<script>alert(1)</script> shots" in page.locator("#jobs").inner_text()
        )  # escaped, shown as text
        page.goto(f"{base}/jobs/{job['id']}")
        gallery = page.locator("#delivered .thumb")
        assert gallery.count() == 3
        widths = page.eval_on_selector_all("#delivered img", "imgs => imgs.map(i => i.naturalWidth)")
        assert widths == [256, 256, 256]
        visible_and_uncovered(page, gallery.first)
        page.screenshot(path=str(SHOTS / "job-delivered.png"), full_page=True)

        reject = page.locator("#rejects .thumb").first  # the market injects blank images: some fail
        reject.scroll_into_view_if_needed()
        reject.click()
        dialog = page.locator("dialog#scores")
        assert dialog.is_visible()
        failing = dialog.locator("td.verdict-fail").first
        for cell in (failing, dialog.locator("td.value").first, dialog.locator("td.threshold").first):
            visible_and_uncovered(page, cell)
        assert failing.inner_text() == "FAIL"
        page.screenshot(path=str(SHOTS / "reject-scores.png"))
        page.click("#close-scores")

        page.goto(f"{base}/evaluations")
        page.set_input_files(
            "input[name=images]", files=[{"name": "hopper.jpg", "mimeType": "image/jpeg", "buffer": photo}]
        )
        page.click("#upload-button")
        page.wait_for_url(f"{base}/evaluations/*")
        card = page.locator(".image-card").first
        visible_and_uncovered(page, card.locator("img"))
        card.locator("button.reject").click()
        card.locator(".given", has_text="you said: reject").wait_for()
        page.screenshot(path=str(SHOTS / "evaluation-feedback.png"), full_page=True)
        evaluation_id = page.url.rsplit("/", 1)[-1]
        stored = httpx.get(f"{base}/v1/evaluations/{evaluation_id}", headers=headers).json()
        assert stored["results"][0]["name"] == "hopper.jpg"
        assert not [e for e in errors if "Content Security Policy" in e], errors
        browser.close()
