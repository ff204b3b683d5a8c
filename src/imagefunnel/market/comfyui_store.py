"""What an emulated ComfyUI box keeps: its files (input/output/temp), history, billing log and truths.

Thread-safe: the server's event loop, the node-execution thread and the test thread that reads
``billing()``/``truth()`` all touch it. Files live in memory; names follow ComfyUI's rules (uploads
get `` (1)`` suffixes on a name clash with different content; saved images count up per prefix).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from imagefunnel.market.comfyui_box import GpuBillingRecord
from imagefunnel.market.images import Truth

__all__ = ["BoxStore"]

FileKey = tuple[str, str, str]  # (type, subfolder, filename)
_MAX_HISTORY = 10_000  # the real server keeps this many prompts


class BoxStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[FileKey, bytes] = {}
        self._counters: dict[tuple[str, str, str], int] = {}
        self._file_truths: dict[FileKey, Truth] = {}
        self._history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._truths: dict[str, Truth] = {}
        self._billing: list[GpuBillingRecord] = []

    # -- files ------------------------------------------------------------------------------
    def upload(self, kind: str, subfolder: str, filename: str, data: bytes, *, overwrite: bool) -> str:
        """Store an upload; returns the name it got (ComfyUI's ``image_upload`` naming)."""
        stem, dot, ext = filename.rpartition(".")
        if not dot:
            stem, ext = filename, ""
        name = filename
        with self._lock:
            counter = 1
            while not overwrite and (kind, subfolder, name) in self._files:
                if _digest(self._files[(kind, subfolder, name)]) == _digest(data):
                    return name  # the same bytes again: no copy
                name = f"{stem} ({counter}){dot}{ext}"
                counter += 1
            self._files[(kind, subfolder, name)] = data
        return name

    def save_output(self, kind: str, subfolder: str, prefix: str, data: bytes, truth: Truth | None) -> str:
        """Store a saved image as ``{prefix}_{counter:05}_.png``; returns the file name."""
        with self._lock:
            counter = self._counters.get((kind, subfolder, prefix), 0) + 1
            self._counters[(kind, subfolder, prefix)] = counter
            name = f"{prefix}_{counter:05}_.png"
            self._files[(kind, subfolder, name)] = data
            if truth is not None:
                self._file_truths[(kind, subfolder, name)] = truth
        return name

    def file(self, kind: str, subfolder: str, filename: str) -> bytes | None:
        with self._lock:
            return self._files.get((kind, subfolder, filename))

    def input_file(self, name: str) -> bytes | None:
        """An input file as ``LoadImage`` names it: ``name`` or ``subfolder/name``."""
        subfolder, _, filename = name.rpartition("/")
        return self.file("input", subfolder, filename)

    def input_names(self) -> list[str]:
        with self._lock:
            keys = [key for key in self._files if key[0] == "input"]
        return sorted(f"{sub}/{name}" if sub else name for _, sub, name in keys)

    # -- history ----------------------------------------------------------------------------
    def add_history(self, prompt_id: str, entry: dict[str, Any], outputs: Mapping[str, Any]) -> None:
        with self._lock:
            if len(self._history) >= _MAX_HISTORY:
                self._history.popitem(last=False)
            self._history[prompt_id] = entry
            truth = self._output_truth(outputs)
            if truth is not None:
                self._truths[prompt_id] = truth

    def _output_truth(self, outputs: Mapping[str, Any]) -> Truth | None:
        for ui in outputs.values():
            for image in ui.get("images", []):
                key = (image["type"], image["subfolder"], image["filename"])
                if key in self._file_truths:
                    return self._file_truths[key]
        return None

    def history(self, prompt_id: str | None = None, max_items: int | None = None) -> dict[str, Any]:
        with self._lock:
            if prompt_id is not None:
                return {prompt_id: self._history[prompt_id]} if prompt_id in self._history else {}
            items = list(self._history.items())
        if max_items is not None:
            items = items[max(0, len(items) - max_items) :]
        return dict(items)

    def delete_history(self, prompt_ids: list[str] | None) -> None:
        with self._lock:
            if prompt_ids is None:
                self._history.clear()
            for prompt_id in prompt_ids or ():
                self._history.pop(prompt_id, None)

    # -- side channels ----------------------------------------------------------------------
    def add_billing(self, record: GpuBillingRecord) -> None:
        with self._lock:
            self._billing.append(record)

    def billing(self) -> list[GpuBillingRecord]:
        with self._lock:
            return list(self._billing)

    def truth(self, prompt_id: str) -> Truth:
        with self._lock:
            return self._truths[prompt_id]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
