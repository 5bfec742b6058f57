"""Compose and write the chosen candidate's signed bundle: manifest with golden pair,
build-time metrics, lineage and reference statistics."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compress.search import Outcome
from edge_agent import __version__ as agent_version
from edge_agent.bundle import Golden, Manifest, ModelInfo, TargetInfo
from edge_agent.bundle.manifest import TensorSpec
from edge_agent.contracts.build_info import Lineage, Metrics
from edge_agent.golden import tolerance_for
from export.bundling import write_model_bundle
from export.inputs import BuildInputs
from export.refstats import reference_stats
from export.runner import ExportedModel

LAYOUTS = {4: "NCHW", 3: "NCL", 2: "NC"}


def _with_layout(specs: list[TensorSpec]) -> list[TensorSpec]:
    return [replace(s, layout=s.layout or LAYOUTS.get(len(s.shape))) for s in specs]


def write_chosen_bundle(outcome: Outcome, profile_name: str, inputs: BuildInputs,
                        name: str, version: str, metrics: dict[str, Any],
                        lineage: Lineage, key: Ed25519PrivateKey, out: Path) -> Manifest:
    """Run the chosen file once more for its golden pair and reference stats, then sign it.

    ``metrics`` are the build report's figures of this profile (``profile_figures``).
    """
    target, path = outcome.candidate.target, outcome.artifact.path
    model = ExportedModel(outcome.candidate.format, path, target.runtime_options())
    golden_in = [model.feed(inputs.data.val_x[:1].numpy())]
    golden_out = model.run_raw(golden_in[0])
    atol, rtol = tolerance_for(outcome.candidate.precision, golden_out)
    calibration = inputs.data.calibration.numpy()
    manifest = Manifest(
        model=ModelInfo(name=name, version=str(version)), profile=profile_name,
        target=TargetInfo(format=outcome.candidate.format, precision=outcome.candidate.precision,
                          runtime=target.runtime_options()),
        files={}, inputs=_with_layout(model.session.inputs),
        outputs=_with_layout(model.session.outputs),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        created_by=f"edgekit {agent_version} build",
        preprocessing=inputs.preprocessing, labels=list(inputs.labels),
        metrics=Metrics.from_dict(metrics, "metrics"), lineage=lineage,
        reference_stats=reference_stats(calibration, model.predict(calibration),
                                        inputs.task.spec),
        golden=Golden(atol=float(atol), rtol=float(rtol)), task=inputs.task.spec,
    )
    return write_model_bundle(manifest, path, golden_in, golden_out, key, out)
