"""A systemd unit for the agent: restarts it, runs it unprivileged, logs to the journal."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

UNIT_NAME = "edgekit-agent.service"


def unit_text(config_path: Path, state_dir: str, user: str = "edgekit",
              executable: str | None = None) -> str:
    """The unit file that runs ``edgekit agent run --config CONFIG``."""
    exe = executable or str(Path(sys.executable).with_name("edgekit"))
    command = " ".join(shlex.quote(p) for p in (exe, "agent", "run", "--config",
                                                str(Path(config_path).resolve())))
    return f"""[Unit]
Description=edgekit edge agent
Documentation=https://github.com/edgekit/edgekit
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
User={user}
Group={user}
ExecStart={command}
Restart=always
RestartSec=3
StandardOutput=journal
StandardError=journal
SyslogIdentifier=edgekit-agent
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ReadWritePaths={state_dir}
# The agent fsyncs its outbox and model slots; give it time to stop cleanly.
TimeoutStopSec=20

[Install]
WantedBy=multi-user.target
"""


def install_unit(text: str, unit_dir: Path) -> Path:
    """Write the unit into ``unit_dir``; the caller then runs systemctl daemon-reload/enable."""
    from edge_agent.bundle.archive import atomic_write

    path = Path(unit_dir) / UNIT_NAME
    atomic_write(path, text.encode(), 0o644)
    return path
