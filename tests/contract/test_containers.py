"""The container files agree with the code, checked without a Docker engine.

docker-compose.yml and the Dockerfiles are parsed and compared with what they run: every
``HUB_*`` variable is a field of that service's Settings class, every ``hub <name>`` is a
command of the `hub` CLI, every COPY source is in the build context, images are pinned,
and each image's HEALTHCHECK command is run here against a stand-in of what it probes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
import typer.core
import typer.main
import yaml

from hub_cli.main import app
from hub_common.settings import HubSettings
from hub_fetcher.settings import FetcherSettings
from hub_gateway.settings import GatewaySettings
from hub_invitations.settings import InvitationsSettings
from hub_registry.settings import RegistrySettings
from hub_sandbox.server import serve_in_background
from hub_sandbox.settings import SandboxSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

# `hub <name>` -> the Settings class that process reads its HUB_* variables into.
SETTINGS_BY_COMMAND: dict[str, type[HubSettings]] = {
    "registry": RegistrySettings,
    "fetcher": FetcherSettings,
    "invitations": InvitationsSettings,
    "gateway": GatewaySettings,
    "sandbox": SandboxSettings,
}
DOCKERFILES = {
    "registry": ROOT / "services/registry/Dockerfile",
    "fetcher": ROOT / "services/fetcher/Dockerfile",
    "invitations": ROOT / "services/invitations/Dockerfile",
    "gateway": ROOT / "services/gateway/Dockerfile",
    "sandbox": ROOT / "sandbox/Dockerfile",
}
# Written by the lock step, not kept by hand: a COPY of it need not find it during tests.
GENERATED_SOURCES = {"constraints.txt"}
ROOT_USERS = {"root", "0"}
VERSIONED_TAG = re.compile(r"^v?\d+(\.\d+)+")


# ---------------------------------------------------------------- reading the files


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    instructions: tuple[Instruction, ...]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        instructions: list[Instruction] = []
        pending = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            # Comments and empty lines are dropped, also inside a continued instruction.
            if not line or line.startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            keyword, _, arguments = (pending + line).partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip()))
            pending = ""
        assert not pending, f"{path}: the last instruction ends in a line continuation"
        return cls(path, tuple(instructions))

    def final_stage(self) -> list[Instruction]:
        starts = [index for index, item in enumerate(self.instructions) if item.keyword == "FROM"]
        assert starts, f"{self.path}: no FROM"
        return list(self.instructions[starts[-1] :])

    def last(self, keyword: str) -> Instruction | None:
        found = [item for item in self.final_stage() if item.keyword == keyword]
        return found[-1] if found else None

    def entrypoint(self) -> list[str]:
        instruction = self.last("ENTRYPOINT")
        assert instruction is not None, f"{self.path}: no ENTRYPOINT"
        argv = json.loads(instruction.arguments)
        assert isinstance(argv, list), f"{self.path}: ENTRYPOINT must use the exec (JSON) form"
        return [str(part) for part in argv]

    def healthcheck_command(self) -> str:
        """The shell command of the final stage's HEALTHCHECK (its CMD in shell form)."""
        instruction = self.last("HEALTHCHECK")
        assert instruction is not None, f"{self.path}: no HEALTHCHECK"
        _, separator, command = instruction.arguments.partition("CMD ")
        assert separator, f"{self.path}: HEALTHCHECK needs a CMD"
        assert not command.lstrip().startswith("["), f"{self.path}: keep the HEALTHCHECK CMD in shell form"
        return command.strip()

    def environment(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.final_stage():
            if instruction.keyword != "ENV":
                continue
            words = shlex.split(instruction.arguments)
            if "=" in words[0]:
                for word in words:
                    key, _, value = word.partition("=")
                    values[key] = value
            else:
                values[words[0]] = " ".join(words[1:])
        return values

    def build_args(self) -> dict[str, str]:
        """ARG defaults declared before the first FROM (what FROM may refer to)."""
        values: dict[str, str] = {}
        for instruction in self.instructions:
            if instruction.keyword == "FROM":
                break
            if instruction.keyword == "ARG" and "=" in instruction.arguments:
                name, default = instruction.arguments.split("=", 1)
                values[name.strip()] = default.strip()
        return values

    def stages(self) -> list[tuple[str, str | None]]:
        """(image, stage name) of every FROM, with ARG defaults substituted."""
        args = self.build_args()
        found: list[tuple[str, str | None]] = []
        for instruction in self.instructions:
            if instruction.keyword != "FROM":
                continue
            words = [word for word in instruction.arguments.split() if not word.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda match: args.get(match.group(1), match.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append((image, name))
        return found

    def context_sources(self) -> list[str]:
        """Paths read from the build context: COPY/ADD sources and RUN bind mounts."""
        sources: list[str] = []
        for instruction in self.instructions:
            if instruction.keyword in {"COPY", "ADD"}:
                words = shlex.split(instruction.arguments)
                if any(word.startswith("--from=") for word in words):
                    continue
                paths = [word for word in words if not word.startswith("--")]
                if paths and paths[0].startswith("["):
                    paths = [str(part) for part in json.loads(" ".join(paths))]
                assert len(paths) >= 2, f"{self.path}: {instruction}"
                sources += paths[:-1]
            elif instruction.keyword == "RUN":
                for word in shlex.split(instruction.arguments):
                    if not word.startswith("--mount="):
                        continue
                    options = dict(
                        part.split("=", 1) for part in word.removeprefix("--mount=").split(",") if "=" in part
                    )
                    if options.get("type") == "bind" and "from" not in options:
                        sources.append(options.get("source", "."))
        return sources

    def referenced_stages(self) -> list[str]:
        """Stage names used by COPY --from= and RUN --mount=...,from=..."""
        names = re.findall(r"--from=([\w.-]+)", " ".join(i.arguments for i in self.instructions))
        names += re.findall(r"[,=]from=([\w.-]+)", " ".join(i.arguments for i in self.instructions))
        return names


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def compose_services() -> dict[str, dict[str, Any]]:
    services = load_compose()["services"]
    assert isinstance(services, dict)
    return services


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [str(item).split("=", 1) for item in raw]
        return {pair[0]: pair[1] if len(pair) == 2 else "" for pair in pairs}
    assert isinstance(raw, dict)
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def dockerfile_of(service: Mapping[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return ROOT / build / "Dockerfile"
    return ROOT / str(build.get("context", ".")) / str(build.get("dockerfile", "Dockerfile"))


def hub_command_of(service: Mapping[str, Any]) -> str | None:
    """The `hub <name>` a compose service runs, from its entrypoint and command."""
    entrypoint = as_argv(service.get("entrypoint"))
    dockerfile = dockerfile_of(service)
    if not entrypoint and dockerfile is not None and dockerfile.exists():
        entrypoint = Dockerfile.read(dockerfile).entrypoint()
    argv = entrypoint + as_argv(service.get("command"))
    if len(argv) >= 2 and PurePosixPath(argv[0]).name == "hub":
        return argv[1]
    return None


def hub_services() -> dict[str, tuple[str, dict[str, Any]]]:
    """Compose service -> (its `hub` command, its definition), for every hub service."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, service in compose_services().items():
        command = hub_command_of(service)
        if command is not None:
            found[name] = (command, service)
    return found


def settings_variables(settings_class: type[HubSettings]) -> set[str]:
    """The environment names a Settings class reads (prefix + field name, any case)."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names = {(prefix + field).upper() for field in settings_class.model_fields}
    for field in settings_class.model_fields.values():
        if isinstance(field.validation_alias, str):
            names.add(field.validation_alias.upper())
    return names


def settings_values(settings_class: type[HubSettings], environment: Mapping[str, str]) -> dict[str, str]:
    prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
    return {key[len(prefix) :].lower(): value for key, value in environment.items() if key.startswith(prefix)}


def cli_commands() -> set[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return set(group.commands)


def dockerignore_patterns() -> list[re.Pattern[str]]:
    patterns: list[re.Pattern[str]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "teach ignored_by_docker about exceptions (!) before using them"
        expression = re.escape(line.strip("/"))
        expression = expression.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        expression = expression.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        expression = expression.replace(r"\[", "[").replace(r"\]", "]")  # character classes
        patterns.append(re.compile(expression))
    return patterns


def ignored_by_docker(relative: str) -> bool:
    parts = PurePosixPath(relative).parts
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    return any(pattern.fullmatch(prefix) for pattern in dockerignore_patterns() for prefix in prefixes)


def healthcheck_env(**values: str) -> dict[str, str]:
    """This interpreter as the image's `python`, and only the HUB_* values given."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    environment.update(values)
    return environment


def run_healthcheck(image: str, **values: str) -> int:
    command = Dockerfile.read(DOCKERFILES[image]).healthcheck_command()
    result = subprocess.run(["/bin/sh", "-c", command], env=healthcheck_env(**values), capture_output=True, timeout=30)
    return result.returncode


# ---------------------------------------------------------------- compose <-> code


def test_every_hub_service_of_compose_is_known() -> None:
    services = hub_services()
    assert {command for command, _ in services.values()} == set(SETTINGS_BY_COMMAND)


@pytest.mark.parametrize("service_name", sorted(compose_services()))
def test_hub_variables_are_settings_fields(service_name: str) -> None:
    service = compose_services()[service_name]
    hub_variables = {key for key in environment_of(service) if key.upper().startswith("HUB_")}
    command = hub_command_of(service)
    if command is None:
        assert not hub_variables, f"{service_name} is no hub service but sets {sorted(hub_variables)}"
        return
    settings_class = SETTINGS_BY_COMMAND[command]
    unknown = {key for key in hub_variables if key.upper() not in settings_variables(settings_class)}
    assert not unknown, f"{service_name}: {settings_class.__name__} has no field for {sorted(unknown)}"
    # The values parse too (ports are numbers, the mode is a Mode...).
    settings_class.model_validate(settings_values(settings_class, environment_of(service)))


@pytest.mark.parametrize("command", sorted(DOCKERFILES))
def test_dockerfile_env_variables_are_settings_fields(command: str) -> None:
    environment = Dockerfile.read(DOCKERFILES[command]).environment()
    settings_class = SETTINGS_BY_COMMAND[command]
    hub_variables = {key for key in environment if key.startswith("HUB_")}
    unknown = hub_variables - settings_variables(settings_class)
    assert not unknown, f"{DOCKERFILES[command]}: {settings_class.__name__} has no field for {sorted(unknown)}"
    settings_class.model_validate(settings_values(settings_class, environment))


def test_settings_variables_catch_a_misspelling() -> None:
    names = settings_variables(RegistrySettings)
    assert {"HUB_NATS_URL", "HUB_DATABASE_URL", "HUB_SAMPLE_CLIENT_URL"} <= names
    assert "HUB_NATS_URI" not in names
    assert "HUB_SANDBOX_PORT" not in names


@pytest.mark.parametrize("service_name", sorted(hub_services()))
def test_built_services_have_their_dockerfile_and_a_real_hub_command(service_name: str) -> None:
    command, service = hub_services()[service_name]
    dockerfile = dockerfile_of(service)
    assert dockerfile is not None, f"{service_name} must be built from its Dockerfile"
    assert dockerfile.is_file(), f"{service_name}: {dockerfile} is missing"
    assert dockerfile == DOCKERFILES[command], f"{service_name} runs `hub {command}` from {dockerfile}"
    assert command in cli_commands(), f"`hub {command}` is no command of hub_cli.main.app"


@pytest.mark.parametrize("command", sorted(DOCKERFILES))
def test_dockerfile_entrypoint_is_its_hub_command(command: str) -> None:
    assert Dockerfile.read(DOCKERFILES[command]).entrypoint() == ["hub", command]
    assert command in cli_commands()


def test_no_compose_service_lacks_its_dockerfile() -> None:
    for name, service in compose_services().items():
        dockerfile = dockerfile_of(service)
        if dockerfile is not None:
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        else:
            assert "image" in service, f"{name} has neither build nor image"


# ---------------------------------------------------------------- the Dockerfiles


@pytest.mark.parametrize("command", sorted(DOCKERFILES))
def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck(command: str) -> None:
    dockerfile = Dockerfile.read(DOCKERFILES[command])
    user = dockerfile.last("USER")
    assert user is not None, f"{dockerfile.path}: the final stage sets no USER (it would run as root)"
    assert user.arguments.split(":")[0] not in ROOT_USERS, f"{dockerfile.path}: USER {user.arguments}"
    healthcheck = dockerfile.last("HEALTHCHECK")
    assert healthcheck is not None, f"{dockerfile.path}: no HEALTHCHECK"
    assert healthcheck.arguments.upper() != "NONE"
    assert dockerfile.healthcheck_command()


@pytest.mark.parametrize("command", sorted(DOCKERFILES))
def test_dockerfile_is_multi_stage_on_pinned_images(command: str) -> None:
    dockerfile = Dockerfile.read(DOCKERFILES[command])
    stages = dockerfile.stages()
    assert len(stages) >= 2, f"{dockerfile.path}: build wheels in a builder stage"
    names = {name for _, name in stages if name}
    for image, _ in stages:
        if image not in names:
            assert_pinned(image, where=str(dockerfile.path))
    for used in dockerfile.referenced_stages():
        assert used in names, f"{dockerfile.path}: no stage named {used}"
    # Only the wheels reach the final stage: no sources, no compilers.
    final_copies = [i for i in dockerfile.final_stage() if i.keyword in {"COPY", "ADD"}]
    assert not final_copies, f"{dockerfile.path}: the final stage copies {final_copies}"


@pytest.mark.parametrize("command", sorted(DOCKERFILES))
def test_dockerfile_sources_exist_in_the_build_context(command: str) -> None:
    dockerfile = Dockerfile.read(DOCKERFILES[command])
    sources = dockerfile.context_sources()
    assert sources
    for source in sources:
        relative = source.removeprefix("./").rstrip("/") or "."
        if relative not in GENERATED_SOURCES:
            assert (ROOT / relative).exists(), f"{dockerfile.path}: COPY source {source} does not exist"
        assert not ignored_by_docker(relative), f"{dockerfile.path}: {source} is excluded by .dockerignore"


def test_dockerignore_keeps_the_junk_out() -> None:
    junk_paths = [".git", ".venv", ".hub", "services/registry/hub_registry.egg-info", "cli/hub_cli/main.pyc"]
    for junk in junk_paths:
        assert ignored_by_docker(junk), junk
    assert not ignored_by_docker("services/gateway/hub_gateway/web/templates/base.html")


# ---------------------------------------------------------------- compose wiring


def assert_pinned(image: str, *, where: str) -> None:
    if "@sha256:" in image:
        return
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{where}: {image} has no tag"
    assert tag != "latest", f"{where}: {image} is not pinned"
    assert VERSIONED_TAG.match(tag), f"{where}: {image} needs a version tag (like 2.11.4)"


@pytest.mark.parametrize("service_name", sorted(compose_services()))
def test_compose_images_are_pinned(service_name: str) -> None:
    service = compose_services()[service_name]
    if "image" in service:
        assert_pinned(str(service["image"]), where=service_name)


def test_assert_pinned_refuses_floating_tags() -> None:
    for floating in ["nats", "nats:latest", "postgres:16-alpine", "axllent/mailpit", "registry:5000/x"]:
        with pytest.raises(AssertionError):
            assert_pinned(floating, where="test")
    assert_pinned("nats:2.11.4-alpine", where="test")


def test_depends_on_healthy_only_on_services_with_a_healthcheck() -> None:
    services = compose_services()
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        for dependency, condition in depends_on.items() if isinstance(depends_on, dict) else []:
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition.get("condition") != "service_healthy":
                continue
            target = services[dependency]
            dockerfile = dockerfile_of(target)
            has_check = "healthcheck" in target or (
                dockerfile is not None and Dockerfile.read(dockerfile).last("HEALTHCHECK") is not None
            )
            assert has_check, f"{name} waits for {dependency} to be healthy, which has no healthcheck"


def test_every_hub_service_gets_the_shared_settings() -> None:
    for name, (command, service) in hub_services().items():
        environment = environment_of(service)
        required = {"HUB_MODE", "HUB_ENTRA_CLIENT_ID", "HUB_ENTRA_CLIENT_SECRET"}
        if command != "sandbox":
            required |= {
                "HUB_NATS_URL",
                "HUB_ENTRA_AUTHORITY",
                "HUB_BC_API",
                "HUB_BC_WEB_CLIENT",
                "HUB_CA_BUNDLE",
                "HUB_SECRET_KEY",
            }
        if command in {"registry", "invitations", "gateway"}:
            required.add("HUB_DATABASE_URL")
        assert required <= set(environment), f"{name} lacks {sorted(required - set(environment))}"


def test_services_share_the_sandbox_identity_and_trust_its_ca() -> None:
    services = hub_services()
    sandbox = environment_of(services["sandbox"][1])
    sandbox_mounts = {
        str(volume).split(":")[1]: str(volume).split(":")[0] for volume in services["sandbox"][1]["volumes"]
    }
    state_dir = sandbox["HUB_SANDBOX_STATE_DIR"]
    state_volume = sandbox_mounts[state_dir]
    for name, (command, service) in services.items():
        if command == "sandbox":
            continue
        environment = environment_of(service)
        for key in ("HUB_ENTRA_CLIENT_ID", "HUB_ENTRA_CLIENT_SECRET"):
            assert environment[key] == sandbox[key], f"{name}: {key} differs from the sandbox's"
        ca_bundle = PurePosixPath(environment["HUB_CA_BUNDLE"])
        mounts = [str(volume).split(":") for volume in service.get("volumes", [])]
        sharing = [m for m in mounts if m[0] == state_volume and ca_bundle.is_relative_to(m[1])]
        assert sharing, f"{name}: {ca_bundle} is not on the sandbox's state volume"
        assert ca_bundle == PurePosixPath(sharing[0][1]) / "ca.pem"
        assert sharing[0][2:] == ["ro"], f"{name}: mount the sandbox's state read-only"
        for key in ("HUB_ENTRA_AUTHORITY", "HUB_BC_API"):
            url = urlsplit(environment[key])
            assert url.scheme == "https" and url.port == int(sandbox["HUB_SANDBOX_PORT"]), f"{name}: {key}"


def test_sample_client_url_is_under_the_web_client_the_registry_accepts() -> None:
    registry = environment_of(hub_services()["registry"][1])
    web_client = registry["HUB_BC_WEB_CLIENT"].rstrip("/")
    assert registry["HUB_SAMPLE_CLIENT_URL"].startswith(web_client + "/")


def test_compose_runs_at_least_two_fetchers() -> None:
    fetchers = [service for command, service in hub_services().values() if command == "fetcher"]
    replicas = sum(int(service.get("deploy", {}).get("replicas", 1)) for service in fetchers)
    assert replicas >= 2, "run at least two fetchers"


def test_gateway_is_published_and_listens_on_every_interface() -> None:
    gateway = hub_services()["gateway"][1]
    environment = {**Dockerfile.read(DOCKERFILES["gateway"]).environment(), **environment_of(gateway)}
    assert ipaddress.ip_address(environment["HUB_HOST"]).is_unspecified, "listen on every interface"
    assert any(str(port).endswith(f":{environment['HUB_PORT']}") for port in gateway["ports"])


def test_the_dev_stack_is_published_on_this_machine_only() -> None:
    """A dev stack signs anyone in by the address they type: published on every interface
    (Docker's published ports pass the host's firewall), anyone on the network could."""
    published = [(name, str(port)) for name, service in compose_services().items() for port in service.get("ports", [])]
    assert published, "the dashboard, the sandbox and the mail sink are published"
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


# ---------------------------------------------------------------- the healthchecks, run


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
@pytest.mark.parametrize("image", ["registry", "fetcher", "invitations"])
def test_nats_connection_healthcheck(image: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        url = f"nats://127.0.0.1:{port}"
        assert run_healthcheck(image, HUB_NATS_URL=url) != 0, "healthy without a connection"
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        try:
            assert run_healthcheck(image, HUB_NATS_URL=url) == 0
            assert run_healthcheck(image, HUB_NATS_URL=f"nats://elsewhere:4222, {url}") == 0
        finally:
            client.close()
            accepted.close()
        assert run_healthcheck(image, HUB_NATS_URL=url) != 0, "healthy after the connection closed"


class _Health(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    class Handler(_Health):
        status = 200

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], Handler
    finally:
        server.shutdown()
        server.server_close()


def test_gateway_healthcheck(health_server: tuple[int, type[_Health]]) -> None:
    port, handler = health_server
    assert run_healthcheck("gateway", HUB_PORT=str(port)) == 0
    handler.status = 503
    assert run_healthcheck("gateway", HUB_PORT=str(port)) != 0


@pytest.fixture(scope="module")
def compose_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """The sandbox as compose configures it, on a free local port."""
    environment = environment_of(hub_services()["sandbox"][1])
    values: dict[str, Any] = settings_values(SandboxSettings, environment)
    state_dir = tmp_path_factory.mktemp("sandbox-state")
    values.update(sandbox_host="127.0.0.1", sandbox_port=0, sandbox_state_dir=state_dir)
    with serve_in_background(SandboxSettings.model_validate(values)) as running:
        yield running.port, state_dir


def test_sandbox_healthcheck(compose_sandbox: tuple[int, Path]) -> None:
    port, state_dir = compose_sandbox
    assert run_healthcheck("sandbox", HUB_SANDBOX_PORT=str(port), HUB_SANDBOX_STATE_DIR=str(state_dir)) == 0
    with socket.create_server(("127.0.0.1", 0)) as closed:
        idle_port = closed.getsockname()[1]
    assert run_healthcheck("sandbox", HUB_SANDBOX_PORT=str(idle_port), HUB_SANDBOX_STATE_DIR=str(state_dir)) != 0


def test_sandbox_certificate_names_the_host_the_services_use(compose_sandbox: tuple[int, Path]) -> None:
    port, state_dir = compose_sandbox
    hosts = {
        urlsplit(environment_of(service)[key]).hostname
        for command, service in hub_services().values()
        if command != "sandbox"
        for key in ("HUB_ENTRA_AUTHORITY", "HUB_BC_API")
    }
    context = ssl.create_default_context(cafile=str(state_dir / "ca.pem"))
    for host in hosts:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as connection,
            context.wrap_socket(connection, server_hostname=host),
        ):
            pass
