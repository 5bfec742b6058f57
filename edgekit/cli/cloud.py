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
DynsecOption = typer.Option(
    None, "--dynsec/--no-dynsec", help="Also change the broker live through Mosquitto's "
    "dynamic-security plugin (no reload). Default: broker_auth.dynsec.enabled in the config.")


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
               db: str = DbOption, config: Path = ConfigOption, live: bool = DynsecOption,
               as_json: bool = JsonFlag) -> None:
    """Register a device and print its new MQTT password (shown only once)."""
    from cloud_sync.registry import add_device, dynsec
    from cloud_sync.store import transaction

    with _store(db, config) as (cfg, engine), transaction(engine) as conn:
        creds = add_device(conn, device_id, fleet)
        session = dynsec.session_for(cfg, live)
        if session is not None:  # inside the transaction: a refusal leaves no device behind
            with session:
                dynsec.add_device(session, creds.device_id, creds.fleet, creds.password)
    if as_json:
        print_json({**creds.to_dict(), "broker_updated": session is not None})
        return
    step = ("It may connect now (created on the broker through dynamic security)."
            if session is not None else
            "Next: 'edgekit cloud broker-config --out DIR' and reload the broker.")
    console.print(f"device {creds.device_id} added to fleet {creds.fleet}\n"
                  f"  username: {creds.username}\n  password: {creds.password}\n"
                  f"The password is shown only once. {step}", highlight=False)


@device_app.command("remove")
def device_remove(device_id: str = typer.Argument(..., help="Device id."),
                  db: str = DbOption, config: Path = ConfigOption, live: bool = DynsecOption,
                  as_json: bool = JsonFlag) -> None:
    """Remove a device and its credentials (rewrite the broker files afterwards, unless
    dynamic security removes it from the broker live)."""
    from cloud_sync.registry import dynsec, remove_device
    from cloud_sync.store import transaction

    with _store(db, config) as (cfg, engine), transaction(engine) as conn:
        device = remove_device(conn, device_id)
        session = dynsec.session_for(cfg, live)
        if session is not None:
            with session:
                dynsec.remove_device(session, device.id)
    if as_json:
        print_json({"removed": device.id, "fleet": device.fleet,
                    "broker_updated": session is not None})
        return
    step = ("Removed from the broker too (dynamic security): it is disconnected."
            if session is not None else
            "Next: 'edgekit cloud broker-config --out DIR' and reload the broker.")
    console.print(f"device {device.id} removed (fleet {device.fleet}). {step}",
                  highlight=False)


@app.command("dynsec-sync")
def dynsec_sync(db: str = DbOption, config: Path = ConfigOption,
                as_json: bool = JsonFlag) -> None:
    """Create or repair every registered device's client and role in Mosquitto's
    dynamic-security plugin (e.g. when switching over from passwd/acl files)."""
    import os

    from cloud_sync.errors import RegistryError
    from cloud_sync.registry import dynsec, ensure_service_account, read_service_password
    from cloud_sync.registry.broker import device_logins
    from cloud_sync.store import transaction

    with _store(db, config) as (cfg, engine), transaction(engine) as conn:
        account = ensure_service_account(conn, cfg.service_user, cfg.service_password_file)
        try:
            password = read_service_password(account.password_file, dict(os.environ))
        except RegistryError:  # not on this host: the service user is reported as needing one
            password = None
        rows = [(d, f) for d, f, _h in device_logins(conn)]
        with dynsec.DynsecSession(cfg.broker_auth.dynsec, cfg.broker) as session:
            report = dynsec.sync(session, rows, account.username, password)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(f"dynamic security: {report.roles} role(s) written, {len(report.created)} "
                  f"client(s) created, {len(report.repaired)} repaired.", highlight=False)
    if report.needs_password:
        console.print(f"{len(report.needs_password)} device(s) have no broker password yet "
                      "(the registry keeps only hashes); give each a new one with "
                      "'edgekit cloud device remove ID' then 'device add ID --fleet F --dynsec': "
                      + ", ".join(report.needs_password), highlight=False)


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

