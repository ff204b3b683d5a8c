"""The report as a person sees it: opened in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright


def test_report_renders_thumbnails_scores_and_reasons(demo_run, chromium: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = demo_run.outputs.result
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(demo_run.outputs.report.as_uri())
        assert page.locator("#delivered .card").count() == result.delivered
        assert page.locator("#rejected .card").count() == sum(not c.passed for c in result.candidates)
        # Every thumbnail that should be an image decoded in the browser.
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        assert widths and all(w > 0 for w in widths)
        rows = page.locator("#providers tr").count() - 1
        assert rows == len(result.providers)
        rejected = [c for c in result.candidates if not c.passed]
        assert rejected, "seed 13 gives rejected candidates: the reject cards are checked"
        card = page.locator(f'[data-candidate="{rejected[0].id}"]')
        assert rejected[0].failed[0] in card.inner_text()
        card.locator("summary").click()
        assert card.locator("td.f").count() >= 1, "the failing dimension is marked FAIL"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
