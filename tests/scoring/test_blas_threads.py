"""NumPy's OpenBLAS set to one thread by the scorer."""

from __future__ import annotations

import ctypes

import pytest

from imagefunnel.scoring import blas_threads


def test_numpys_openblas_runs_one_thread_after_the_call() -> None:
    libraries = blas_threads._numpy_openblas()
    if not libraries:
        pytest.skip("this NumPy ships no OpenBLAS")
    assert blas_threads.use_one_blas_thread()
    library = ctypes.CDLL(str(libraries[0]))
    getter = next(
        getattr(library, n)
        for n in ("openblas_get_num_threads64_", "openblas_get_num_threads")
        if hasattr(library, n)
    )
    assert getter() == 1
    assert blas_threads.use_one_blas_thread()  # a second call is a no-op that still reports success
