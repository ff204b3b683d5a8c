from __future__ import annotations

import numpy as np
import pytest

from imagefunnel.scoring.colorimetry import delta_e_2000, hex_to_lab, rgb_to_lab

# Test pairs 1, 7, 13, 17, 19 and 25 of Sharma, Wu and Dalal (2005), Table 1, with their ΔE00.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.4900, -0.0010), (50.0, -2.4900, 0.0009), 7.1792),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
]


@pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA)
def test_ciede2000_matches_published_pairs(lab1: tuple, lab2: tuple, expected: float) -> None:
    assert float(delta_e_2000(lab1, lab2)) == pytest.approx(expected, abs=1e-4)
    assert float(delta_e_2000(lab2, lab1)) == pytest.approx(expected, abs=1e-4)


def test_lab_of_white_and_broadcasting() -> None:
    assert hex_to_lab("#ffffff") == pytest.approx([100.0, 0.0, 0.0], abs=0.05)
    pixels = rgb_to_lab(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8))
    assert pixels.shape == (1, 2, 3)
    distances = delta_e_2000(pixels.reshape(-1, 1, 3), np.stack([hex_to_lab("#ff0000")])[None])
    assert distances.shape == (2, 1) and distances[0, 0] < 0.5 < distances[1, 0]
