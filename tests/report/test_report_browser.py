"""The report as a person sees it: opened in a real headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from imagefunnel.cli.demo import demo_spec
from imagefunnel.report import write_report
from imagefunnel.store import BlobStore


@pytest.fixture(scope="module")
def browser(chromium: str, demo_run, failed_run) -> Iterator[Browser]:  # type: ignore[no-untyped-def]
    # The jobs run with asyncio.run, which cannot start inside Playwright's running event loop:
    # they are run (once per session) before the browser starts.
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    yield page
    page.close()


# True when a person can see the element once the page is scrolled down to it (vertically only: a
# table that needs the page scrolled sideways is not shown whole): its box lies inside the viewport
# and nothing is drawn over its centre (the topmost element there is the element or a descendant).
_SEEN = """el => {
  const box = el.getBoundingClientRect();
  window.scrollBy(0, box.top + box.height / 2 - innerHeight / 2);
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return false;
  if (r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight) return false;
  const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return top !== null && el.contains(top);
}"""


def seen(cell: Locator) -> bool:
    return bool(cell.evaluate(_SEEN))


def test_report_renders_thumbnails_scores_and_reasons(demo_run, page: Page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = demo_run.outputs.result
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


def test_an_opened_cards_table_is_seen_whole(demo_run, page: Page) -> None:  # type: ignore[no-untyped-def]
    page.goto(demo_run.outputs.report.as_uri())
    # The first card of a grid has neighbours to its right: the table must not slide under them.
    for grid in ("#delivered", "#rejected"):
        card = page.locator(f"{grid} .card").first
        card.locator("summary").click()
        for row in card.locator("details tr").all()[1:]:
            threshold, verdict = row.locator("td").nth(2), row.locator("td").nth(3)
            assert seen(threshold), f"{grid}: threshold of {row.inner_text()!r} is hidden"
            assert seen(verdict), f"{grid}: verdict of {row.inner_text()!r} is hidden"
        card.locator("summary").click()


_RED = "rgb(179, 38, 30)"  # --bad in the report's style


def _colour(el: Locator) -> str:
    return str(el.evaluate("el => getComputedStyle(el).color"))


def test_stop_reason_spec_and_overspend_are_seen(demo_run, page: Page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = demo_run.outputs.result
    first, *rest = result.candidates
    over = first.model_copy(update={"quoted_usd": first.charged_usd / 2})
    result = result.model_copy(
        update={"candidates": [over, *(c.model_copy(update={"quoted_usd": c.charged_usd}) for c in rest)]}
    )
    spec = demo_spec().model_copy(
        update={"deliver": 4, "max_candidates": 20, "seed": 13, "budget_usd": result.spent_usd / 2}
    )
    report = write_report(result, BlobStore(demo_run.out_dir / "blobs"), tmp_path / "r.html", spec=spec)
    page.goto(report.as_uri())
    banner = page.locator("#outcome")
    # At the top: seen without scrolling, before the numbers.
    box = banner.bounding_box()
    assert box is not None and box["y"] < 200
    assert result.stop_reason in banner.inner_text() and seen(banner)
    assert seen(page.locator("#over-budget")) and _colour(page.locator("#over-budget")) == _RED
    assert _colour(page.locator("#spent b")) == _RED
    charge = page.locator(f'[data-candidate="{over.id}"] .charge')
    assert seen(charge) and _colour(charge) == _RED and "> quote" in charge.inner_text()
    others = page.locator(".charge:not(.over)")
    assert others.count() == len(rest) and all(_colour(c) != _RED for c in others.all())
    assert seen(page.locator("#spec")) and spec.prompts[0] in page.locator("#spec").inner_text()


def test_failed_report_shows_why_and_what_was_tried(failed_run, page: Page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = write_report(
        failed_run.outputs.result,
        BlobStore(failed_run.out_dir / "blobs"),
        tmp_path / "r.html",
        spec=failed_run.spec,
        ledger=failed_run.ledger,
    )
    page.goto(report.as_uri())
    assert seen(page.locator("#outcome")) and seen(page.locator("#why-failed"))
    assert "down-host" in page.locator("#why-failed").inner_text()
    failures = page.locator("#failures tr")
    assert failures.count() == 2 and "503 service unavailable" in failures.nth(1).inner_text()
    assert page.locator("#rejections, .grid").count() == 0, "no empty tables or grids"
