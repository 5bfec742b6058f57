"""``edgekit cloud triggers list`` and ``edgekit cloud samples export``: what drift fired,
and the kept samples for retraining. The cloud stack is imported inside the commands."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edge_agent.errors import ConfigError
from edgekit.cli.options import JsonFlag
from edgekit.cli.output import console, local_time, people_table, print_json

triggers_app = typer.Typer(help="Retraining triggers fired by drift.", no_args_is_help=True)
samples_app = typer.Typer(help="Samples kept by devices, for retraining.", no_args_is_help=True)

DbOption = typer.Option(None, "--db", help="Database URL (default: the SQLite store in the "
                        "cloud data folder).")
ConfigOption = typer.Option(None, "--config", help="JSON or YAML file with cloud settings.")
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """Unix seconds, an ISO 8601 time, or an age such as ``90m``, ``24h``, ``7d``."""
    if value is None:
        return None
    text = value.strip()
    try:
        if text[-1:] in UNITS and text[:-1].replace(".", "", 1).isdigit():
            return (time.time() if now is None else now) - float(text[:-1]) * UNITS[text[-1]]
        if text.replace(".", "", 1).isdigit():
            return float(text)
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        pass
    raise ConfigError(f"--since {value!r}: give Unix seconds, an ISO time "
                      "(2026-11-22T10:00) or an age (90m, 24h, 7d)")


def _actions_cell(actions: list[dict[str, Any]]) -> str:
    return "\n".join(f"{a['kind']}: {a['state']} ({a['attempts']}/{a['max_attempts']})"
                     for a in actions) or "-"


def _devices_cell(devices: list[str], shown: int = 3) -> str:
    more = f"\n+{len(devices) - shown} more" if len(devices) > shown else ""
    return ("\n".join(devices[:shown]) + more) or "fleet-wide"


def _table(found: list[dict[str, Any]]) -> Table:
    table = people_table("id", "fired", "fleet", "model", "devices", "samples", "actions",
                         title=f"{len(found)} trigger(s)", caption="\n".join(
                             f"#{t['id']}: {t['reason']}" for t in found),
                         caption_justify="left")
    for t in found:
        table.add_row(str(t["id"]), local_time(t["fired_at"], sep="\n"), t["fleet"],
                      f"{t['model']} {t['version']}", _devices_cell(t["devices_affected"]),
                      str(t["samples_count"]), _actions_cell(t["actions"]))
    return table


@triggers_app.command("list")
def triggers_list(fleet: str = typer.Option(None, "--fleet", help="Only this fleet."),
                  limit: int = typer.Option(100, "--limit", min=1, help="At most this many."),
                  db: str = DbOption, config: Path = ConfigOption,
                  as_json: bool = JsonFlag) -> None:
    """Triggers newest first, with their actions' states."""
    from cloud_sync.triggers.queries import list_triggers
    from edgekit.cli.cloud import _store

    with _store(db, config) as (_cfg, engine), engine.connect() as conn:
        found = list_triggers(conn, fleet, limit)
    if as_json:
        print_json(found)
        return
    console.print(_table(found) if found else "no triggers yet", highlight=False)


@samples_app.command("export")
def samples_export(fleet: str = typer.Option(..., "--fleet", help="The devices' fleet."),
                   model: str = typer.Option(None, "--model", help="Only this model."),
                   version: str = typer.Option(None, "--version", help="Only this version "
                                               "(needs --model)."),
                   since: str = typer.Option(None, "--since", help="Unix seconds, ISO time or "
                                             "age (24h, 7d)."),
                   reason: str = typer.Option(None, "--reason", help="Only samples kept for "
                                              "this reason (e.g. low_confidence)."),
                   limit: int = typer.Option(10_000, "--limit", min=0,
                                             help="At most this many, the newest."),
                   out: Path = typer.Option(..., "-o", "--out", help="The .npz file to write "
                                            "(--format coco: the folder)."),
                   fmt: str = typer.Option("npz", "--format", help="npz (one file) or coco "
                                           "(PNG images + COCO JSON with the devices' "
                                           "detections, for CVAT / Label Studio)."),
                   db: str = DbOption, config: Path = ConfigOption,
                   as_json: bool = JsonFlag) -> None:
    """Write samples (inputs, predictions or detections, reason, device, time) to an .npz,
    or as a COCO dataset an annotation tool imports."""
    from cloud_sync.samples_export import SampleFilter, export_samples
    from edgekit.cli.cloud import _store

    wanted = SampleFilter(fleet, model, version, parse_since(since), reason, limit)
    with _store(db, config) as (_cfg, engine), engine.connect() as conn:
        meta = export_samples(conn, wanted, out, fmt)
    if as_json:
        print_json({**meta, "out": str(out)})
        return
    skipped = meta["skipped_other_shapes"]
    console.print(f"{meta['samples']} sample(s) written to {out}"
                  + (f" ({skipped} of another input shape left out)" if skipped else ""),
                  highlight=False)
