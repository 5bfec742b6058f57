"""``edgekit cloud``: the cloud side. Thin: arguments -> CloudConfig -> cloud_sync.

The cloud stack (SQLAlchemy, Alembic, psycopg) is imported inside the commands, so
``edgekit agent ...`` never loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from edgekit.cli import cloud_publish, cloud_serve, cloud_triggers
from edgekit.cli.options import JsonFlag
from edgekit.cli.output import console, local_time, people_table, print_json

app = typer.Typer(help="The cloud side: device registry, broker credentials, store.",
                  no_args_is_help=True)
device_app = typer.Typer(help="Devices and their MQTT credentials.", no_args_is_help=True)
app.add_typer(device_app, name="device")
app.command("publish")(cloud_publish.publish)
app.command("serve")(cloud_serve.serve)
app.add_typer(cloud_triggers.triggers_app, name="triggers")
app.add_typer(cloud_triggers.samples_app, name="samples")

DbOption = typer.Option(
    None, "--db", help="Database URL: sqlite:///FILE or postgresql://USER@HOST/DB. Default: "
    "SQLite edgekit.db in $EDGEKIT_CLOUD_DIR, else ~/.local/share/edgekit/cloud.")
ConfigOption = typer.Option(None, "--config", help="JSON or YAML file with cloud settings.")


@contextmanager
def _store(db: str | None, config: Path | None) -> Iterator[tuple]:
    """(config, engine) for a command: the store reachable and migrated; disposed after."""
    from cloud_sync.config import CloudConfig
    from cloud_sync.store import open_store

    cfg = CloudConfig.load(config, db=db)
    engine = open_store(cfg.db_url)
    try:
        yield cfg, engine
    finally:
        engine.dispose()


@device_app.command("add")
def device_add(device_id: str = typer.Argument(..., help="Device id (also its MQTT username)."),
               fleet: str = typer.Option(..., "--fleet", help="The device's fleet."),
               db: str = DbOption, config: Path = ConfigOption,
               as_json: bool = JsonFlag) -> None:
    """Register a device and print its new MQTT password (shown only once)."""
    from cloud_sync.registry import add_device
    from cloud_sync.store import transaction

    with _store(db, config) as (_cfg, engine), transaction(engine) as conn:
        creds = add_device(conn, device_id, fleet)
    if as_json:
        print_json(creds.to_dict())
        return
    console.print(f"device {creds.device_id} added to fleet {creds.fleet}\n"
                  f"  username: {creds.username}\n  password: {creds.password}\n"
                  "The password is shown only once. Next: 'edgekit cloud broker-config --out DIR' "
                  "and reload the broker.", highlight=False)


@device_app.command("remove")
def device_remove(device_id: str = typer.Argument(..., help="Device id."),
                  db: str = DbOption, config: Path = ConfigOption,
                  as_json: bool = JsonFlag) -> None:
    """Remove a device and its credentials (rewrite the broker files afterwards)."""
    from cloud_sync.registry import remove_device
    from cloud_sync.store import transaction

    with _store(db, config) as (_cfg, engine), transaction(engine) as conn:
        device = remove_device(conn, device_id)
    if as_json:
        print_json({"removed": device.id, "fleet": device.fleet})
        return
    console.print(f"device {device.id} removed (fleet {device.fleet}). Next: "
                  "'edgekit cloud broker-config --out DIR' and reload the broker.",
                  highlight=False)


@device_app.command("list")
def device_list(fleet: str = typer.Option(None, "--fleet", help="Only this fleet."),
                db: str = DbOption, config: Path = ConfigOption,
                as_json: bool = JsonFlag) -> None:
    """List the registered devices."""
    from cloud_sync.registry import list_devices

    with _store(db, config) as (_cfg, engine), engine.connect() as conn:
        found = list_devices(conn, fleet)
    if as_json:
        print_json([d.to_dict() for d in found])
        return
    _device_table(found)


def _device_table(found: list) -> None:
    table = people_table("device", "fleet", "state", "model", "profile", "last seen",
                         "added by", "login", keep=("device",))
    for d in found:
        model = f"{d.model_name} {d.model_version}" if d.model_name else "-"
        table.add_row(d.id, d.fleet, d.state, model, d.profile or "-", local_time(d.last_seen),
                      d.registered_by, "yes" if d.has_credentials else "no")
    console.print(table if found else "no devices registered")


@app.command("broker-config")
def broker_config(out: Path = typer.Option(..., "--out", help="Folder for passwd, acl and "
                                           "mosquitto.conf."),
                  listener: str = typer.Option("1883", "--listener", help="The snippet's "
                                               "listener line: PORT [BIND-ADDRESS]."),
                  rotate: bool = typer.Option(False, "--rotate-service-password",
                                              help="Give the cloud's own user a new password."),
                  db: str = DbOption, config: Path = ConfigOption,
                  as_json: bool = JsonFlag) -> None:
    """Write Mosquitto's password file, ACL file and a config snippet from the registry."""
    from cloud_sync.registry import ensure_service_account, write_broker_config
    from cloud_sync.store import transaction

    with _store(db, config) as (cfg, engine), transaction(engine) as conn:
        account = ensure_service_account(conn, cfg.service_user, cfg.service_password_file,
                                         rotate=rotate)
        files = write_broker_config(conn, out, listener=listener)
    doc = {"passwd": str(files.passwd), "acl": str(files.acl), "conf": str(files.conf),
           "devices": files.devices, "service_user": account.username,
           "service_password_file": str(account.password_file),
           "service_password_created": account.created}
    if as_json:
        print_json(doc)
        return
    made = " (new)" if account.created else ""
    console.print(f"wrote {files.passwd}, {files.acl}, {files.conf} for {files.devices} "
                  f"device(s) and the cloud user {account.username}{made} (password in "
                  f"{account.password_file}). Reload the broker: kill -HUP <mosquitto pid> "
                  f"or systemctl reload mosquitto.", highlight=False)

