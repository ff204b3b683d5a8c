"""Diverse best K: a different picture beats a near-copy of one already chosen."""

from __future__ import annotations

import imagehash
import numpy as np

from imagefunnel.funnel.selection import Ranked, best_k, set_diversity


def _hash(bits: list[int]) -> str:
    return str(imagehash.ImageHash(np.array(bits, dtype=bool).reshape(8, 8)))


def test_best_k_prefers_a_different_picture_over_a_near_copy() -> None:
    base = [0] * 64
    near = [1] * 3 + [0] * 61  # 3 bits from base: a copy
    far = [1, 0] * 32  # 32 bits from base: another pose
    passed = [Ranked(1, 2.0), Ranked(2, 1.9), Ranked(3, 1.6)]
    hashes = {1: _hash(base), 2: _hash(near), 3: _hash(far)}
    assert [r.candidate_id for r in best_k(passed, 2)] == [1, 2]  # by quality alone
    assert [r.candidate_id for r in best_k(passed, 2, hashes=hashes)] == [1, 3]
    # Quality still rules when the gap is large: a far-better copy beats a poor different one.
    assert [
        r.candidate_id for r in best_k([Ranked(1, 2.0), Ranked(2, 1.9), Ranked(3, 0.5)], 2, hashes=hashes)
    ] == [1, 2]


def test_set_diversity_summarises_pairwise_distances() -> None:
    hashes = [_hash([0] * 64), _hash([1] * 3 + [0] * 61), _hash([1, 0] * 32)]
    found = set_diversity(hashes)
    assert found.images == 3 and found.min_distance == 3
    assert found.median_nearest == 3.0 and "closest pair 3 bits" in str(found)
    assert set_diversity(hashes[:1]).min_distance == 0
