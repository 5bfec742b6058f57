"""``edgekit keys``: signing keys for bundles."""

from __future__ import annotations

from pathlib import Path

import typer

from edge_agent.bundle import generate_keypair, key_id, load_public_key
from edgekit.cli.output import console

app = typer.Typer(help="Ed25519 keys that sign bundles (private) and verify them (public).",
                  no_args_is_help=True)


@app.command("generate")
def generate(out: Path = typer.Option(..., "--out", help="Folder to write the key pair into.")
             ) -> None:
    """Write a new private key (mode 0600) and public key; never overwrites."""
    private, public = generate_keypair(out)
    console.print(f"private key: {private} (keep it secret, mode 0600)")
    console.print(f"public key:  {public} (key id {key_id(load_public_key(public))}; "
                  "give it to devices with --pubkey)")
