"""The hub's real processes, started once for the e2e tests that share them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from pydantic import SecretStr

from hub_common import purpose_keys
from hub_common.local_nats import free_port
from hub_common.settings import HubSettings, Mode
from hub_gateway.auth import issue_dev_token
from tests.conftest import Broker, Sandbox
from tests.support.processes import ServiceProcess, start_service, stop_all, wait_until_healthy

SECRET_KEY = "e2e-secret-key-long-enough-for-hmac-sha256"
# Every fetcher of the e2e tests shares the one "fetcher" durable, so any of them may take a
# given refresh: they all run with the same limits the fault tests expect.
FETCHER_TEST_LIMITS = {
    "HUB_HTTP_READ_TIMEOUT_SECONDS": "3",
    "HUB_MAX_RESPONSE_BYTES": "2000000",
}


class Hub:
    def __init__(
        self, url: str, processes: list[ServiceProcess], gateway_environment: dict[str, str], home: Path
    ) -> None:
        self.url = url
        # The registry's SQLite file: a test seeds rows an older release saved there.
        self.registry_database = home / "registry.db"
        # Where the SMTP sink keeps every mail the hub sent (hub_common.dev_mail.read_mailbox).
        self.mail_dir = gateway_environment["HUB_SMTP_SINK_DIR"]
        self.processes = processes
        # What another replica of the gateway needs to share this one's database and broker.
        self.gateway_environment = gateway_environment

    def token(self, email: str) -> str:

        return issue_dev_token(HubSettings(mode=Mode.DEV, secret_key=SecretStr(SECRET_KEY)), email)

    def client(self, email: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token(email)}"}, timeout=20)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.processes)

    def start_gateway_replica(
        self, name: str, log_dir: Path, settings: dict[str, str] | None = None
    ) -> tuple[ServiceProcess, str]:
        """Another gateway on this hub's database and broker, healthy; the caller stops it."""
        port = free_port()
        replica = start_service(
            name, "gateway", {**self.gateway_environment, "HUB_PORT": str(port), **(settings or {})}, log_dir
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(f"{url}/healthz", replica, timeout=90)
        except BaseException:
            replica.kill()
            raise
        return replica, url


@pytest.fixture(scope="package")
def hub(
    nats_broker: Broker, sandbox: Sandbox, gateway_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    home = tmp_path_factory.mktemp("hub")
    port = gateway_port
    smtp_port = free_port()
    common = {
        "HUB_NATS_URL": nats_broker.url,
        "HUB_MODE": "dev",
        "HUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **sandbox.settings_environment(),
    }

    def own_key(purpose: purpose_keys.Purpose) -> dict[str, str]:
        # As in production: only the gateway holds HUB_SECRET_KEY, every other service the
        # one key it needs (deploy/README.md, Secrets).
        return {purpose_keys.SETTING[purpose]: purpose_keys.encode(purpose_keys.derive(SECRET_KEY, purpose))}

    logs = home / "logs"
    # Each service signs in as its own NATS user, with the permissions it has in production.
    gateway_environment = {
        **common,
        **nats_broker.sign_in("gateway"),
        "HUB_SECRET_KEY": SECRET_KEY,
        "HUB_DATABASE_URL": f"sqlite:///{home / 'gateway.db'}",
        "HUB_SMTP_SINK_DIR": str(home / "mail"),
    }
    processes = [
        start_service(
            "registry",
            "registry",
            {
                **common,
                **nats_broker.sign_in("registry"),
                **own_key(purpose_keys.Purpose.WEBHOOK_SECRETS),
                "HUB_DATABASE_URL": f"sqlite:///{home / 'registry.db'}",  # Hub.registry_database
                # The tests' webhook receivers listen on loopback (tests/e2e/test_alerts.py).
                "HUB_ALERT_WEBHOOK_ALLOW_LOOPBACK": "true",
            },
            logs,
        ),
        start_service(
            "smtp-sink",
            "smtp-sink",
            {**common, "HUB_SMTP_SINK_PORT": str(smtp_port), "HUB_SMTP_SINK_DIR": str(home / "mail")},
            logs,
        ),
        start_service(
            "invitations",
            "invitations",
            {
                **common,
                **nats_broker.sign_in("invitations"),
                **own_key(purpose_keys.Purpose.INVITATION_LINKS),
                "HUB_DATABASE_URL": f"sqlite:///{home / 'invitations.db'}",
                "HUB_SMTP_HOST": "127.0.0.1",
                "HUB_SMTP_PORT": str(smtp_port),
            },
            logs,
        ),
        *(
            start_service(
                name,
                "fetcher",
                {
                    **common,
                    **nats_broker.sign_in("fetcher"),
                    **own_key(purpose_keys.Purpose.NOTIFICATIONS),
                    **FETCHER_TEST_LIMITS,
                },
                logs,
            )
            for name in ("fetcher-1", "fetcher-2")
        ),
        start_service("gateway", "gateway", {**gateway_environment, "HUB_PORT": str(port)}, logs),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/healthz", processes[-1], timeout=90)
        yield Hub(url, processes, gateway_environment, home)
    finally:
        stop_all(reversed(processes))
    # A refused publish may be one a service only logs (a notice, a retried write): whatever
    # the tests saw, every service must have worked within its NATS permissions.
    assert nats_broker.violations() == [], "a service did what its NATS user may not"


SCREENSHOTS = Path(os.environ.get("HUB_SCREENSHOT_DIR", Path(__file__).parents[2] / "test-artifacts" / "screenshots"))


def _chromium_path() -> str | None:
    """Debian's chromium: CI names it (HUB_TEST_CHROMIUM); a developer may just have it."""
    named = os.environ.get("HUB_TEST_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Playwright driving the system's chromium, never a downloaded browser.

    Module-scoped: sync Playwright runs an event loop in the main thread while it is open,
    which the async tests of the next modules could not share.

    CI (.ci/run) installs chromium and names it, so there a missing browser fails the run;
    on a machine without chromium the browser tests are skipped with the reason shown.
    """
    path = _chromium_path()
    if path is None or not Path(path).exists():
        if os.environ.get("HUB_TEST_CHROMIUM"):
            pytest.fail(f"HUB_TEST_CHROMIUM={path} does not exist")
        pytest.skip("no chromium on this machine: `apt-get install chromium` (or run .ci/run) for the browser tests")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser profile at 1280×800; the sandbox's self-made CA is trusted for it only."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # Something a page of the hub does that its Content-Security-Policy forbids.
    page.on(
        "console",
        lambda message: (
            problems.append(f"refused by the page's policy: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"last-{request.node.name}.png")
        context.close()
    assert not problems, problems


@pytest.fixture
def faults(sandbox: Sandbox) -> Iterator[httpx.Client]:
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10)
    try:
        yield admin
    finally:
        admin.delete("/faults").raise_for_status()
        admin.close()
