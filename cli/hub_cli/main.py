"""The `hub` command line."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    pretty_exceptions_show_locals=False,
    help="Accountant Hub: run one service alone, or the whole hub with `hub up`.",
    no_args_is_help=True,
    add_completion=False,
)


def _start_unless_insecure(start: Callable[[], None]) -> None:
    """A service or tool that refuses its settings says why in one line, not with a traceback."""
    from hub_common.settings import InsecureSettings

    try:
        start()
    except InsecureSettings as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


# JetStream's error code for "stream not found".
STREAM_NOT_FOUND = 10059


def _run_tool(run: Callable[[], None]) -> None:
    """A tool reading the hub's streams on a NATS that has none says so in one line."""
    import nats.js.errors

    try:
        _start_unless_insecure(run)
    except nats.js.errors.NotFoundError as error:
        if error.err_code != STREAM_NOT_FOUND:
            raise
        typer.echo(
            "error: this NATS holds no hub streams (HUB_NATS_URL): the registry declares them when it first starts",
            err=True,
        )
        raise typer.Exit(2) from None


@app.command()
def registry() -> None:
    """Run the registry (firms, accountants, clients)."""
    from hub_registry.app import run

    _start_unless_insecure(lambda: asyncio.run(run()))


@app.command()
def fetcher() -> None:
    """Run one fetcher worker; start as many as you like, they share the work."""
    from hub_fetcher.app import run

    _start_unless_insecure(lambda: asyncio.run(run()))


@app.command()
def invitations() -> None:
    """Run the invitations service."""
    from hub_invitations.app import run

    _start_unless_insecure(lambda: asyncio.run(run()))


@app.command("smtp-sink")
def smtp_sink() -> None:
    """Run the dev SMTP sink: keeps every message as JSON in HUB_SMTP_SINK_DIR (port HUB_SMTP_SINK_PORT)."""
    from hub_invitations.smtp_sink import run

    run()


@app.command()
def gateway() -> None:
    """Run the gateway: the dashboard and the JSON API."""
    from hub_gateway.app import run

    _start_unless_insecure(run)


@app.command()
def sandbox() -> None:
    """Run the sandbox that plays Microsoft Entra ID and Business Central."""
    from hub_sandbox.server import run
    from hub_sandbox.settings import SandboxSettings

    run(SandboxSettings())


@app.command()
def up(
    home: Annotated[Path, typer.Option(help="Where data, logs and the broker's store live.")] = Path(".hub"),
    fetchers: Annotated[int, typer.Option(min=1, max=32, help="Fetcher processes to run.")] = 2,
    port: Annotated[int, typer.Option(help="The gateway's port.")] = 8000,
    sandbox_port: Annotated[int, typer.Option(help="The sandbox's HTTPS port.")] = 8443,
    metrics: Annotated[
        bool, typer.Option(help="Serve each service's /metrics, /livez and /readyz on a free local port.")
    ] = True,
) -> None:
    """Start the whole hub: NATS, the sandbox and every service. Ctrl-C stops it all."""
    from hub_cli.supervisor import DEV_ACCOUNTANT, DevSecrets, Supervisor

    supervisor = Supervisor(
        home=home.resolve(), fetchers=fetchers, gateway_port=port, sandbox_port=sandbox_port, operations=metrics
    )

    def ready(secrets: DevSecrets) -> None:
        token = _dev_token(secrets.secret_key, DEV_ACCOUNTANT)
        try:
            _sign_in_dev_accountant(port, token)
        except OSError as error:
            raise RuntimeError(f"signing in the dev accountant failed: {error}") from error
        typer.echo(
            "\nAccountant Hub is running.\n"
            f"  Dashboard:  http://127.0.0.1:{port}/\n"
            f"  Sign in as: {DEV_ACCOUNTANT} (dev sign-in: type the address)\n"
            f"  API token:  {token}\n"
            f"  Try:        curl -H 'Authorization: Bearer <token>' http://127.0.0.1:{port}/api/v1/dashboard\n"
            f"  Sandbox:    https://127.0.0.1:{sandbox_port}/_sandbox/tenants\n"
            "  New client: Manage Clients → New, then open the card's Connect link and sign in\n"
            "              as admin@<the tenant's domain> to play the client allowing your firm\n"
            f"  NATS:       {supervisor.nats.url if supervisor.nats else '-'} (the hub tools sign in as"
            f" HUB_NATS_USER=operator HUB_NATS_PASSWORD_FILE={home / 'nats-users' / 'operator'})\n"
            f"  Logs:       {home / 'logs'}\n"
            + "".join(f"  Metrics:    {name:<12} {url}\n" for name, url in supervisor.metrics_urls().items())
            + "Press Ctrl-C to stop."
        )

    raise typer.Exit(supervisor.run(ready))


def _dev_token(secret_key: str, email: str) -> str:
    from pydantic import SecretStr

    from hub_common.settings import HubSettings, Mode
    from hub_gateway.auth import issue_dev_token

    settings = HubSettings(mode=Mode.DEV, secret_key=SecretStr(secret_key))
    return issue_dev_token(settings, email)


def _sign_in_dev_accountant(port: int, token: str) -> None:
    """The first request as the dev accountant creates its firm and sample client."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/dashboard", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


@app.command("derive-keys")
def derive_keys() -> None:
    """Print, from HUB_SECRET_KEY, the one-purpose keys of the services that need no more:
    HUB_NOTIFICATION_KEY (fetcher), HUB_WEBHOOK_SEALING_KEY (registry) and
    HUB_INVITATION_LINK_KEY (invitations), as environment lines (deploy/README.md, Secrets)."""
    from hub_common import purpose_keys
    from hub_common.settings import HubSettings, Mode

    def derive() -> None:
        # Keys from the public dev key would be no secrets, whatever HUB_MODE says.
        settings = HubSettings().model_copy(update={"mode": Mode.PRODUCTION})
        settings.require_secret_key()
        for purpose in purpose_keys.Purpose:
            key = purpose_keys.derive(settings.secret_key.get_secret_value(), purpose)
            typer.echo(f"{purpose_keys.SETTING[purpose]}={purpose_keys.encode(key)}")

    _start_unless_insecure(derive)


@app.command("dev-token")
def dev_token(email: str) -> None:
    """Print a dev bearer token for EMAIL (accepted only when HUB_MODE=dev)."""
    from hub_common.settings import HubSettings
    from hub_gateway.auth import issue_dev_token

    settings = HubSettings()
    # Outside `hub up`, sign with the key `hub up` keeps, so the token works against it.
    secrets_file = Path(".hub/dev-secrets.json")
    if secrets_file.exists() and "HUB_SECRET_KEY" not in os.environ:
        from pydantic import SecretStr

        secret_key = json.loads(secrets_file.read_text())["secret_key"]
        settings = settings.model_copy(update={"secret_key": SecretStr(secret_key)})
    typer.echo(issue_dev_token(settings, email))


@app.command()
def audit(
    firm: Annotated[str | None, typer.Option(help="Only this firm (its id).")] = None,
    client: Annotated[str | None, typer.Option(help="Only events about this client (its id).")] = None,
    accountant: Annotated[str | None, typer.Option(help="Only what this accountant did or was (id).")] = None,
    event_type: Annotated[list[str] | None, typer.Option("--type", help="Only these event types.")] = None,
    since: Annotated[str | None, typer.Option(help="From: ISO date/time, or a duration back (90m, 2d).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to: ISO date/time, or a duration back.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines: every field of every event.")] = False,
    follow: Annotated[bool, typer.Option(help="Keep printing new events as they happen.")] = False,
) -> None:
    """List the history (the HUB_EVENTS audit log): who did what, when, for which firm."""
    import uuid as uuid_module

    from hub_cli.audit import run_audit
    from hub_common.history import HistoryIncomplete
    from hub_common.settings import HubSettings

    for name, value in (("--firm", firm), ("--client", client)):
        if value is not None:
            try:
                uuid_module.UUID(value)
            except ValueError:
                raise typer.BadParameter(f"{value!r} is not an id", param_hint=name) from None

    unreadable = 0

    def print_audit_log() -> None:
        nonlocal unreadable
        unreadable = run_audit(
            HubSettings().nats_url,
            firm=firm,
            client=client,
            accountant=accountant,
            types=event_type or [],
            since=since,
            until=until,
            as_json=as_json,
            follow=follow,
        )

    try:
        _run_tool(print_audit_log)
    except HistoryIncomplete as incomplete:
        typer.echo(f"error: the listing is incomplete: {incomplete}; run it again", err=True)
        raise typer.Exit(1) from None
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if unreadable:
        # Most likely events of a newer release (a field this one does not know): the
        # listing is not the whole history, and must not look whole.
        typer.echo(
            f"error: {unreadable} event(s) of the log could not be read by this release of hub (listed as "
            "unreadable, with why): an event of a newer release is read by the release the hub runs; a "
            "message no release reads is also in `hub dead-letters`",
            err=True,
        )
        raise typer.Exit(1)


@app.command("dead-letters")
def dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, with each message's payload.")] = False,
    firm: Annotated[str | None, typer.Option(help="Only those whose subject carried this firm (its id).")] = None,
) -> None:
    """List the messages no handler could take (invalid, or failed max_deliver times).

    Every one, including those whose subject names no firm, which only this command shows.
    """
    import asyncio as asyncio_module
    import uuid as uuid_module

    from hub_cli.audit import print_dead_letters, quiet_logging
    from hub_common.settings import HubSettings

    try:
        firm_id = uuid_module.UUID(firm) if firm is not None else None
    except ValueError:
        raise typer.BadParameter(f"{firm!r} is not an id", param_hint="--firm") from None
    quiet_logging()

    def list_dead_letters() -> None:
        asyncio_module.run(print_dead_letters(HubSettings().nats_url, as_json=as_json, firm_id=firm_id))

    _run_tool(list_dead_letters)


@app.command()
def rebuild(
    target: Annotated[
        str, typer.Option(help="An empty database to rebuild the read model into.", envvar="HUB_REBUILD_TARGET")
    ],
    live: Annotated[
        str | None, typer.Option(help="The live read model's database, to compare.", envvar="HUB_REBUILD_LIVE")
    ] = None,
) -> None:
    """Rebuild the gateway's read model from the streams, then compare it with the live one.

    The database URLs may come from the environment instead of the command line, where
    every user of the machine can read them (``ps``); a PostgreSQL URL may also leave its
    password out, which libpq then takes from PGPASSWORD or ~/.pgpass."""
    from hub_cli.rebuild import run as run_rebuild
    from hub_common.settings import HubSettings
    from hub_gateway.readmodel.rebuild import AuditLogTruncated, RebuildIncomplete, RebuildTargetNotEmpty

    def rebuild_and_compare() -> None:
        try:
            code = run_rebuild(nats_url=HubSettings().nats_url, target_database_url=target, live_database_url=live)
        except (RebuildTargetNotEmpty, AuditLogTruncated) as refused:
            typer.echo(f"error: {refused}", err=True)
            raise typer.Exit(2) from None
        except RebuildIncomplete as incomplete:
            typer.echo(f"error: the rebuild is incomplete: {incomplete}; drop the target and run it again", err=True)
            raise typer.Exit(1) from None
        raise typer.Exit(code)

    _run_tool(rebuild_and_compare)


@app.command("declare-topology")
def declare_topology_command() -> None:
    """Declare the streams, buckets and consumers as the registry does at its start.

    As the operator, with the new release's settings, before an upgrade whose release notes
    say a consumer changed: the other services of that release wait for their consumers as
    it declares them.
    """
    import asyncio as asyncio_module

    from hub_cli.audit import quiet_logging
    from hub_common.bus import connect
    from hub_common.settings import HubSettings
    from hub_common.streams import Topology, declare_topology

    quiet_logging()

    async def declare() -> None:
        settings = HubSettings()
        client = await connect(settings.nats_url, name="hub-declare-topology", settings=settings)
        try:
            await declare_topology(client.jetstream(), Topology.from_settings(settings))
        finally:
            await client.close()

    _start_unless_insecure(lambda: asyncio_module.run(declare()))
    typer.echo("declared the hub's streams, buckets and consumers")


@app.command()
def asyncapi(
    output: Annotated[Path, typer.Option(help="Where to write the AsyncAPI document.")] = Path("docs/asyncapi.json"),
) -> None:
    """Write the event catalogue as AsyncAPI (generated by FastStream)."""
    from hub_common.catalogue import asyncapi_document

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n")
    typer.echo(f"wrote {output}")


@app.command("deploy-schema")
def deploy_schema(
    output: Annotated[Path, typer.Option(help="Where to write the schema.")] = Path(
        "deploy/kubernetes/settings.schema.json"
    ),
) -> None:
    """Write the JSON Schema of every service's HUB_* settings in a Kubernetes installation."""
    from hub_cli.deploy_settings import settings_schema

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(settings_schema(), indent=2) + "\n")
    typer.echo(f"wrote {output}")


@app.command("nats-permissions")
def nats_permissions(
    chart_values: Annotated[
        Path | None,
        typer.Option(
            help="Instead, rewrite the users in this NATS chart values file (deploy/kubernetes/nats/values.yaml)."
        ),
    ] = None,
) -> None:
    """Print deploy/nats/authorization.conf: one NATS user per service, and the operator.

    The users and permissions of hub_common.nats_permissions, each password read from
    nats-server's environment. `make nats-permissions` writes that file and the chart's values.
    """
    from hub_cli.nats_users import ChartValuesError, authorization_file, with_chart_users

    if chart_values is None:
        typer.echo(authorization_file(), nl=False)
        return
    try:
        import yaml  # noqa: F401 - with_chart_users needs it
    except ModuleNotFoundError:
        typer.echo("error: PyYAML is not installed: pip install 'hub-cli[deploy]'", err=True)
        raise typer.Exit(2) from None
    try:
        chart_values.write_text(with_chart_users(chart_values.read_text()))
    except (OSError, ChartValuesError) as error:
        typer.echo(f"error: {chart_values}: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {chart_values}")


@app.command("deploy-check")
def deploy_check(
    overlay: Annotated[Path, typer.Argument(help="A Kustomize overlay, e.g. deploy/kubernetes/overlays/production.")],
    kubernetes_version: Annotated[str, typer.Option(help="The Kubernetes version to validate against.")] = "1.31",
    schemas: Annotated[
        Path | None,
        typer.Option(help="The folder with settings.schema.json and crds/ (default: found above the overlay)."),
    ] = None,
) -> None:
    """Render a Kustomize overlay with kubectl and check it would install a sound hub.

    Every object against the Kubernetes schemas (and KEDA's CRD), the pods' hardening,
    resources and probes, the fetchers' autoscaling, and each service's settings.
    """
    try:
        from hub_cli.deploy_check import DeployCheckError, check_overlay
    except ModuleNotFoundError as missing:
        typer.echo(f"error: {missing.name} is not installed: pip install 'hub-cli[deploy]'", err=True)
        raise typer.Exit(2) from None

    try:
        report = check_overlay(overlay, schemas=schemas, kubernetes_version=kubernetes_version)
    except DeployCheckError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for problem in report.problems:
        typer.echo(f"✗ {problem}", err=True)
    summary = (
        f"{report.objects} objects: {report.validated_by_kubernetes} against Kubernetes {kubernetes_version},"
        f" {report.validated_by_crd} against their CRDs; settings of {', '.join(report.services) or 'no service'}"
    )
    if report.problems:
        typer.echo(f"{overlay}: {len(report.problems)} problem(s) in {summary}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{overlay}: ok, {summary}")
