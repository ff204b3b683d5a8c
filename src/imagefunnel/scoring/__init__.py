"""Scoring: judge every candidate on every quality dimension, cheapest first.

Tier 1 (``generic``) holds dimensions that apply to any image; later tiers (use case, rules) register
into the same :data:`default_registry`. Importing this package registers tier 1.
"""

from imagefunnel.scoring import color as color  # registers color_cast (tier 1)
from imagefunnel.scoring import detail as detail  # registers sharpness and pixelation (tier 1)
from imagefunnel.scoring import generic as generic  # registers the tier-1 dimensions
from imagefunnel.scoring.engine import Scorer
from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.registry import (
    Dimension,
    DimensionInfo,
    Need,
    ScoreFn,
    ScorerRegistry,
    ScoringContext,
    default_registry,
)
from imagefunnel.scoring.verdict import DimensionScore, Direction, Verdict

__all__ = [
    "Dimension",
    "DimensionInfo",
    "DimensionScore",
    "Direction",
    "ImageFeatures",
    "Need",
    "ScoreFn",
    "Scorer",
    "ScorerRegistry",
    "ScoringContext",
    "Verdict",
    "default_registry",
]
