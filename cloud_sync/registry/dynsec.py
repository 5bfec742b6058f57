"""Live broker credentials through Mosquitto's dynamic-security plugin: no file, no reload.

``cloud device add`` creates the device's broker client (its username, the new
password) with a role of its own that grants exactly what ``topic_rules`` grants (the
same rules the ACL file renders); ``cloud device remove`` deletes both, and the plugin
disconnects a connected client of a deleted user at once. Commands are JSON published
to ``$CONTROL/dynamic-security/v1`` by the plugin's admin user (MQTT v5); each carries
a ``correlationData`` and the answer on ``.../response`` is awaited.

The plugin's ``createClient``/``setClientPassword`` take only a plain password, and the
registry keeps only hashes, so ``sync`` (the first switch-over) can create and repair
roles and clients but not passwords: it returns which users it created without one
(re-add such a device: ``device remove`` then ``device add``). The cloud's service user
is the exception: its password is on this host (``mqtt-service.password``). Repairing
an existing client (``modifyClient``) makes the plugin disconnect it once; it reconnects.

Passwords are sent only inside the command payload; never logged, never in an error.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud_sync.broker_settings import Dynsec
from cloud_sync.errors import CloudError
from cloud_sync.registry.topic_rules import (
    READ,
    SHARED_PREFIX,
    WRITE,
    Rule,
    device_rules,
    service_rules,
)
from edge_agent.broker_config import BrokerConfig
from edge_agent.errors import ConfigError, first_line

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
BATCH = 100  # commands per message (a sync of a big fleet is many messages)
ACL_TYPES = {WRITE: ("publishClientSend",), READ: ("subscribePattern", "publishClientReceive")}
ROLE_EXISTS, CLIENT_EXISTS = "Role already exists", "Client already exists"
NOT_FOUND = ("Client not found", "Role not found")

log = logging.getLogger(__name__)


class DynsecError(CloudError):
    """The dynamic-security plugin refused a command, or could not be reached."""


@dataclass(frozen=True)
class SyncReport:
    """What ``sync`` did: roles written, clients created or repaired, and the users that
    exist on the broker without a password (they cannot log in until given one)."""

    roles: int
    created: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    needs_password: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {"roles": self.roles, "created": self.created, "repaired": self.repaired,
                "needs_password": self.needs_password}


# ---- commands (pure: JSON-ready dicts) -------------------------------------------------

def device_role(settings: Dynsec, device_id: str) -> str:
    """The role name of one device."""
    return f"{settings.role_prefix}device-{device_id}"


def service_role(settings: Dynsec) -> str:
    """The role name of the cloud's service user."""
    return f"{settings.role_prefix}service"


def role_acls(rules: Iterable[Rule], shared: bool = False) -> list[dict[str, Any]]:
    """Dynsec ACL entries granting exactly ``rules``: write is publishClientSend, read is
    subscribePattern plus publishClientReceive; ``shared`` also grants each read filter as
    a shared subscription (``$share/<any group>/...``: the plugin checks the whole filter)."""
    acls = [{"acltype": acltype, "topic": rule.topic, "allow": True}
            for rule in rules for acltype in ACL_TYPES[rule.access]]
    if shared:
        acls += [{"acltype": "subscribePattern", "topic": f"{SHARED_PREFIX}+/{rule.topic}",
                  "allow": True} for rule in rules if rule.access == READ]
    return acls


def create_role(name: str, rules: Iterable[Rule], shared: bool = False) -> dict[str, Any]:
    return {"command": "createRole", "rolename": name, "acls": role_acls(rules, shared)}


def modify_role(name: str, rules: Iterable[Rule], shared: bool = False) -> dict[str, Any]:
    return {"command": "modifyRole", "rolename": name, "acls": role_acls(rules, shared)}


def create_client(username: str, role: str, password: str | None = None) -> dict[str, Any]:
    command = {"command": "createClient", "username": username,
               "roles": [{"rolename": role, "priority": -1}]}
    if password is not None:
        command["password"] = password
    return command


def modify_client(username: str, role: str, password: str | None = None) -> dict[str, Any]:
    command = create_client(username, role, password)
    command["command"] = "modifyClient"
    return command


def delete_client(username: str) -> dict[str, Any]:
    return {"command": "deleteClient", "username": username}


def delete_role(name: str) -> dict[str, Any]:
    return {"command": "deleteRole", "rolename": name}


def list_clients() -> dict[str, Any]:
    return {"command": "listClients", "verbose": False, "count": -1, "offset": 0}


def describe(command: dict[str, Any]) -> str:
    """``createClient pi-1``: what a command does, for errors (never its password)."""
    return f"{command['command']} {command.get('username') or command.get('rolename') or ''}"\
        .strip()


# ---- the admin connection --------------------------------------------------------------

class DynsecSession:
    """An MQTT v5 connection as the plugin's admin user; ``run`` sends commands and returns
    the plugin's answers in order. Use as a context manager."""

    def __init__(self, settings: Dynsec, broker_url: str | None) -> None:
        url = settings.broker or broker_url
        if not url:
            raise ConfigError("no broker for dynamic security: set 'broker' (or "
                              "broker_auth.dynsec.broker) in the cloud config, or --broker")
        self.settings = settings
        self.broker = BrokerConfig.from_url(url, tls_ca=str(settings.tls_ca)
                                            if settings.tls_ca else None)
        self.where = f"{self.broker.host}:{self.broker.port}"
        self._client: Any = None
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        self._pending: set[str] = set()  # our correlationData (other admins share the topic)
        self._arrived = threading.Condition(self._lock)
        self._connack: Any = None
        self._suback: Any = None

    def __enter__(self) -> DynsecSession:
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Log in as the admin and subscribe to the response topic; DynsecError if refused."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        password = self.settings.admin_password()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edgekit-dynsec-"
                             f"{uuid.uuid4().hex[:12]}", protocol=mqtt.MQTTv5)
        client.username_pw_set(self.settings.admin_user, password)
        context = self.broker.ssl_context()
        if context is not None:
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            raise DynsecError(f"cannot reach the broker at {self.where} ({first_line(exc)}); "
                              "check broker_auth.dynsec.broker or the cloud's broker") from None
        client.loop_start()
        self._wait(lambda: self._connack is not None, "no CONNACK")
        if getattr(self._connack, "is_failure", False):
            self.close()
            raise DynsecError(f"the broker at {self.where} refused the dynsec admin "
                              f"'{self.settings.admin_user}' ({self._connack}); check "
                              "broker_auth.dynsec.admin_user and its password")
        client.subscribe(RESPONSE_TOPIC, qos=1)
        self._wait(lambda: self._suback is not None, "no SUBACK")
        if any(getattr(rc, "is_failure", False) for rc in self._suback):
            self.close()
            raise DynsecError(f"the broker at {self.where} refused '{self.settings.admin_user}'"
                              f" a subscription to {RESPONSE_TOPIC}; give it the dynsec admin "
                              "role (mosquitto_ctrl dynsec init makes one)")

    def close(self) -> None:
        """Disconnect and stop paho's thread."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def run(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` (in batches) and return each one's answer (``error`` set when the
        plugin refused it), in order."""
        answers: list[dict[str, Any]] = []
        for start in range(0, len(commands), BATCH):
            answers += self._run_batch(commands[start:start + BATCH])
        return answers

    def check(self, commands: Sequence[dict[str, Any]], ok_errors: tuple[str, ...] = ()
              ) -> list[dict[str, Any]]:
        """``run``, then DynsecError for the first answer whose error is not in ``ok_errors``."""
        answers = self.run(commands)
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and error not in ok_errors:
                raise DynsecError(f"dynamic security refused {describe(command)} on "
                                  f"{self.where}: {first_line(Exception(str(error)), 200)}; "
                                  f"{_fix_for(str(error))}")
        return answers

    def _run_batch(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        tags = [uuid.uuid4().hex for _ in commands]
        with self._lock:
            self._pending.update(tags)
        payload = json.dumps({"commands": [{**c, "correlationData": t}
                                           for c, t in zip(commands, tags, strict=True)]})
        info = self._client.publish(CONTROL_TOPIC, payload, qos=1)
        del payload  # it holds passwords: keep it no longer than needed
        if info.rc != 0:
            raise DynsecError(f"could not send to {CONTROL_TOPIC} on {self.where} (paho error "
                              f"{info.rc}); retry")
        self._wait(lambda: all(t in self._answers for t in tags),
                   f"no answer on {RESPONSE_TOPIC}")
        with self._lock:
            self._pending.difference_update(tags)
            return [self._answers.pop(t) for t in tags]

    def _wait(self, done: Any, what: str) -> None:
        timeout = self.settings.timeout_s
        with self._arrived:
            if not self._arrived.wait_for(done, timeout):
                raise DynsecError(
                    f"{what} from the broker at {self.where} within {timeout:g} s; is the "
                    "dynamic-security plugin loaded there and may "
                    f"'{self.settings.admin_user}' publish to {CONTROL_TOPIC}?")

    def _on_connect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        with self._arrived:
            self._connack = reason_code
            self._arrived.notify_all()

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props) -> None:
        with self._arrived:
            self._suback = list(reason_codes)
            self._arrived.notify_all()

    def _on_message(self, _client, _userdata, message) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("dynsec: an answer on %s that is not JSON with 'responses'",
                        RESPONSE_TOPIC)
            return
        with self._arrived:
            for answer in responses if isinstance(responses, list) else ():
                tag = str(answer.get("correlationData")) if isinstance(answer, dict) else ""
                if tag in self._pending:
                    self._answers[tag] = answer
            self._arrived.notify_all()


def _fix_for(error: str) -> str:
    return FIXES.get(error, "see the broker's log; 'edgekit cloud dynsec-sync' repairs the "
                     "roles and clients of every registered device")


FIXES = {
    CLIENT_EXISTS: "remove the stale client first (mosquitto_ctrl dynsec deleteClient USER)",
    "Role not found": "run 'edgekit cloud dynsec-sync' to create the roles",
    "Unknown command": "the broker's dynamic-security plugin is too old; use Mosquitto 2.0+",
}


# ---- what the CLI calls ----------------------------------------------------------------

def ensure_role(session: DynsecSession, name: str, rules: Iterable[Rule],
                shared: bool = False) -> None:
    """Create the role, or give an existing one exactly these ACLs."""
    rules = tuple(rules)
    answer = session.check([create_role(name, rules, shared)], ok_errors=(ROLE_EXISTS,))[0]
    if answer.get("error") == ROLE_EXISTS:
        session.check([modify_role(name, rules, shared)])


def add_device(session: DynsecSession, device_id: str, fleet: str, password: str) -> None:
    """The device's role and client with its new password (an existing client of that name
    gets the new password and role)."""
    role = device_role(session.settings, device_id)
    ensure_role(session, role, device_rules(device_id, fleet))
    answer = session.check([create_client(device_id, role, password)],
                           ok_errors=(CLIENT_EXISTS,))[0]
    if answer.get("error") == CLIENT_EXISTS:
        session.check([modify_client(device_id, role, password)])


def remove_device(session: DynsecSession, device_id: str) -> None:
    """Delete the device's client (which disconnects it) and its role; absent ones are fine."""
    session.check([delete_client(device_id), delete_role(device_role(session.settings,
                                                                      device_id))],
                  ok_errors=NOT_FOUND)


def existing_clients(session: DynsecSession) -> set[str]:
    """Usernames the plugin knows."""
    answer = session.check([list_clients()])[0]
    return {c if isinstance(c, str) else c.get("username", "")
            for c in answer.get("data", {}).get("clients", [])}


def sync(session: DynsecSession, device_rows: Iterable[tuple[str, str]], service_user: str,
         service_password: str | None) -> SyncReport:
    """Make every registered device (``(device_id, fleet)``) and the service user exist with
    their role; only the service user's password can be set (the registry has hashes)."""
    known = existing_clients(session)
    users = [(d, device_role(session.settings, d), device_rules(d, f), None)
             for d, f in sorted(device_rows)]
    users.append((service_user, service_role(session.settings), service_rules(),
                  service_password))
    report = SyncReport(roles=len(users))
    for username, role, rules, password in users:
        ensure_role(session, role, rules, shared=username == service_user)  # ingest shares
        if username in known:
            session.check([modify_client(username, role, password)])
            report.repaired.append(username)
        else:
            session.check([create_client(username, role, password)])
            report.created.append(username)
        if password is None and username not in known:
            report.needs_password.append(username)
    return report


def session_for(cfg: Any, enabled: bool | None = None) -> DynsecSession | None:
    """A session for the cloud config ``cfg`` when dynamic security is on (``enabled``, else
    ``broker_auth.dynsec.enabled``), else None; not connected yet."""
    settings: Dynsec = cfg.broker_auth.dynsec
    on = settings.enabled if enabled is None else enabled
    return DynsecSession(settings, cfg.broker) if on else None
