"""The ``edgekit`` command: a thin layer that turns arguments into configs and calls the library.

Command groups live in their own modules and import heavy libraries (torch,
onnx, the cloud stack) only inside the commands that need them, so that
``edgekit agent ...`` on a device never loads torch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from edge_agent.errors import EdgekitError
from edgekit import __version__
from edgekit.cli import agent, build, bundle, cloud, fleet, keys, profiles, rollout
from edgekit.cli.output import fail

NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "absl")

app = typer.Typer(
    name="edgekit",
    help="Put PyTorch models on edge devices and keep them good there.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(profiles.app, name="profiles")
app.add_typer(keys.app, name="keys")
app.add_typer(bundle.app, name="bundle")
app.add_typer(agent.app, name="agent")
app.add_typer(cloud.app, name="cloud")
app.add_typer(fleet.app, name="fleet")
app.add_typer(rollout.app, name="rollout")
app.command("build")(build.build)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    """Compress -> export -> bundle -> run on the device -> watch -> retrain -> roll out."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # third-party start-up chatter that says nothing about the user's work
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


@app.command("demo")
def demo(out: Path = typer.Option(Path("demo-out"), "--out", "--workdir",
                                  help="Folder for the report, summary and every file."),
         broker: str = typer.Option(None, "--broker", help="mqtt://HOST:PORT of your broker "
                                    "(load DIR/fleet/broker into it); default: a private "
                                    "mosquitto enforcing the generated ACLs."),
         task: str = typer.Option("classification", "--task",
                                   help="classification (digits) or detection (digit boxes)."),
         size: str = typer.Option("full", "--size", help="full, or small (the CI run)."),
         shift: str = typer.Option(None, "--shift", help="classification: invert (default), "
                                   "rotate or noise; detection: dim (default) or noise."),
         arch: str = typer.Option(None, "--arch", help="classification: small_cnn (default) "
                                  "or mobilenetv2; detection: digit_detector."),
         epochs: int = typer.Option(None, "--epochs", help="Baseline training epochs."),
         keep_running: bool = typer.Option(False, "--keep-running",
                                           help="Keep the fleet and dashboard up afterwards "
                                                "(Ctrl-C stops)."),
         ) -> None:
    """Run the whole loop: train, build, fleet, drift, retraining trigger, canary rollout
    (a digits classifier, or with --task detection a digit-boxes detector)."""
    from edgekit.demo import for_size, run_demo

    settings = for_size(size, task=task, out=out, broker=broker, shift=shift, arch=arch,
                        epochs=epochs, keep_running=keep_running)
    raise typer.Exit(run_demo(settings))


def main() -> None:
    """Entry point: run the app; library errors become one clear line and exit status 1."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        app()
    except EdgekitError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
