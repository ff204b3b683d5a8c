"""Product shots in the emulated market: which prompts get one, what it looks like, its defects and
its truth."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

import imagefunnel.spec
from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import Market
from imagefunnel.market.images import AssetLibrary, Truth, plan_image, plan_product_image, render
from imagefunnel.market.products import (
    DEFAULT_PRODUCT_MIX,
    PRODUCT_DEFECTS,
    ProductAsk,
    product_ask,
    reference_color,
)
from imagefunnel.market.records import ImageInput, Job, derive_rng
from imagefunnel.market.scenario import Scenario

EXAMPLES = Path(imagefunnel.spec.__file__).parent / "examples"
CATALOGUE = "a red gift box on a seamless white backdrop, studio light"
WHITE = (255, 255, 255)


def decode(data: bytes) -> NDArray[np.uint8]:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


@pytest.mark.parametrize(
    ("prompt", "shape", "background"),
    [
        (CATALOGUE, "box", WHITE),
        ("a red gift box on white, lots of empty space above it", "box", WHITE),
        ("a blue glass bottle on a seamless grey backdrop", "bottle", (128, 128, 130)),
        ("packshot of a ceramic mug on a plain black background", "mug", (28, 28, 30)),
    ],
)
def test_a_product_on_a_named_backdrop_is_a_product_shot(
    prompt: str, shape: str, background: tuple[int, int, int]
) -> None:
    ask = product_ask(prompt)
    assert ask is not None
    assert (ask.shape, ask.background) == (shape, background)
    assert ask.color != background  # the product's colour is not the backdrop's


@pytest.mark.parametrize(
    "prompt",
    [
        "a headshot",
        "a mug",  # no backdrop named: the portrait model, as before
        "a product photo of a mug on a table",
        "a woman holding a red mug on a white background",  # a person: a portrait
    ],
)
def test_other_prompts_are_not_product_shots(prompt: str) -> None:
    assert product_ask(prompt) is None


def test_room_for_the_copy_puts_the_product_low() -> None:
    ask = product_ask("a red gift box on white, lots of empty space above it")
    assert ask is not None and ask.room_above
    assert product_ask(CATALOGUE) == ProductAsk("box", (196, 30, 40), WHITE, room_above=False)


def test_the_reference_photo_gives_the_product_colour() -> None:
    found = reference_color([(EXAMPLES / "product-reference.jpg").read_bytes()])
    assert found is not None
    assert np.abs(np.array(found) - (185, 28, 37)).max() <= 4  # the red box of the photo
    assert reference_color([b"not an image"]) is None


def market(**profile: object) -> Market:
    base = {"name": "p", "protocol": "fal", "models": ["fal-ai/flux/dev"], "price_usd_per_mp": 0.02}
    return Market(Scenario.model_validate({"name": "t", "seed": 1, "providers": [base | profile]}))


def truth_of(m: Market, prompt: str, seed: int, references: tuple[bytes, ...] = ()) -> Job:
    job = m.submit("p", "fal-ai/flux/dev", ImageInput(prompt, 256, 256, seed=seed, references=references))
    assert isinstance(job, Job)
    return job


def test_the_market_renders_the_product_in_the_reference_colour() -> None:
    m = market()
    reference = (EXAMPLES / "product-reference.jpg").read_bytes()
    with_photo = truth_of(m, CATALOGUE, 1, (reference,))
    assert with_photo.truth.product is not None and with_photo.truth.clean
    assert with_photo.truth.source == "product:box"
    assert np.abs(np.array(with_photo.truth.product.color) - (185, 28, 37)).max() <= 4
    without = truth_of(m, CATALOGUE, 1)
    assert without.truth.product is not None and without.truth.product.color == (196, 30, 40)
    img = decode(m.image_bytes(with_photo))
    assert img.shape == (256, 256, 3)
    assert (img[:4] > 240).all()  # the white backdrop along the top
    centre = img[96:160, 96:160].reshape(-1, 3).astype(np.int16)
    assert (np.abs(np.median(centre, axis=0) - (185, 28, 37)) < 20).all()  # the product, lit head-on
    assert m.image_bytes(with_photo) == render(with_photo.truth, AssetLibrary())  # a pure function
    portrait = truth_of(m, "a headshot", 1)
    assert portrait.truth.product is None


def test_seeds_give_different_shots_and_the_same_seed_the_same() -> None:
    ask = product_ask(CATALOGUE)
    assert ask is not None

    def shot(seed: int) -> bytes:
        truth = plan_product_image(
            provider="p",
            ask=ask,
            width=128,
            height=128,
            seed=seed,
            image_format="png",
            defect_rate=0.0,
            defect_mix=None,
            rng=derive_rng("t", seed),
        )
        return render(truth, AssetLibrary())

    assert shot(3) == shot(3)
    assert len({shot(seed) for seed in range(4)}) == 4


@pytest.mark.parametrize("defect", sorted(PRODUCT_DEFECTS | {Defect.BLUR, Defect.TEXT_OVERLAY}))
def test_every_product_defect_is_labelled_and_changes_the_image(
    library: AssetLibrary, defect: Defect
) -> None:
    ask = product_ask(CATALOGUE)
    assert ask is not None

    def planned(rate: float) -> Truth:
        return plan_product_image(
            provider="p",
            ask=ask,
            width=256,
            height=256,
            seed=5,
            image_format="png",
            defect_rate=rate,
            defect_mix={defect: 1.0},
            rng=derive_rng("t", 5),
        )

    clean, bad = planned(0.0), planned(1.0)
    assert clean.defect is None and clean.clean
    assert bad.defect is defect and bad.labels == (defect.value,)
    assert bad.product == clean.product  # the defect is drawn after the scene
    diff = np.abs(decode(render(bad, library)).astype(np.float32) - decode(render(clean, library)))
    assert diff.max(axis=2).mean() > 2.0


def test_face_defects_never_reach_a_product_and_product_defects_never_a_portrait(
    library: AssetLibrary,
) -> None:
    ask = product_ask(CATALOGUE)
    assert ask is not None
    mix = {Defect.CLOSED_EYES: 5.0, Defect.FACE_CUT: 5.0, Defect.PRODUCT_WRONG_COLOUR: 1.0}
    for seed in range(8):
        product = plan_product_image(
            provider="p",
            ask=ask,
            width=256,
            height=256,
            seed=seed,
            image_format="png",
            defect_rate=1.0,
            defect_mix=mix,
            rng=derive_rng("t", seed),
        )
        assert product.defect is Defect.PRODUCT_WRONG_COLOUR
        portrait = plan_image(
            provider="p",
            library=library,
            width=256,
            height=256,
            seed=seed,
            image_format="png",
            defect_rate=1.0,
            defect_mix=mix,
            rng=derive_rng("t", seed),
        )
        assert portrait.defect in {Defect.CLOSED_EYES, Defect.FACE_CUT}


def test_the_default_product_mix_and_a_profile_s_own() -> None:
    m = market(defect_rate=1.0, product_defect_mix={"product_cut_off": 1.0})
    assert {truth_of(m, CATALOGUE, seed).truth.defect for seed in range(4)} == {Defect.PRODUCT_CUT_OFF}
    drawn = {truth_of(market(defect_rate=1.0), CATALOGUE, seed).truth.defect for seed in range(40)}
    assert drawn <= set(DEFAULT_PRODUCT_MIX) and len(drawn) >= 4
