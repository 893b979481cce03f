"""Champion and challenger: the candidate of a pipeline run against the network's approved model.

The Champion step (processing/find_champion.py) writes `champion.json` (and the champion's `model.tar.gz`) for
the Evaluate step, which scores both models on the same test channel and writes `compare`'s
block into evaluation.json. The quality gate then registers the candidate only if it passes the
threshold and reaches the block's `bound`: the champion's value less the tolerance (or plus it,
where lower is better). Without a champion the bound is the candidate's own value, so that
condition holds and the threshold alone decides.

Plain Python: the Champion step imports this without TensorFlow, and the pipeline definition
(infra) reads its names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networks

CHAMPION_FILE = "champion.json"
MODEL_FILE = "model.tar.gz"
KEY = "champion_challenger"
"""evaluation.json's key for the block `compare` writes; the gate reads its `bound` and `summary`."""
BOUND = f"{KEY}.bound"
SUMMARY = f"{KEY}.summary"


@dataclass(frozen=True)
class Champion:
    """The newest Approved version of the network's model package group."""

    group: str
    model_package_arn: str
    version: int
    model_data_url: str


def write_champion(folder: Path, group: str, champion: Champion | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    document = asdict(champion) if champion else {"group": group, "model_package_arn": None}
    (folder / CHAMPION_FILE).write_text(json.dumps(document, indent=2) + "\n")


def read_champion(folder: Path) -> Champion | None:
    """What the Champion step found, or None where the group has no approved version; ValueError
    if the folder does not hold what it writes."""
    try:
        document = json.loads((folder / CHAMPION_FILE).read_text())
        if document["model_package_arn"] is None:
            return None
        return Champion(
            document["group"], document["model_package_arn"], int(document["version"]), document["model_data_url"]
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"champion dir {folder}: no {CHAMPION_FILE} as the Champion step writes it "
            f"({type(error).__name__}: {error})"
        ) from None


def compare(
    gate: networks.QualityGate,
    challenger: float,
    champion: Champion | None,
    champion_metrics: dict[str, float] | None,
    tolerance: float,
) -> dict[str, Any]:
    """The block of evaluation.json the quality gate reads: both figures of the gate's metric, the
    bound the candidate must reach, and a sentence for the Fail step's message and the registry."""
    metric, higher_is_better = gate.metric, gate.higher_is_better
    if champion is None or champion_metrics is None:
        return {
            "metric": metric,
            "challenger": challenger,
            "champion": None,
            "tolerance": tolerance,
            "bound": challenger,
            "passes": True,
            "summary": "no approved champion to compare with",
        }
    value = float(champion_metrics[metric])
    bound = value - tolerance if higher_is_better else value + tolerance
    passes = challenger >= bound if higher_is_better else challenger <= bound
    return {
        "metric": metric,
        "challenger": challenger,
        "champion": {
            "model_package_arn": champion.model_package_arn,
            "version": champion.version,
            "value": value,
            "metrics": champion_metrics,
        },
        "tolerance": tolerance,
        "bound": bound,
        "passes": passes,
        "summary": (
            f"champion {champion.group} version {champion.version} has {metric} = {value:.4f}; "
            f"with tolerance {tolerance:g} the candidate's must be {gate.comparison} {bound:.4f}"
        ),
    }
