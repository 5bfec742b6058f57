"""``edgekit fleet``: fleet tools; ``sim`` runs simulated devices against a broker.

Thin: flags -> SimSettings -> ``cloud_sync.sim.run_fleet``; numpy and the simulator are
imported inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from edgekit.cli.options import JsonFlag
from edgekit.cli.output import console, print_json

app = typer.Typer(help="Fleet tools: simulated devices for load and drift tests.",
                  no_args_is_help=True)


@app.command("sim")
def sim(broker: str = typer.Option(..., "--broker", help="mqtt://HOST:PORT"),
        fleet: str = typer.Option("sim", "--fleet", help="Fleet of the simulated devices."),
        devices: int = typer.Option(10, "--devices", help="How many devices."),
        interval: float = typer.Option(10.0, "--interval", help="Seconds between telemetry."),
        duration: float = typer.Option(60.0, "--duration", help="Seconds to run."),
        drift_after: float = typer.Option(None, "--drift-after", help="Seconds until drift."),
        drift_fraction: float = typer.Option(0.0, "--drift-fraction",
                                             help="Share of devices that drift (0..1)."),
        bundle: Path = typer.Option(None, "--bundle", help="Bundle (.ekb) whose reference "
                                    "statistics the telemetry is drawn from."),
        credentials: Path = typer.Option(None, "--credentials", help="JSON from 'edgekit "
                                         "cloud device add --json' (an object, a list or lines)."),
        processes: int = typer.Option(1, "--processes", help="OS processes to spread over."),
        prefix: str = typer.Option("sim-", "--prefix", help="Device id prefix."),
        sample_chance: float = typer.Option(0.05, "--sample-chance",
                                            help="Chance of a sample after each telemetry."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        task: str = typer.Option("classification", "--task", help="What the simulated "
                                 "devices run: classification or detection (cameras)."),
        as_json: bool = JsonFlag) -> None:
    """Simulate devices speaking the real protocol over real MQTT connections."""
    from cloud_sync.sim import SimSettings, read_credentials, run_fleet

    creds = read_credentials(credentials) if credentials else ()
    settings = SimSettings(broker=broker, fleet=fleet, devices=len(creds) or devices,
                           interval_s=interval, duration_s=duration, drift_after_s=drift_after,
                           drift_fraction=drift_fraction, bundle=bundle, credentials=creds,
                           processes=processes, device_prefix=prefix,
                           sample_chance=sample_chance, seed=seed, task=task)
    report = run_fleet(settings).to_dict()
    if as_json:
        print_json(report)
        return
    console.print(f"{report['connected']}/{report['devices']} devices connected, "
                  f"{report['published_total']} messages published {report['published']}, "
                  f"{report['acked']} acknowledged, {report['refused']} refused, "
                  f"{report['drifted']} drifted, in {report['elapsed_s']} s", highlight=False)
