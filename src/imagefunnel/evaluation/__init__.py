"""Evaluation: a labelled development set from real photos, per-dimension metrics, calibration.

``generate_devset`` writes clean variants and injected defects with ``labels.json``; ``score_devset``
measures every dimension once; ``evaluate`` compares with the labels at any thresholds; ``calibrate``
picks per-dimension thresholds under a false-reject budget.
"""

from imagefunnel.evaluation.calibration import Calibrated, calibrate, thresholds_yaml
from imagefunnel.evaluation.devset import (
    DEFAULT_STRENGTHS,
    EXPECT,
    DevSetConfig,
    defect_names,
    generate_devset,
)
from imagefunnel.evaluation.manifest import (
    MANIFEST_NAME,
    DevSetError,
    DevSetManifest,
    LabeledImage,
    SourcePhoto,
    load_manifest,
)
from imagefunnel.evaluation.metrics import (
    HARD_STRENGTH,
    DimensionStats,
    EvalReport,
    ScoredImage,
    SourceRejects,
    evaluate,
    score_devset,
)

__all__ = [
    "DEFAULT_STRENGTHS",
    "EXPECT",
    "HARD_STRENGTH",
    "MANIFEST_NAME",
    "Calibrated",
    "DevSetConfig",
    "DevSetError",
    "DevSetManifest",
    "DimensionStats",
    "EvalReport",
    "LabeledImage",
    "ScoredImage",
    "SourcePhoto",
    "SourceRejects",
    "calibrate",
    "defect_names",
    "evaluate",
    "generate_devset",
    "load_manifest",
    "score_devset",
    "thresholds_yaml",
]
