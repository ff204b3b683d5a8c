"""``imagefunnel score`` as a new user meets it: in a subprocess, with files that are not photos.

Every run has a timeout, so a regression that blocks on a pipe or reads a device forever fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PORTRAITS = Path(__file__).parents[2] / "src" / "imagefunnel" / "market" / "assets" / "portraits"
CLEAN = PORTRAITS / "obama_1.jpg"  # passes the generic and headshot checks
DOG = PORTRAITS / "dog_donna.jpg"  # passes the generic checks: only a use case sees it is no headshot
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes and /dev")


def imagefunnel(*args: str | Path, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagefunnel", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def spec_file(folder: Path, references: list[str]) -> Path:
    spec = folder / "job.yaml"
    refs = ", ".join(json.dumps(ref) for ref in references)  # JSON strings are YAML strings
    spec.write_text(f"name: t\nprompts: [a headshot]\nbudget_usd: 1\ndeliver: 1\nreferences: [{refs}]\n")
    return spec


@posix_only
def test_a_fifo_is_refused_at_once_as_an_image_and_as_a_reference(tmp_path: Path) -> None:
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    done = imagefunnel("score", fifo, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {fifo}: cannot read: is a named pipe (FIFO)"
    spec = spec_file(tmp_path, [str(fifo)])
    for args in (("score", "--spec", spec, CLEAN), ("run", spec, "--out", tmp_path / "out")):
        done = imagefunnel(*args, cwd=tmp_path, timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"reference photo {fifo}: cannot read: is a named pipe (FIFO)" in done.stderr
        assert "Traceback" not in done.stderr


@posix_only
def test_devices_are_refused_not_read_until_memory_runs_out(tmp_path: Path) -> None:
    link = tmp_path / "innocent.png"
    link.symlink_to("/dev/zero")
    done = imagefunnel("score", "/dev/zero", "/dev/urandom", link, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {path}: cannot read: is a character device" for path in ("/dev/zero", "/dev/urandom", link)
    ]


def test_a_nul_byte_in_a_reference_path_is_a_spec_error(tmp_path: Path) -> None:
    done = imagefunnel("score", "--spec", spec_file(tmp_path, ["a\u0000b.jpg"]), CLEAN, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {tmp_path / 'job.yaml'}:5:14: references[0]: contains a NUL byte (\\0), which no file name can hold"
    )


def test_non_images_are_named_by_kind_and_their_contents_never_echoed(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    environ = tmp_path / "environ"
    environ.write_bytes(b"HOME=/root\x00API_KEY=hunter2\x00")
    done = imagefunnel("score", "--json", passwd, environ, cwd=tmp_path)
    assert done.returncode == 1  # named files are scored: not decodable is a failing verdict
    reasons = [row["dimensions"][0]["reason"] for row in json.loads(done.stdout)]
    assert reasons == ["decodable: not an image (text)", "decodable: not an image (unknown binary data)"]
    for secret in ("root:x", "hunter2", "HOME=", "first bytes"):
        assert secret not in done.stdout + done.stderr


def _photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    shutil.copy(CLEAN, folder / "b_clean.jpg")
    shutil.copy(DOG, folder / "a_dog.jpg")
    shutil.copy(CLEAN, folder / "more" / "c_clean.jpg")
    (folder / "notes.txt").write_text("shoot on friday\n")
    (folder / "brief.pdf").write_bytes(b"%PDF-1.7\n")
    return folder


def test_a_folder_scores_its_images_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    folder = _photo_folder(tmp_path)
    done = imagefunnel("score", "--json", folder, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [row["image"] for row in json.loads(done.stdout)] == [
        str(folder / "a_dog.jpg"),
        str(folder / "b_clean.jpg"),
    ]
    notes = [line for line in done.stderr.splitlines() if line.startswith("skipped")]
    assert notes == [
        f"skipped {folder / 'brief.pdf'}: not an image (PDF document)",
        f"skipped {folder / 'more'}: a folder (pass --recursive to score inside it)",
        f"skipped {folder / 'notes.txt'}: not an image (text)",
    ]
    deep = imagefunnel("score", "-r", "--json", folder, cwd=tmp_path)
    assert deep.returncode == 0, deep.stderr
    assert [Path(row["image"]).name for row in json.loads(deep.stdout)] == [
        "a_dog.jpg",
        "b_clean.jpg",
        "c_clean.jpg",
    ]


def test_a_folder_without_images_is_nothing_to_score(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("no photos here\n")
    done = imagefunnel("score", folder, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"skipped {folder / 'notes.txt'}: not an image (text)",
        f"error: nothing to score: no images in {folder} (1 skipped)",
    ]


def test_which_use_case_ran_is_said_every_time(tmp_path: Path) -> None:
    generic = imagefunnel("score", DOG, cwd=tmp_path)
    assert generic.returncode == 0, generic.stderr  # a dog passes the generic checks...
    first = generic.stdout.splitlines()[0]
    assert first.startswith("use case: none (generic checks only: decodable, brightness,")
    assert "pass --use-case headshot for faces" in first
    as_json = json.loads(imagefunnel("score", "--json", DOG, cwd=tmp_path).stdout)[0]
    assert as_json["use_case"] is None and as_json["checks"] == first
    headshot = imagefunnel("score", "--json", "--use-case", "headshot", DOG, cwd=tmp_path)
    assert headshot.returncode == 1  # ...and fails as a headshot
    row = json.loads(headshot.stdout)[0]
    assert row["use_case"] == "headshot"
    assert row["checks"].startswith("use case: headshot (from --use-case; ")
    assert "face_detected" in row["checks"]
    assert any(d["name"] == "face_detected" and not d["passed"] for d in row["dimensions"])


def test_a_misspelt_use_case_is_refused_not_ignored(tmp_path: Path) -> None:
    done = imagefunnel("score", "--use-case", "headshoot", CLEAN, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --use-case headshoot: not a use case; did you mean headshot?")


def test_an_unreadable_file_among_others_is_reported_and_the_rest_scored(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    done = imagefunnel("score", "--json", CLEAN, missing, DOG, cwd=tmp_path)
    assert done.returncode == 2
    assert [Path(row["image"]).name for row in json.loads(done.stdout)] == ["obama_1.jpg", "dog_donna.jpg"]
    assert done.stderr.strip() == f"error: {missing}: cannot read: No such file or directory"
    shown = imagefunnel("score", "--help", cwd=tmp_path).stdout
    words = " ".join(word for word in shown.split() if word not in "│╭╮╰╯")
    assert "2 invalid input (a file could not be read, nothing was left to score" in words


def test_many_images_are_scored_on_the_pool_and_reported_in_the_order_given(tmp_path: Path) -> None:
    # The pool scores several images at once; each verdict must still be its own image's, in order:
    # the blurred copies fail where the sharp ones pass, whatever finishes first.
    import io

    import cv2
    from rich.console import Console

    from imagefunnel.cli.score import score_images
    from imagefunnel.scoring import Scorer

    sharp = cv2.imread(str(CLEAN))
    names = []
    for i in range(6):
        path = tmp_path / f"{i}.jpg"
        image = cv2.GaussianBlur(sharp, (0, 0), 6) if i % 3 == 1 else sharp
        cv2.imwrite(str(path), image)
        names.append(path)
    out, err = io.StringIO(), io.StringIO()
    code = score_images(
        Console(file=out),
        images=names,
        spec_path=None,
        as_json=True,
        use_case="headshot",
        err_console=Console(file=err),
    )
    rows = json.loads(out.getvalue())
    assert [row["image"] for row in rows] == [str(p) for p in names]
    alone = Scorer(use_case="headshot", score_all=True)
    assert [row["passed"] for row in rows] == [alone.score_bytes(p.read_bytes()).passed for p in names]
    assert [row["passed"] for row in rows] == [True, False, True, True, False, True]
    assert int(code) != 0  # some failed
