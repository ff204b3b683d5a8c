"""Which person a reference photo shows, and how a plan renders that person (or drifts off them)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import derive_rng
from imagefunnel.market.images import IDENTITY_DRIFT, AssetLibrary, Truth, plan_image
from imagefunnel.market.subjects import identity_of


def png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def plan(library: AssetLibrary, seed: int, **overrides: object) -> Truth:
    options: dict[str, object] = {
        "provider": "p",
        "library": library,
        "width": 512,
        "height": 512,
        "seed": seed,
        "image_format": "png",
        "defect_rate": 0.0,
        "defect_mix": {},
        "rng": derive_rng("subjects", seed),
    }
    return plan_image(**(options | overrides))


def test_identity_groups_come_from_file_names() -> None:
    assert identity_of("obama_2.jpg") == identity_of("obama_3.jpg") == "obama"
    assert identity_of("jesper_2.jpg") == "jesper"
    assert identity_of("grace_hopper.jpg") == "grace_hopper"


def test_a_reference_is_recognised_by_bytes_or_by_look(library: AssetLibrary) -> None:
    obama = library.image("obama_2.jpg")
    small = np.asarray(cv2.resize(obama, (300, 300), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    assert library.subject([library.file("obama_2.jpg")]) == "obama"  # the very file
    assert library.subject([png(obama)]) == "obama"  # re-encoded
    assert library.subject([png(small)]) == "obama"  # resized
    assert library.subject([png(np.ascontiguousarray(obama[:, ::-1]))]) == "obama"  # mirrored
    assert library.subject([library.file("jesper_3.jpg")]) == "jesper"


def test_an_unknown_or_broken_reference_names_nobody(library: AssetLibrary) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert library.subject([png(noise)]) is None
    assert library.subject([b"not an image", b""]) is None
    assert library.subject([]) is None


def test_several_references_vote_for_the_subject(library: AssetLibrary) -> None:
    refs = [library.file("biden.jpg"), library.file("obama_1.jpg"), library.file("obama_3.jpg")]
    assert library.subject(refs) == "obama"
    assert library.subject([library.file("biden.jpg"), library.file("obama_1.jpg")]) == "biden"  # tie: first


def test_a_subject_request_renders_that_person_unless_the_provider_drifts(library: AssetLibrary) -> None:
    faithful = [plan(library, seed, subject="obama") for seed in range(30)]
    assert {identity_of(t.source) for t in faithful} == {"obama"}
    assert len({t.source for t in faithful}) == 3  # every photo of the person, for variety
    assert all(t.clean and t.labels == () and t.subject == "obama" for t in faithful)
    drifting = [plan(library, seed, subject="obama", identity_drift_rate=1.0) for seed in range(30)]
    assert all(identity_of(t.source) != "obama" for t in drifting)
    assert all(t.identity_drift and not t.clean and t.labels == (IDENTITY_DRIFT,) for t in drifting)
    some = [plan(library, seed, subject="obama", identity_drift_rate=0.3) for seed in range(200)]
    assert 0.2 < sum(t.identity_drift for t in some) / len(some) < 0.4


def test_drift_and_a_defect_are_both_labelled(library: AssetLibrary) -> None:
    truth = plan(
        library,
        3,
        subject="obama",
        identity_drift_rate=1.0,
        defect_rate=1.0,
        defect_mix={Defect.CLOSED_EYES: 1.0},
    )
    assert truth.labels == ("closed_eyes", IDENTITY_DRIFT)


def test_without_a_subject_nothing_is_labelled_drift(library: AssetLibrary) -> None:
    truths = [plan(library, seed, identity_drift_rate=1.0) for seed in range(20)]
    assert all(t.subject is None and t.clean for t in truths)
    assert len({identity_of(t.source) for t in truths}) > 2  # anyone, as before


def test_face_defects_are_not_drawn_where_no_face_could_be_found(library: AssetLibrary) -> None:
    mix = {Defect.CLOSED_EYES: 1.0, Defect.BLUR: 1.0}
    tiny = [plan(library, seed, width=96, height=96, defect_rate=1.0, defect_mix=mix) for seed in range(20)]
    assert {t.defect for t in tiny} == {Defect.BLUR}
    only_faces = plan(library, 1, width=96, height=96, defect_rate=1.0, defect_mix={Defect.FACE_CUT: 1.0})
    assert only_faces.clean
