"""What the executor tests share: the images they score, the scorer recipe, and the check that an
executor's verdicts are in-process scoring's (this folder's conftest.py makes fixtures of the first
two; a test that scores in a process of its own calls them directly)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from imagefunnel.evaluation.variants import encode_jpeg
from imagefunnel.executors import ScorerConfig, run_in, worker_scorer
from imagefunnel.funnel.engine import score_candidate
from imagefunnel.market import defects
from imagefunnel.market.images import AssetLibrary
from imagefunnel.scoring import Verdict

PHOTOS = ("obama_2.jpg", "obama_3.jpg")  # the same person as the reference photo, obama_1
DEFECTIVE = ("someone_else", "text", "blurred", "truncated")


def executor_images() -> dict[str, bytes]:
    """The encoded images the executor tests score, by name: PHOTOS pass, DEFECTIVE fail."""
    library = AssetLibrary()
    out = {name: encode_jpeg(library.image(name), 92) for name in PHOTOS}
    out["someone_else"] = encode_jpeg(library.image("luispedro.jpg"), 92)
    out["text"] = encode_jpeg(defects.text_overlay(library.image("obama_3.jpg")), 92)
    out["blurred"] = encode_jpeg(defects.blur(library.image("obama_2.jpg")), 92)
    out["truncated"] = defects.truncate(out["obama_2.jpg"])
    return out


def headshot_config() -> ScorerConfig:
    """The headshot cascade with a reference photo, every dimension measured: the whole model set."""
    return ScorerConfig(
        use_case="headshot",
        score_all=True,
        references=(encode_jpeg(AssetLibrary().image("obama_1.jpg"), 92),),
    )


def _comparable(verdict: Verdict, phash: str | None) -> tuple[object, ...]:
    """A verdict as an executor must reproduce it: every verdict, reason and hash exactly, and each
    measured value to six significant digits. A worker process may run the face models with another
    thread count than this one (Ray pins one thread per actor), which changes the order of float sums
    in the seventh digit, never a verdict."""
    scores = tuple((s.name, s.passed, s.reason, s.threshold, float(f"{s.value:.6g}")) for s in verdict.scores)
    return (verdict.passed, scores, verdict.skipped, phash)


def same_verdicts_as_in_process(
    executor: Executor, config: ScorerConfig, images: dict[str, bytes]
) -> dict[str, tuple[Verdict, str | None]]:
    """Score ``images`` on ``executor`` and here, assert both agree; (verdict, hash) by image name."""

    async def score_all() -> list[tuple[Verdict, str | None]]:
        return list(
            await asyncio.gather(*(run_in(executor, score_candidate, config, d) for d in images.values()))
        )

    remote = asyncio.run(score_all())
    local = [score_candidate(worker_scorer(config), data) for data in images.values()]
    assert [_comparable(v, h) for v, h in remote] == [_comparable(v, h) for v, h in local]
    return dict(zip(images, local, strict=True))
