"""Tier 1: prompt alignment by CLIP (optional extra ``imagefunnel[clip]``).

CLIP weights are hosted on model hubs, never inside a registry package, and imagefunnel never
downloads anything at run time. So the dimension runs only when the operator names a local
open_clip checkpoint (``IMAGEFUNNEL_CLIP_WEIGHTS``, with ``IMAGEFUNNEL_CLIP_MODEL`` for its
architecture, default ``ViT-B-32``); otherwise it is skipped with a message saying exactly that.
It is never faked.

The value is the cosine similarity between the image and prompt embeddings (roughly 0.25–0.35 for a
matching pair with ViT-B-32, below 0.2 for an unrelated one).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.registry import (
    DimensionInfo,
    Need,
    ScorerRegistry,
    ScoringContext,
    default_registry,
)
from imagefunnel.scoring.verdict import Direction

__all__ = ["ClipAligner", "register_alignment"]

WEIGHTS_ENV = "IMAGEFUNNEL_CLIP_WEIGHTS"
MODEL_ENV = "IMAGEFUNNEL_CLIP_MODEL"
DEFAULT_MODEL = "ViT-B-32"
ALIGNMENT_COST = 500.0  # a ViT forward pass on CPU: run after the cheap checks


class ClipAligner:
    """Loads an open_clip model from a local checkpoint, once, on first use (thread-safe)."""

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        weights = env.get(WEIGHTS_ENV, "")
        self.weights = Path(weights) if weights else None
        self.model_name = env.get(MODEL_ENV, DEFAULT_MODEL)
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, Any] | None = None

    def unavailable(self) -> str | None:
        """Why the dimension cannot run here, or None when it can."""
        if importlib.util.find_spec("open_clip") is None or importlib.util.find_spec("torch") is None:
            return "prompt alignment needs the clip extra: pip install 'imagefunnel[clip]'"
        if self.weights is None:
            return f"prompt alignment needs local CLIP weights: set {WEIGHTS_ENV} (nothing is downloaded)"
        if not self.weights.is_file():
            return f"prompt alignment: {WEIGHTS_ENV} points to {self.weights}, which is not a file"
        return None

    def _load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._loaded is None:
                import open_clip  # optional extra: imported only when weights are configured

                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.model_name, pretrained=str(self.weights)
                )
                model.eval()
                self._loaded = (model, preprocess, open_clip.get_tokenizer(self.model_name))
            return self._loaded

    def similarity(self, rgb: Any, prompt: str) -> float:
        import torch
        from PIL import Image

        model, preprocess, tokenizer = self._load()
        with torch.no_grad():
            image = model.encode_image(preprocess(Image.fromarray(rgb)).unsqueeze(0))
            text = model.encode_text(tokenizer([prompt]))
            image = image / image.norm(dim=-1, keepdim=True)
            text = text / text.norm(dim=-1, keepdim=True)
            return float((image @ text.T).item())


def register_alignment(registry: ScorerRegistry, aligner: ClipAligner) -> None:
    def prompt_alignment(features: ImageFeatures, context: ScoringContext) -> float:
        return aligner.similarity(features.analysis_rgb, context.prompt or "")

    info = DimensionInfo(
        name="prompt_alignment",
        tier=1,
        direction=Direction.HIGHER_IS_BETTER,
        value_range=(-1.0, 1.0),
        unit="cosine similarity",
        default_threshold=0.2,
        cost=ALIGNMENT_COST,
        fail_label="does not match the prompt",
        description="CLIP cosine similarity between the image and its prompt (optional: needs the "
        "clip extra and a local open_clip checkpoint; skipped otherwise).",
        needs=frozenset({Need.PROMPT}),
        optional=True,
    )
    registry.add(info, prompt_alignment, probe=aligner.unavailable)


register_alignment(default_registry, ClipAligner())
