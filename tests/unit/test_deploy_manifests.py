"""The deployment files agree with the code: services, ports, topics, settings, hardening.

Neither a cluster nor a Docker engine is needed: the Kubernetes manifests, the
compose file and the Dockerfile are parsed and compared with the service list
and the topic topology of `guestlist.stack` and with each service's settings
class, so a service, port, topic or setting the deployment misses (or a setting
it still sets after the code dropped it) fails here instead of in a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr

from eventkit.settings import ServiceSettings, environment_variable, load_settings
from guestlist.stack.services import SERVICES, ServiceSpec
from guestlist.stack.topology import stack_topics
from services.audit.settings import AuditSettings
from services.identity.settings import IdentitySettings
from services.invitations.settings import InvitationsSettings
from services.notifications.settings import NotificationsSettings
from services.projections.settings import ProjectionsSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
POSTGRES_INIT = ROOT / "deploy" / "compose" / "postgres-init.sh"

Manifest = dict[str, Any]
BY_NAME = pytest.mark.parametrize("spec", SERVICES, ids=[spec.name for spec in SERVICES])

SETTINGS: dict[str, type[ServiceSettings]] = {
    "identity": IdentitySettings, "invitations": InvitationsSettings,
    "notifications": NotificationsSettings, "audit": AuditSettings,
    "projections": ProjectionsSettings,
}
# Settings with a default that runs but does not do the service's work in a deployment.
NEEDED_DESPITE_A_DEFAULT: dict[str, set[str]] = {
    # Without clients nobody may fetch a personal-data or delivery key: no mail, no names.
    "identity": {"SERVICE_CLIENTS"},
    # Without their client secret they cannot open personal data.
    "notifications": {"SERVICE_CLIENT_SECRET"},
    "projections": {"SERVICE_CLIENT_SECRET"},
    "audit": {"AUDIT_SERVICE_CLIENT_SECRET",
              # The default is a relative path: not writable in a read-only container.
              "AUDIT_SIGNING_KEY_FILE"},
}


def documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def base_manifests() -> list[Manifest]:
    """What `kubectl apply -k deploy/k8s` applies, in kustomization order."""
    kustomization = documents(BASE / "kustomization.yaml")[0]
    return [doc for name in kustomization["resources"] for doc in documents(BASE / name)]


def find(kind: str, name: str) -> Manifest:
    matches = [m for m in base_manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def topic_lines(text: str) -> dict[str, int]:
    """`<topic> <partitions>` lines, as the Job and the compose one-shot read them."""
    topics: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and not fields[0].startswith("#") and fields[1].isdigit():
            topics[fields[0]] = int(fields[1])
    return topics


def compose() -> Manifest:
    # PyYAML's safe loader resolves the `<<` merge keys compose uses.
    loaded: Manifest = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_every_kubernetes_file_parses_and_names_its_resources() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert files
    for path in files:
        for doc in documents(path):
            if doc.get("kind") == "Kustomization":
                continue
            assert doc.get("apiVersion") and doc.get("kind"), path
            assert doc["metadata"]["name"], path
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "guestlist", path


def test_the_kustomization_applies_every_base_file_and_no_secret() -> None:
    listed = documents(BASE / "kustomization.yaml")[0]["resources"]
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)
    assert documents(K8S / "kustomization.yaml")[0]["resources"] == ["base"]
    # Secrets are created by hand; applying a template would overwrite the real ones.
    assert not [m for m in base_manifests() if m["kind"] == "Secret"]


def test_there_is_a_deployment_for_each_service_and_no_other() -> None:
    deployments = {m["metadata"]["name"] for m in base_manifests() if m["kind"] == "Deployment"}
    assert deployments == {spec.name for spec in SERVICES}


@BY_NAME
def test_each_deployment_runs_its_service_from_the_one_image(spec: ServiceSpec) -> None:
    pod = find("Deployment", spec.name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == "guestlist"
    assert container["command"] == ["python", "-m", spec.module]
    assert container["ports"] == [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}]
    assert {"name": "HTTP_PORT", "value": str(spec.port)} in container["env"]
    sources = {(kind, ref["name"]) for item in container["envFrom"] for kind, ref in item.items()}
    assert sources == {
        ("configMapRef", "guestlist-config"),
        ("secretRef", f"guestlist-{spec.name}"),
    }


@BY_NAME
def test_each_deployment_has_probes_resources_and_a_locked_down_container(
    spec: ServiceSpec,
) -> None:
    pod = find("Deployment", spec.name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]


@BY_NAME
def test_each_service_has_a_service_and_a_disruption_budget_that_select_its_pods(
    spec: ServiceSpec,
) -> None:
    deployment = find("Deployment", spec.name)
    labels = pod_labels(deployment)
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    service = find("Service", spec.name)
    assert selects(service["spec"]["selector"], labels)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}
    ]
    budget = find("PodDisruptionBudget", spec.name)
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


@BY_NAME
def test_each_service_has_a_secret_template_without_a_real_value(spec: ServiceSpec) -> None:
    (secret,) = documents(K8S / "secret-templates" / f"{spec.name}.yaml")
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == f"guestlist-{spec.name}"
    assert "DATABASE_URL" in secret["stringData"]
    url = secret["stringData"]["DATABASE_URL"]
    assert re.fullmatch(rf"postgresql://{spec.database}:REPLACE_ME@[^/]+/{spec.database}", url)
    for variable, value in secret["stringData"].items():
        assert "REPLACE_ME" in str(value), f"{variable} holds a value"


def test_the_topics_job_creates_exactly_the_stack_topology() -> None:
    listed = topic_lines(find("ConfigMap", "guestlist-topics")["data"]["topics.txt"])
    assert listed == stack_topics()
    pod = find("Job", "guestlist-topics")["spec"]["template"]["spec"]
    assert {"name": "topics", "configMap": {"name": "guestlist-topics"}} in pod["volumes"]
    (container,) = pod["containers"]
    assert "--if-not-exists" in container["args"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_network_policies_deny_by_default_and_open_the_design_flows() -> None:
    policies = [m for m in base_manifests() if m["kind"] == "NetworkPolicy"]
    deny = find("NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny

    def egress_ports(labels: dict[str, str]) -> set[int | str]:
        return {
            port["port"]
            for policy in policies
            if selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels)
            for rule in policy["spec"].get("egress", [])
            for port in rule.get("ports", [])
        }

    def ingress_ports(labels: dict[str, str]) -> set[int | str]:
        return {
            port["port"]
            for policy in policies
            if selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels)
            for rule in policy["spec"].get("ingress", [])
            for port in rule.get("ports", [])
        }

    identity_port = next(spec.port for spec in SERVICES if spec.name == "identity")
    for spec in SERVICES:
        labels = pod_labels(find("Deployment", spec.name))
        assert {53, 9092, 5432, identity_port} <= egress_ports(labels), spec.name
        assert ingress_ports(labels) == {"http"}, spec.name
    job_labels = pod_labels(find("Job", "guestlist-topics"))
    assert egress_ports(job_labels) == {53, 9092}
    assert ingress_ports(job_labels) == set()


def test_compose_creates_exactly_the_stack_topology() -> None:
    (script,) = compose()["services"]["kafka-topics"]["command"]
    heredoc = script.split("<<'TOPICS'", 1)[1].split("\nTOPICS", 1)[0]
    assert topic_lines(heredoc) == stack_topics()
    assert "--if-not-exists" in script


@BY_NAME
def test_compose_runs_each_service_on_its_port_and_its_own_database(spec: ServiceSpec) -> None:
    service = compose()["services"][spec.name]
    assert service["image"] == "guestlist:local"
    assert service["command"] == ["python", "-m", spec.module]
    assert service["ports"] == [f"127.0.0.1:{spec.port}:{spec.port}"]
    environment = service["environment"]
    assert environment["HTTP_PORT"] == str(spec.port)
    password = f"GUESTLIST_{spec.name.upper()}_DB_PASSWORD"
    assert re.fullmatch(
        rf"postgresql://{spec.database}:\$\{{{password}:-dev-only-[a-z-]+\}}"
        rf"@postgres:5432/{spec.database}",
        environment["DATABASE_URL"],
    )
    # The same variable sets the role's password in the init script.
    assert password in compose()["services"]["postgres"]["environment"]
    conditions = {name: dep["condition"] for name, dep in service["depends_on"].items()}
    assert conditions["postgres"] == "service_healthy"
    assert conditions["kafka-topics"] == "service_completed_successfully"
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "/healthz" in " ".join(service["healthcheck"]["test"])


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_compose_kafka_is_one_node_without_topic_auto_creation() -> None:
    environment = compose()["services"]["kafka"]["environment"]
    assert compose()["services"]["kafka"]["image"] == "apache/kafka:4.1.1"
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert environment["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert environment["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    assert environment["KAFKA_NUM_PARTITIONS"] == 3


def test_the_postgres_init_script_creates_every_service_database() -> None:
    match = re.search(r"^guestlist_services=\(([^)]*)\)$", POSTGRES_INIT.read_text(), re.M)
    assert match, "guestlist_services=(...) not found"
    assert match.group(1).split() == [spec.name for spec in SERVICES]


def dockerfile_uid() -> int:
    match = re.search(r"^USER (\d+)(?::\d+)?$", DOCKERFILE.read_text(), re.M)
    assert match, "the Dockerfile must switch to a numeric user"
    return int(match.group(1))


def test_the_dockerfile_builds_the_locked_environment_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "pip install uv==0.13.8" in text
    assert re.search(r"uv sync --frozen --no-dev\b", text)
    assert dockerfile_uid() != 0
    healthcheck = re.search(r"^HEALTHCHECK .*$\n.*$", text, re.M)
    assert healthcheck and "/healthz" in healthcheck.group(0)


# -- settings ------------------------------------------------------------------------


LOOPBACK = r"//(127\.0\.0\.1|localhost)\b|^127\."


def variables(settings_type: type[ServiceSettings]) -> dict[str, str]:
    """Each environment variable the settings class reads, with its field name."""
    return {environment_variable(settings_type, (name,)): name
            for name in settings_type.model_fields}


def is_secret(settings_type: type[ServiceSettings], variable: str) -> bool:
    annotation = settings_type.model_fields[variables(settings_type)[variable]].annotation

    def holds_secret(kind: Any) -> bool:
        return kind is SecretStr or any(holds_secret(arg) for arg in get_args(kind))

    return holds_secret(annotation)


def needed(settings_type: type[ServiceSettings], service: str) -> set[str]:
    """What a deployment must set: a setting without a default, one whose default is
    a loopback address or a development secret, and those named above."""
    must = set(NEEDED_DESPITE_A_DEFAULT.get(service, set()))
    for variable, name in variables(settings_type).items():
        field = settings_type.model_fields[name]
        if field.is_required():
            must.add(variable)
            continue
        default = field.get_default(call_default_factory=True)
        development = isinstance(default, SecretStr) or (
            isinstance(default, str) and re.search(LOOPBACK, default) is not None
        )
        if development:
            must.add(variable)
    return must


def compose_environment(service: str) -> dict[str, str]:
    environment: dict[str, Any] = compose()["services"][service]["environment"]
    return {name: str(value) for name, value in environment.items()}


def with_compose_defaults(value: str) -> str:
    """A compose value as `docker compose` reads it when no variable is set."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value).replace("$$", "$")


def kubernetes_environment(service: str) -> dict[str, tuple[str, str]]:
    """Each variable of the service's pods: (where it comes from, its value)."""
    (container,) = find("Deployment", service)["spec"]["template"]["spec"]["containers"]
    found = {name: ("configmap", str(value))
             for name, value in find("ConfigMap", "guestlist-config")["data"].items()}
    (secret,) = documents(K8S / "secret-templates" / f"{service}.yaml")
    found |= {name: ("secret", str(value)) for name, value in secret["stringData"].items()}
    found |= {item["name"]: ("env", str(item.get("value"))) for item in container["env"]}
    return found


@BY_NAME
def test_compose_sets_every_setting_a_service_needs_and_it_starts_from_them(
    spec: ServiceSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_type = SETTINGS[spec.name]
    environment = compose_environment(spec.name)
    missing = needed(settings_type, spec.name) - set(environment)
    assert not missing, f"docker-compose.yml does not set {sorted(missing)} for {spec.name}"
    for variable in variables(settings_type):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, with_compose_defaults(value))
    load_settings(settings_type)  # a ConfigurationError names what is wrong


@BY_NAME
def test_compose_sets_no_variable_the_service_does_not_read(spec: ServiceSpec) -> None:
    stale = set(compose_environment(spec.name)) - set(variables(SETTINGS[spec.name]))
    assert not stale, f"{spec.name} does not read {sorted(stale)} (docker-compose.yml)"


@BY_NAME
def test_kubernetes_sets_every_setting_a_service_needs_secrets_from_its_secret(
    spec: ServiceSpec,
) -> None:
    settings_type = SETTINGS[spec.name]
    environment = kubernetes_environment(spec.name)
    missing = needed(settings_type, spec.name) - set(environment)
    assert not missing, f"deploy/k8s does not set {sorted(missing)} for {spec.name}"
    for variable, (source, _) in environment.items():
        if variable in variables(settings_type) and is_secret(settings_type, variable):
            assert source == "secret", f"{variable} of {spec.name} comes from its {source}"
    (secret,) = documents(K8S / "secret-templates" / f"{spec.name}.yaml")
    stale = set(secret["stringData"]) - set(variables(settings_type))
    assert not stale, f"{spec.name} does not read {sorted(stale)} (its Secret template)"


def test_the_config_map_holds_only_settings_some_service_reads_and_no_secret() -> None:
    read = {variable: settings_type for settings_type in SETTINGS.values()
            for variable in variables(settings_type)}
    for variable in find("ConfigMap", "guestlist-config")["data"]:
        assert variable in read, f"no service reads {variable} (guestlist-config)"
        for settings_type in SETTINGS.values():
            if variable in variables(settings_type):
                assert not is_secret(settings_type, variable), f"{variable} is a secret"


def test_the_shared_secrets_agree_in_compose() -> None:
    identity = compose_environment("identity")
    assert identity["INVITATION_CODE_KEY"] == compose_environment("invitations")[
        "INVITATION_CODE_KEY"]
    clients = dict(pair.split("=", 1) for pair in identity["SERVICE_CLIENTS"].split(","))
    secrets = {name: compose_environment(name)[variable]
               for name, settings_type in SETTINGS.items()
               for variable in variables(settings_type)
               if variable.endswith("SERVICE_CLIENT_SECRET")}
    assert clients == secrets


def test_identity_knows_every_service_client_in_kubernetes() -> None:
    (identity,) = documents(K8S / "secret-templates" / "identity.yaml")
    pairs = identity["stringData"]["SERVICE_CLIENTS"].split(",")
    listed = {pair.split("=", 1)[0] for pair in pairs}
    with_secret = {name for name, settings_type in SETTINGS.items()
                   if any(v.endswith("SERVICE_CLIENT_SECRET") for v in variables(settings_type))}
    assert listed == with_secret


def test_the_audit_signing_key_is_a_mounted_secret_with_a_template() -> None:
    pod = find("Deployment", "audit")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = Path(kubernetes_environment("audit")["AUDIT_SIGNING_KEY_FILE"][1])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (name,) = [n for n, m in mounts.items() if Path(m["mountPath"]) == path.parent]
    assert mounts[name]["readOnly"] is True
    secret_name = volumes[name]["secret"]["secretName"]
    (template,) = documents(K8S / "secret-templates" / "audit-signing-key.yaml")
    assert template["metadata"]["name"] == secret_name
    assert set(template["stringData"]) == {path.name}


def test_every_service_url_in_kubernetes_is_open_in_the_network_policies() -> None:
    policies = [m for m in base_manifests() if m["kind"] == "NetworkPolicy"]
    ports = {spec.name: spec.port for spec in SERVICES}
    for spec in SERVICES:
        labels = pod_labels(find("Deployment", spec.name))
        reads = variables(SETTINGS[spec.name])
        for variable, (_, value) in kubernetes_environment(spec.name).items():
            host = urlsplit(value).hostname or ""
            target = host.split(".")[0]
            if variable not in reads or not host.endswith(".guestlist.svc") or target == spec.name:
                continue
            assert any(
                selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels)
                and any(port["port"] == ports[target] for port in rule.get("ports", []))
                and any(peer.get("podSelector", {}).get("matchLabels", {}).get(
                    "app.kubernetes.io/name") == target for peer in rule.get("to", []))
                for policy in policies for rule in policy["spec"].get("egress", [])
            ), f"{spec.name} reads {variable}={value} but may not reach {target}"
