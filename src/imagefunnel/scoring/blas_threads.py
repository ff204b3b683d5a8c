"""One BLAS thread for NumPy's matrix products in this process.

The scorer already runs one image per core on its executor, like the ONNX sessions (one intra-op
thread each). NumPy's bundled OpenBLAS would otherwise start a thread per core inside every product:
on a busy executor those threads only compete with the other images, and their spinning costs CPU
(the face descriptor network: 19 ms of CPU per face with two BLAS threads against 17 ms with one).

There is no NumPy API for this, so OpenBLAS's own setter is called through ctypes on the library that
NumPy's wheel ships. Where that is not found (NumPy built against another BLAS) nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

__all__ = ["use_one_blas_thread"]

_log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_done = False

# OpenBLAS's setter, under the names its 64-bit-integer and plain builds export
_SETTERS = ("openblas_set_num_threads64_", "openblas_set_num_threads", "scipy_openblas_set_num_threads64_")


def _numpy_openblas() -> list[Path]:
    import numpy

    folder = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    return sorted(folder.glob("libopenblas*.so*")) if folder.is_dir() else []


def use_one_blas_thread() -> bool:
    """Set NumPy's OpenBLAS to one thread (once per process); False where there is no such BLAS."""
    global _done
    with _LOCK:
        if _done:
            return True
        for path in _numpy_openblas():
            try:
                library = ctypes.CDLL(str(path))  # already loaded by NumPy: the same instance
            except OSError:
                continue
            for name in _SETTERS:
                setter = getattr(library, name, None)
                if setter is not None:
                    setter(1)
                    _done = True
                    return True
        _log.debug("no OpenBLAS found next to NumPy; its thread count is left as it is")
        return False
