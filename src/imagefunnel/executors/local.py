"""In-process executor. OpenCV and numpy release the GIL, so threads use both cores for scoring."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def local_executor(max_workers: int | None = None) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=max_workers or min(4, os.cpu_count() or 1), thread_name_prefix="score"
    )
