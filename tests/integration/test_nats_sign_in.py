"""Signing in to a NATS server that refuses anonymous clients (HUB_NATS_* settings).

The broker is the real nats-server with an ``authorization`` block: a user with a password
and a user known by its nkey. It refuses a connection that gives no credentials, and takes
the services and the `hub` tools that are given theirs through the settings, each secret in
a file as a Kubernetes Secret volume mounts it (ending with a newline).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import nkeys
import pytest

from hub_common.bus import NatsSignInRefused, connect
from hub_common.local_nats import LocalNatsServer, free_port
from hub_common.settings import HubSettings
from hub_common.streams import FETCHER_CONSUMER
from tests.conftest import declare_as_the_registry
from tests.support.processes import ServiceProcess, hub_environment, start_service, wait_until_healthy

HUB_USER = "hub"
PASSWORD = secrets.token_urlsafe(24)


def new_user_seed() -> bytes:
    seed: bytes = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed


def authorization_config(user_public_key: str) -> str:
    return f"""
authorization {{
  users: [
    {{user: "{HUB_USER}", password: "{PASSWORD}"}}
    {{nkey: "{user_public_key}"}}
  ]
}}
"""


@pytest.fixture(scope="module")
def user_seed() -> bytes:
    return new_user_seed()


@pytest.fixture(scope="module")
def guarded_nats(tmp_path_factory: pytest.TempPathFactory, user_seed: bytes) -> Iterator[LocalNatsServer]:
    public_key = nkeys.from_seed(bytearray(user_seed)).public_key.decode()
    with LocalNatsServer(tmp_path_factory.mktemp("guarded-nats"), config=authorization_config(public_key)) as server:
        declare_as_the_registry(server.url, user=HUB_USER, password=PASSWORD)
        yield server


@pytest.fixture
def secret_files(tmp_path: Path, user_seed: bytes) -> dict[str, Path]:
    """The files a Secret volume would hold, each ending with a newline as `kubectl create secret --from-file` keeps."""
    files = {"password": tmp_path / "password", "nkey-seed": tmp_path / "nkey-seed"}
    files["password"].write_text(PASSWORD + "\n")
    files["nkey-seed"].write_text(user_seed.decode() + "\n")
    for path in files.values():
        path.chmod(0o400)
    return files


def readiness_of(service: ServiceProcess, port: int) -> None:
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/readyz", service, timeout=60)
    finally:
        service.stop()


async def test_an_anonymous_connection_is_refused(guarded_nats: LocalNatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(guarded_nats.url, allow_reconnect=False, connect_timeout=2)


async def test_a_wrong_password_is_refused(guarded_nats: LocalNatsServer, tmp_path: Path) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    settings = HubSettings(nats_user=HUB_USER, nats_password_file=wrong)
    # A tool's connection says so at once (nats-py would try again forever, and the tool wait
    # without a word).
    with pytest.raises(NatsSignInRefused, match="refused the sign-in"):
        await asyncio.wait_for(connect(guarded_nats.url, name="wrong-password", settings=settings), timeout=10)


def test_invitations_signs_in_with_a_user_and_password_file(
    guarded_nats: LocalNatsServer, secret_files: dict[str, Path], tmp_path: Path
) -> None:
    port = free_port()
    service = start_service(
        "invitations",
        "invitations",
        {
            "HUB_NATS_URL": guarded_nats.url,
            "HUB_NATS_USER": HUB_USER,
            "HUB_NATS_PASSWORD_FILE": str(secret_files["password"]),
            "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'invitations.db'}",
            "HUB_SMTP_PORT": str(free_port()),
            "HUB_OPERATIONS_PORT": str(port),
        },
        tmp_path / "logs",
    )
    readiness_of(service, port)
    assert PASSWORD not in service.log()


def test_a_fetcher_signs_in_with_an_nkey_seed_file(
    guarded_nats: LocalNatsServer, secret_files: dict[str, Path], tmp_path: Path
) -> None:
    port = free_port()
    service = start_service(
        "fetcher",
        "fetcher",
        {
            "HUB_NATS_URL": guarded_nats.url,
            "HUB_NATS_NKEY_SEED_FILE": str(secret_files["nkey-seed"]),
            "HUB_OPERATIONS_PORT": str(port),
        },
        tmp_path / "logs",
    )
    readiness_of(service, port)


def test_a_service_without_credentials_is_refused(guarded_nats: LocalNatsServer, tmp_path: Path) -> None:
    service = start_service("fetcher", "fetcher", {"HUB_NATS_URL": guarded_nats.url}, tmp_path / "logs")
    assert service.process.wait(timeout=60) != 0
    assert "Authorization Violation" in service.log()


@pytest.mark.parametrize("service", ["fetcher", "invitations", "gateway", "registry"])
def test_an_unreadable_secret_file_stops_the_service_naming_the_setting(service: str, tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted" / "password"
    process = start_service(
        service,
        service,
        {
            "HUB_NATS_USER": HUB_USER,
            "HUB_NATS_PASSWORD_FILE": str(missing),
            "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        },
        tmp_path / "logs",
    )
    assert process.process.wait(timeout=60) == 2
    assert f"HUB_NATS_PASSWORD_FILE={missing} cannot be read" in process.log()
    assert "Traceback" not in process.log()


def hub_tool(arguments: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub_cli", *arguments],
        env=hub_environment(environment),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_hub_tools_sign_in_with_the_same_settings(
    guarded_nats: LocalNatsServer, secret_files: dict[str, Path]
) -> None:
    signed_in = hub_tool(
        ["dead-letters"],
        {
            "HUB_NATS_URL": guarded_nats.url,
            "HUB_NATS_USER": HUB_USER,
            "HUB_NATS_PASSWORD_FILE": str(secret_files["password"]),
        },
    )
    assert signed_in.returncode == 0, signed_in.stderr
    assert "dead-lettered message(s)" in signed_in.stdout

    anonymous = hub_tool(["dead-letters"], {"HUB_NATS_URL": guarded_nats.url})
    assert anonymous.returncode == 2
    assert "refused the sign-in" in anonymous.stderr and "HUB_NATS_USER=operator" in anonymous.stderr

    wrong_file = hub_tool(
        ["dead-letters"],
        {"HUB_NATS_URL": guarded_nats.url, "HUB_NATS_CREDENTIALS_FILE": str(secret_files["nkey-seed"])},
    )
    assert wrong_file.returncode == 2
    assert "HUB_NATS_CREDENTIALS_FILE" in wrong_file.stderr
    assert "is not a NATS .creds file" in wrong_file.stderr


def test_a_hub_tool_on_a_nats_without_the_hubs_streams_says_so(tmp_path: Path) -> None:
    with LocalNatsServer(tmp_path / "nats") as empty:
        for arguments in (["dead-letters"], ["audit"], ["rebuild", "--target", f"sqlite:///{tmp_path / 'rebuilt.db'}"]):
            answer = hub_tool(arguments, {"HUB_NATS_URL": empty.url})
            assert answer.returncode == 2, (arguments, answer.stderr)
            assert "this NATS holds no hub streams" in answer.stderr, answer.stderr
            assert "Traceback" not in answer.stderr


def test_the_operator_declares_the_topology_before_an_upgrade(tmp_path: Path) -> None:
    with LocalNatsServer(tmp_path / "nats") as empty:
        declared = hub_tool(["declare-topology"], {"HUB_NATS_URL": empty.url, "HUB_FETCHER_MAX_DELIVER": "3"})
        assert declared.returncode == 0, declared.stderr
        listed = hub_tool(["dead-letters"], {"HUB_NATS_URL": empty.url})
        assert listed.returncode == 0 and "0 dead-lettered message(s)" in listed.stdout, listed.stderr

        async def fetcher_deliveries() -> int:
            connection = await nats.connect(empty.url)
            try:
                info = await connection.jetstream().consumer_info(FETCHER_CONSUMER.stream, FETCHER_CONSUMER.durable)
                return int(info.config.max_deliver or 0)
            finally:
                await connection.close()

        # One more on the server than the handlers use: the last comes back to be dead-lettered.
        assert asyncio.run(fetcher_deliveries()) == 3 + 1


def test_a_password_in_the_url_is_never_logged(tmp_path: Path, user_seed: bytes) -> None:
    """A real service whose HUB_NATS_URL carries a password loses its broker and gets it
    back: both log lines name the server without the password (read from the process's
    own log, as an operator would; structlog's capture would miss loggers cached earlier)."""
    public_key = nkeys.from_seed(bytearray(user_seed)).public_key.decode()
    server = LocalNatsServer(tmp_path / "nats", port=free_port(), config=authorization_config(public_key)).start()
    declare_as_the_registry(server.url, user=HUB_USER, password=PASSWORD)
    port = free_port()
    service = start_service(
        "invitations",
        "invitations",
        {
            "HUB_NATS_URL": f"nats://{HUB_USER}:{PASSWORD}@127.0.0.1:{server.port}",
            "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'invitations.db'}",
            "HUB_SMTP_PORT": str(free_port()),
            "HUB_OPERATIONS_PORT": str(port),
        },
        tmp_path / "logs",
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/readyz", service, timeout=60)
        server.stop()
        wait_for_log(service, "nats disconnected")
        server.start()
        wait_for_log(service, "nats reconnected")
    finally:
        service.stop()
        server.stop()
    log = service.log()
    assert f"nats://***@127.0.0.1:{server.port}" in log
    assert PASSWORD not in log


def wait_for_log(service: ServiceProcess, event: str) -> None:
    deadline = time.monotonic() + 30
    while event not in service.log():
        assert time.monotonic() < deadline, f"no {event!r} logged:\n{service.log()[-2000:]}"
        time.sleep(0.1)
