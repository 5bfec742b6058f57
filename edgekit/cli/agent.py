"""``edgekit agent``: the on-device side. Imports only what a device has (no torch)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgekit.cli.output import console

app = typer.Typer(help="Run models on the device: serve, report telemetry, update safely.",
                  no_args_is_help=True)


@app.command("selftest")
def selftest(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle file (.ekb)."),
    pubkey: list[Path] = typer.Option(..., "--pubkey", help="Trusted public key (repeatable)."),
) -> None:
    """Verify a bundle, load it in this device's runtime and check its golden output."""
    from edge_agent.bundle import open_bundle, trusted_keys
    from edge_agent.model import LoadedModel

    with open_bundle(bundle, trusted_keys(pubkey)) as opened:
        loaded = LoadedModel.load(opened)
        diff = loaded.golden.max_abs_diff if loaded.golden else float("nan")
        console.print(f"ok: {opened.manifest.model.name} v{opened.manifest.model.version} runs "
                      f"here on {loaded.session.backend}; golden max abs diff {diff:.3g}",
                      highlight=False)
