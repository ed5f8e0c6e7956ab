"""deploy/'s NATS users are what hub_common.nats_permissions renders now, and nats-server
takes them: each service signs in with its own password and is refused what is not its own.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
import yaml
from nats.aio.client import Client
from typer.testing import CliRunner

from hub_cli import nats_users
from hub_cli.main import app
from hub_common import nats_permissions
from hub_common.bus import inbox_prefix
from hub_common.local_nats import LocalNatsServer, find_nats_server

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
AUTHORIZATION = DEPLOY / "nats" / "authorization.conf"
CLUSTER_CONF = DEPLOY / "nats" / "nats-cluster.conf"
CHART_VALUES = DEPLOY / "kubernetes" / "nats" / "values.yaml"
REGENERATE = "the NATS permissions changed: run `make nats-permissions` and commit what it rewrites"


def test_the_authorization_file_is_what_the_command_prints() -> None:
    result = CliRunner().invoke(app, ["nats-permissions"])

    assert result.exit_code == 0, result.output
    assert result.output == nats_users.authorization_file()
    assert AUTHORIZATION.read_text() == result.output, f"deploy/nats/authorization.conf is stale: {REGENERATE}"


def test_the_chart_values_hold_the_users_the_permissions_render() -> None:
    text = CHART_VALUES.read_text()
    users = yaml.safe_load(text)["config"]["merge"]["authorization"]["users"]

    assert users == nats_users.chart_users(), f"deploy/kubernetes/nats/values.yaml's users are stale: {REGENERATE}"
    assert users == nats_permissions.authorization_users(
        {user: f"<< ${nats_permissions.password_variable(user)} >>" for user in nats_permissions.USERS}
    )
    # Written as the command writes them, so regenerating changes nothing else.
    assert nats_users.with_chart_users(text) == text, REGENERATE


def test_the_command_rewrites_only_the_users_of_the_chart_values(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    stale = CHART_VALUES.read_text().replace("- $JS.API.INFO\n", "- $JS.API.>\n")
    values.write_text(stale)

    result = CliRunner().invoke(app, ["nats-permissions", "--chart-values", str(values)])

    assert result.exit_code == 0, result.output
    assert values.read_text() == CHART_VALUES.read_text()


def test_chart_values_without_the_markers_are_refused(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("config:\n  merge: {}\n")

    result = CliRunner().invoke(app, ["nats-permissions", "--chart-values", str(values)])

    assert result.exit_code == 2
    assert "the values need the lines" in result.output
    assert values.read_text() == "config:\n  merge: {}\n"


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A password per user in nats-server's environment, as the chart and nats-cluster.conf give them."""
    chosen = {user: secrets.token_hex(16) for user in nats_permissions.USERS}
    for user, variable in nats_users.password_variables().items():
        monkeypatch.setenv(variable, chosen[user])
    return chosen


def test_every_node_of_the_cluster_configuration_needs_every_password(
    passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [find_nats_server(), "-t", "-c", str(CLUSTER_CONF)], capture_output=True, text=True, timeout=30, check=False
        )

    monkeypatch.setenv("NATS_SERVER_NAME", "nats-1")
    accepted = check()
    assert accepted.returncode == 0, accepted.stderr
    monkeypatch.delenv(nats_permissions.password_variable(nats_permissions.GATEWAY))
    refused = check()
    assert refused.returncode != 0
    assert "authorization.conf" in refused.stderr
    assert "HUB_NATS_PASSWORD_GATEWAY" in refused.stderr


@asynccontextmanager
async def signed_in(url: str, user: str, password: str, errors: list[str]) -> AsyncIterator[Client]:
    async def record(error: Exception) -> None:
        errors.append(str(error))

    client = await nats.connect(
        url,
        user=user,
        password=password,
        inbox_prefix=inbox_prefix(user),
        error_cb=record,
        allow_reconnect=False,
        connect_timeout=5,
    )
    try:
        yield client
    finally:
        await client.close()


async def test_nats_server_signs_each_user_in_and_fences_the_services(
    tmp_path: Path, passwords: dict[str, str]
) -> None:
    firm = "5f0c6a52-4b8e-4a3c-9d1e-2f7a8b9c0d1e"
    with LocalNatsServer(tmp_path / "nats", config=AUTHORIZATION.read_text()) as server:
        errors: list[str] = []
        async with (
            signed_in(server.url, nats_permissions.OPERATOR, passwords["operator"], errors) as operator,
            signed_in(server.url, nats_permissions.FETCHER, passwords["fetcher"], errors) as fetcher,
        ):
            await fetcher.publish(f"hub.{firm}.refresh.failed", b"its own event")
            await fetcher.publish("cmd.registry.add_client", b"a registry command")
            await fetcher.publish(f"hub.{firm}.client.added", b"the registry's event")
            await fetcher.subscribe(f"{inbox_prefix(nats_permissions.GATEWAY)}.>")
            # The operator may publish anything (nothing is reported to it).
            await operator.publish("cmd.registry.add_client", b"an operator's command")
            await fetcher.flush()
            await operator.flush()
            await asyncio.sleep(0.2)  # the error callbacks run as tasks
        violations = "\n".join(errors).lower()
        # Only its own event went through, and the operator was refused nothing.
        assert f"hub.{firm}.refresh.failed" not in violations
        assert len(errors) == 3, errors
        assert 'permissions violation for publish to "cmd.registry.add_client"' in violations
        assert f'permissions violation for publish to "hub.{firm}.client.added"' in violations
        assert 'permissions violation for subscription to "_inbox.gateway.>"' in violations

        # Another user's password, and no sign-in at all, are refused.
        for user, password in (("fetcher", passwords["registry"]), ("", "")):
            with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
                async with signed_in(server.url, user, password, []):
                    pass
