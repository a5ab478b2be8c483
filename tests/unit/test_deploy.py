"""Static checks of deploy/: the files parse, agree with the code, and hold no secrets.

Nothing here runs a container. The checks tie deploy/ to the code it deploys:
every AMEND_* variable is a field of `worker.settings.Settings` and its value
validates as one; settings.md documents exactly the fields the class has; the
commands the manifests run are commands of the `amend` CLI; the image, the
compose stack and the Kubernetes manifests agree on ports, users and names;
Grafana gets the files of deploy/grafana/ where its provisioning expects them,
every variable its data source reads, and a read-only ledger role.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from pydantic import SecretStr

from worker.cli import app
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / ".env.example"
SETTINGS_MD = DEPLOY / "settings.md"
INIT_SQL = DEPLOY / "postgres-init.sql"
GRAFANA = DEPLOY / "grafana"
GRAFANA_DATASOURCE = GRAFANA / "provisioning" / "datasources" / "amend.yaml"
GRAFANA_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "amend.yaml"

PLACEHOLDER = "REPLACE_ME"
FIELDS = Settings.model_fields
ENV_VARS = {f"AMEND_{name.upper()}": name for name in FIELDS}


def _types(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


SECRET_FIELDS = {name for name, f in FIELDS.items() if SecretStr in _types(f.annotation)}
SECRET_ENV_VARS = {f"AMEND_{name.upper()}" for name in SECRET_FIELDS}
APP_SERVICES = ("migrate", "worker", "gateway")
AMEND_IMAGE = "amend"  # the image name the Kubernetes manifests use for deploy/Dockerfile


# -- helpers ---------------------------------------------------------------------

# Filled-in secrets an operator keeps beside the templates (git-ignored by
# deploy/.gitignore): never read by these checks.
LOCAL_SECRETS = {
    DEPLOY / line.strip()
    for line in (DEPLOY / ".gitignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def _deploy_files() -> list[Path]:
    return sorted(
        p
        for p in DEPLOY.rglob("*")
        if p.is_file() and p not in LOCAL_SECRETS and "__pycache__" not in p.parts
    )


def _yaml_files() -> list[Path]:
    return [p for p in _deploy_files() if p.suffix in (".yaml", ".yml")]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in (p for p in _yaml_files() if p.parent == K8S):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def _k8s(kind: str, name: str) -> dict[str, Any]:
    found = [
        d
        for d in _k8s_docs()
        if d.get("kind") == kind and d.get("metadata", {}).get("name") == name
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _pod_specs(image: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment and Job; with `image`, only the pods
    whose containers all run that image."""
    for doc in _k8s_docs():
        if doc.get("kind") in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            if image is None or all(c["image"] == image for c in pod["containers"]):
                yield doc["metadata"]["name"], pod


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Resolve compose's ${VAR}, ${VAR:-default} and ${VAR:?error} the way
    `docker compose` would with deploy/.env copied from .env.example."""
    example = _env_example()

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in example:
            return example[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} has no value in .env.example and no default")

    return INTERPOLATION.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def _validate_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings built from exactly these AMEND_* variables, as a process would."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


def _cli_command(name: str) -> Any:
    commands: dict[str, Any] = getattr(typer.main.get_command(app), "commands", {})
    command = commands.get(name)
    assert command is not None, f"`amend {name}` is not a command of the CLI"
    return command


def _check_cli_args(args: list[str]) -> None:
    """`args` is a valid `amend` command line: a command, then options it has."""
    assert args, "no command"
    command = _cli_command(args[0])
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in args[1:]:
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in known, f"`amend {args[0]}` has no option {arg}"


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _docker(keyword: str) -> list[str]:
    return [rest for key, rest in _dockerfile() if key == keyword]


def _docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in _docker("ENV"):
        for token in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', rest):
            env[token[0]] = token[1].strip('"')
    return env


def _docker_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for rest in _docker("ARG"):
        name, _, default = rest.partition("=")
        args[name.strip()] = default.strip()
    return args


# -- every YAML parses -------------------------------------------------------------


def test_deploy_holds_the_expected_files() -> None:
    for path in (
        DOCKERFILE,
        COMPOSE,
        INIT_SQL,
        SETTINGS_MD,
        ENV_EXAMPLE,
        K8S / "configmap.yaml",
        K8S / "secret.template.yaml",
        K8S / "worker.yaml",
        K8S / "gateway.yaml",
        K8S / "grafana.yaml",
        K8S / "grafana-configmaps.yaml",
        GRAFANA_DATASOURCE,
        GRAFANA_PROVIDER,
        GRAFANA / "dashboards" / "amend.json",
    ):
        assert path.is_file(), f"missing {path.relative_to(ROOT)}"


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
        if path.parent == K8S:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path.name}: not a manifest"


# -- the settings reference --------------------------------------------------------


def _settings_table() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for line in SETTINGS_MD.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 5, f"settings.md: a row needs 5 cells: {line}"
        field = cells[0].strip("`")
        assert field not in rows, f"settings.md documents {field} twice"
        rows[field] = {
            "env": cells[1].strip("`"),
            "type": cells[2].strip("`"),
            "default": cells[3],
            "meaning": cells[4],
        }
    return rows


def _type_name(annotation: Any) -> str:
    return " | ".join("None" if t is type(None) else t.__name__ for t in _types(annotation))


def _default_text(default: Any) -> str:
    if isinstance(default, SecretStr):
        return default.get_secret_value()
    if isinstance(default, timedelta):
        seconds = default.total_seconds()
        return str(int(seconds)) if seconds.is_integer() else str(seconds)
    return str(default)


def test_settings_md_documents_every_field_and_no_other() -> None:
    documented = set(_settings_table())
    assert not set(FIELDS) - documented, f"settings.md lacks {sorted(set(FIELDS) - documented)}"
    assert not documented - set(FIELDS), (
        f"settings.md documents fields Settings lacks: {sorted(documented - set(FIELDS))}"
    )


def test_settings_md_rows_match_the_class() -> None:
    for name, row in _settings_table().items():
        field = FIELDS[name]
        assert row["env"] == f"AMEND_{name.upper()}", name
        assert row["type"] == _type_name(field.annotation), (
            f"{name}: settings.md says {row['type']}, Settings says {_type_name(field.annotation)}"
        )
        first = re.search(r"`([^`]*)`", row["default"])
        assert first, f"{name}: the default is not written as `value`"
        assert first.group(1) == _default_text(field.default), (
            f"{name}: settings.md default {first.group(1)!r}, "
            f"Settings default {_default_text(field.default)!r}"
        )
        assert len(row["meaning"]) > 10, f"{name}: say what it means"
        if name in SECRET_FIELDS:
            assert "secret" in row["meaning"].lower(), f"{name}: mark it as a secret"


def test_settings_md_names_only_real_variables() -> None:
    named = set(re.findall(r"\bAMEND_[A-Z0-9_]+\b", SETTINGS_MD.read_text()))
    assert named <= set(ENV_VARS), f"settings.md names unknown {sorted(named - set(ENV_VARS))}"


# -- AMEND_* variables everywhere in deploy/ ----------------------------------------------


@pytest.mark.parametrize("path", _deploy_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_amend_variable_is_a_settings_field(path: Path) -> None:
    used = set(re.findall(r"\bAMEND_[A-Z0-9_]+\b", path.read_text()))
    unknown = used - set(ENV_VARS)
    assert not unknown, f"{path.name} uses {sorted(unknown)}, which are not Settings fields"


# -- compose ---------------------------------------------------------------------------


def test_compose_has_the_stack() -> None:
    services = _compose()["services"]
    assert set(services) >= {"postgres", "temporal", "temporal-ui", "grafana", *APP_SERVICES}


def test_compose_postgres_hosts_temporal_and_the_ledger() -> None:
    postgres = _compose()["services"]["postgres"]
    assert str(postgres["image"]).startswith("postgres:16")
    mounts = [str(v) for v in postgres["volumes"]]
    init = [m for m in mounts if "/docker-entrypoint-initdb.d/" in m]
    assert len(init) == 1, "postgres-init.sql is not mounted into the init directory"
    source = init[0].split(":", 1)[0]
    assert (COMPOSE.parent / source).resolve() == INIT_SQL.resolve()
    sql = INIT_SQL.read_text()
    assert re.search(r"CREATE DATABASE amend\b", sql)
    assert re.search(r"CREATE ROLE amend\b", sql)
    assert re.search(r"CREATE ROLE temporal\b[^;]*\bCREATEDB\b", sql), (
        "auto-setup creates Temporal's databases, so its role needs CREATEDB"
    )
    # Passwords come from the environment (psql \getenv), never the file.
    for var in re.findall(r"\\getenv\s+\w+\s+(\w+)", sql):
        assert var in postgres["environment"], f"postgres does not get {var}"
    assert not re.search(r"PASSWORD\s+'", sql), "a literal password in postgres-init.sql"


def test_compose_runs_a_real_temporal_on_that_postgres() -> None:
    services = _compose()["services"]
    temporal = services["temporal"]
    env = temporal["environment"]
    assert str(temporal["image"]).startswith("temporalio/auto-setup:")
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] in services, "POSTGRES_SEEDS is not a compose service"
    assert str(env["DB_PORT"]) == "5432"
    assert re.search(rf"CREATE ROLE {env['POSTGRES_USER']}\b", INIT_SQL.read_text())
    ui = services["temporal-ui"]
    assert str(ui["image"]).startswith("temporalio/ui:")
    host, port = ui["environment"]["TEMPORAL_ADDRESS"].rsplit(":", 1)
    assert host in services and port == "7233"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_app_services_run_amend(name: str) -> None:
    service = _compose()["services"][name]
    build = service["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT, "the image builds from the repository root"
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    _check_cli_args(service["command"])
    assert service["command"][0] == name


def test_compose_migrate_seeds_once() -> None:
    migrate = _compose()["services"]["migrate"]
    assert migrate["command"] == ["migrate", "--seed"]
    assert migrate["restart"] == "no"


def test_compose_depends_on_and_healthchecks() -> None:
    services = _compose()["services"]
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert spec["condition"] in conditions
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    for name in ("postgres", "temporal", "worker", "gateway", "grafana"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name in ("worker", "gateway"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["temporal"]["condition"] == "service_healthy"
        test = services[name]["healthcheck"]["test"]
        assert test[-2:] == ["/opt/amend/healthcheck.py", name]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_amend_settings_are_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    services = _compose()["services"]
    env = {k: str(v) for k, v in services[name]["environment"].items()}
    assert set(env) <= set(ENV_VARS)
    settings = _validate_settings({k: _interpolate(v) for k, v in env.items()}, monkeypatch)
    host, port = settings.temporal_address.rsplit(":", 1)
    assert host in services and port == "7233"
    assert settings.database_url is not None
    url = urlsplit(settings.database_url.get_secret_value())
    assert url.hostname in services and url.port == 5432 and url.path == "/amend"
    assert re.search(rf"CREATE ROLE {url.username}\b", INIT_SQL.read_text())
    assert settings.gateway_host == "0.0.0.0"


def test_compose_gateway_publishes_its_port() -> None:
    gateway = _compose()["services"]["gateway"]
    port = str(gateway["environment"]["AMEND_GATEWAY_PORT"])
    published = [str(p).rsplit(":", 1)[-1] for p in gateway["ports"]]
    assert published == [port]
    assert port in " ".join(_docker("EXPOSE")).split()


SECRETISH = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|API_KEY")
FROM_ENV = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*:\?[^}]*\}$")


def test_compose_secrets_come_from_the_environment() -> None:
    for name, service in _compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if key in SECRET_ENV_VARS - {"AMEND_DATABASE_URL"} or SECRETISH.search(key):
                assert FROM_ENV.match(str(value)), (
                    f"{name}: {key} must be ${{VAR:?...}} from deploy/.env, not {value!r}"
                )
            if key == "AMEND_DATABASE_URL":
                credentials = re.match(r"^postgresql://[^:/@]+:(\$\{[^}]*\})@", str(value))
                assert credentials and FROM_ENV.match(credentials.group(1)), (
                    f"{name}: the ledger password must be ${{VAR:?...}}, not inline"
                )


def test_compose_required_variables_name_deploy_env() -> None:
    """A secret is never optional, and compose's message for a missing variable
    says where to set it."""
    required = set()
    for match in INTERPOLATION.finditer(COMPOSE.read_text().replace("$$", "")):
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if SECRETISH.search(name):
            assert op == ":?", f"${{{name}}} is a secret: write ${{{name}:?...}}"
        if op == ":?":
            assert arg == f"set {name} in deploy/.env", f"${{{name}:?{arg}}}"
            required.add(name)
    assert {"GRAFANA_DB_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= required


def test_compose_host_ports_are_bound_to_localhost() -> None:
    published = 0
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to every host"
            published += 1
    assert published


def test_compose_interpolations_are_in_env_example() -> None:
    text = COMPOSE.read_text().replace("$$", "")
    used = {m.group(1) for m in INTERPOLATION.finditer(text)}
    example = set(_env_example())
    assert not used - example, f".env.example lacks {sorted(used - example)}"
    assert not example - used, f".env.example sets unused {sorted(example - used)}"


def test_env_example_is_git_ignored_only_when_filled_in() -> None:
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert ".env" in ignored and "kubernetes/secret.yaml" in ignored
    for key, value in _env_example().items():
        if key in SECRET_ENV_VARS or re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", key):
            assert PLACEHOLDER in value, f".env.example: {key} must be a {PLACEHOLDER}"


# -- Kubernetes ---------------------------------------------------------------------------


def test_kustomization_lists_the_manifests_but_not_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), f"kustomization lists missing {resource}"
    manifests = {p.name for p in _yaml_files() if p.parent == K8S} - {"kustomization.yaml"}
    assert "secret.template.yaml" not in resources
    assert set(resources) == manifests - {"secret.template.yaml"}
    images = {i["name"] for i in kustomization["images"]}
    for name, pod in _pod_specs():
        for container in pod["containers"]:
            assert container["image"] in images, f"{name}: image {container['image']} not mapped"


def test_configmap_holds_only_non_secret_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _k8s("ConfigMap", "amend-config")["data"]
    assert set(data) <= set(ENV_VARS), f"unknown keys {sorted(set(data) - set(ENV_VARS))}"
    assert not set(data) & SECRET_ENV_VARS, "a secret is in the ConfigMap"
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    settings = _validate_settings(data, monkeypatch)
    assert settings.gateway_host == "0.0.0.0"
    assert settings.temporal_address.endswith(":7233")


def test_secret_template_is_placeholders_only() -> None:
    text = (K8S / "secret.template.yaml").read_text()
    assert "TEMPLATE" in text.splitlines()[0]
    secret = _k8s("Secret", "amend-secrets")
    data = secret["stringData"]
    assert set(data) == {
        "AMEND_DATABASE_URL",
        "AMEND_MODEL_API_KEY",
        "AMEND_SLACK_BOT_TOKEN",
        "AMEND_SLACK_SIGNING_SECRET",
    }
    assert set(data) <= SECRET_ENV_VARS
    for key, value in data.items():
        assert value == PLACEHOLDER, f"{key} is not the placeholder"
    assert "data" not in secret
    template = [d for d in yaml.safe_load_all(text) if d is not None and d.get("kind") == "Secret"]
    assert len(template) >= 2, "the template holds amend's and Grafana's Secrets"
    for doc in template:
        assert "data" not in doc, doc["metadata"]["name"]
        for key, value in doc["stringData"].items():
            assert value == PLACEHOLDER, f"{doc['metadata']['name']}: {key} is not the placeholder"


def test_pods_use_real_settings_and_known_config() -> None:
    config = _k8s("ConfigMap", "amend-config")["metadata"]["name"]
    secret = _k8s("Secret", "amend-secrets")
    pods = dict(_pod_specs(AMEND_IMAGE))
    assert {"amend-migrate", "amend-worker", "amend-gateway"} <= set(pods)
    for name, pod in pods.items():
        for container in pod["containers"]:
            _check_cli_args(container["args"])
            assert "command" not in container, f"{name}: keep the image's entrypoint"
            for source in container.get("envFrom", []):
                assert source.get("configMapRef", {}).get("name") == config, name
            for var in container.get("env", []):
                assert var["name"] in ENV_VARS, f"{name}: {var['name']} is not a setting"
                ref = var["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in secret["stringData"], f"{name}: no key {ref['key']}"
                assert ref["key"] == var["name"]


def test_worker_and_gateway_deployments() -> None:
    worker = _k8s("Deployment", "amend-worker")
    gateway = _k8s("Deployment", "amend-gateway")
    assert worker["spec"]["replicas"] == 2
    for deployment, command in ((worker, "worker"), (gateway, "gateway")):
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        (container,) = spec["template"]["spec"]["containers"]
        assert container["args"] == [command]
    job = _k8s("Job", "amend-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate", "--seed"]


def test_gateway_probes_and_service() -> None:
    port = int(_k8s("ConfigMap", "amend-config")["data"]["AMEND_GATEWAY_PORT"])
    deployment = _k8s("Deployment", "amend-gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [port]
    # Liveness asks only that the process answers; readiness asks its dependencies.
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == port, probe
    service = _k8s("Service", "amend-gateway")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert ports.get(service_port["targetPort"], service_port["targetPort"]) == port


def test_worker_probes_its_health_endpoint() -> None:
    bind = _docker_env()["AMEND_WORKER_HEALTH_BIND"]
    Settings(_env_file=None, worker_health_bind=bind)  # a valid value of the setting
    port = int(bind.rsplit(":", 1)[1])
    assert str(port) in " ".join(_docker("EXPOSE")).split()
    worker = _k8s("Deployment", "amend-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == port, probe


def test_graceful_shutdown_fits_inside_the_time_before_a_kill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kubernetes and compose SIGKILL a container that outlives its grace
    period: each process's own graceful setting must end before that."""
    config = {k: v for k, v in _k8s("ConfigMap", "amend-config")["data"].items()}
    settings = _validate_settings(config, monkeypatch)
    for name, grace in (
        ("amend-worker", settings.worker_graceful_shutdown_s),
        ("amend-gateway", settings.gateway_graceful_shutdown_s),
    ):
        pod = _k8s("Deployment", name)["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > grace, name
    # compose sets neither: the defaults apply.
    services = _compose()["services"]
    for name, grace in (
        ("worker", FIELDS["worker_graceful_shutdown_s"].default),
        ("gateway", FIELDS["gateway_graceful_shutdown_s"].default),
    ):
        period = str(services[name]["stop_grace_period"])
        assert period.endswith("s") and float(period[:-1]) > grace, name


def test_pods_run_as_the_image_user_and_share_artifacts() -> None:
    uid = int(_docker("USER")[-1].split(":")[0])
    data_dir = _k8s("ConfigMap", "amend-config")["data"]["AMEND_DATA_DIR"]
    claims = {d["metadata"]["name"] for d in _k8s_docs() if d["kind"] == "PersistentVolumeClaim"}
    for name, pod in _pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        if name in dict(_pod_specs(AMEND_IMAGE)):
            assert pod["securityContext"]["runAsUser"] == uid, name
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
    worker = _k8s("Deployment", "amend-worker")["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts[data_dir]], "workers must share data_dir"
    (claim,) = [d for d in _k8s_docs() if d["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


# -- Grafana (deploy/grafana/) in compose and Kubernetes -----------------------------------

GRAFANA_IMAGE = re.compile(r"^(grafana/grafana(?:-oss)?):(\d+\.\d+\.\d+)$")
GRAFANA_PORT = 3000


def _datasource() -> dict[str, Any]:
    [source] = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"]
    assert isinstance(source, dict)
    return source


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _datasource_variables() -> set[str]:
    """The environment variables Grafana expands in the provisioned data source
    ($VAR and ${VAR} in its values; comments do not count)."""
    found = {
        match.group(1) or match.group(2)
        for value in _strings(_datasource())
        for match in re.finditer(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)", value)
    }
    assert found, f"{GRAFANA_DATASOURCE.name} reads no variable"
    return found


def _variable(value: str) -> str:
    """The one variable a data source value is made of."""
    match = re.fullmatch(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)", value)
    assert match, f"{value!r} is not one environment variable"
    return match.group(1) or match.group(2)


def _provider_path() -> str:
    [provider] = yaml.safe_load(GRAFANA_PROVIDER.read_text())["providers"]
    assert provider["type"] == "file"
    path: str = provider["options"]["path"]
    return path


def _compose_mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """mount path -> (source, options) of a service's volumes; a bind mount's
    source resolved against deploy/, a named volume's left as its name."""
    mounts: dict[str, tuple[str, str]] = {}
    for entry in service.get("volumes", []):
        source, target, *options = str(entry).split(":")
        if source.startswith((".", "/")):
            source = str((COMPOSE.parent / source).resolve())
        mounts[target] = (source, ",".join(options))
    return mounts


def _init_sql() -> str:
    """postgres-init.sql without its comments, all whitespace one space."""
    lines = [line.split("--", 1)[0] for line in INIT_SQL.read_text().splitlines()]
    return re.sub(r"\s+", " ", " ".join(lines))


def _role_password_variable(role: str) -> str:
    """The postgres container's variable postgres-init.sql takes `role`'s password from."""
    sql = _init_sql()
    created = re.search(rf"CREATE ROLE {role}\b[^;]*\bPASSWORD :'(\w+)'", sql)
    assert created, f"postgres-init.sql does not create role {role} with a password"
    getenv = re.search(rf"\\getenv {created.group(1)} (\w+)", sql)
    assert getenv, f"postgres-init.sql does not \\getenv the password of {role}"
    return getenv.group(1)


def _ledger_url() -> Any:
    """The ledger URL the migration connects with, as compose gives it."""
    env = _compose()["services"]["migrate"]["environment"]
    return urlsplit(_interpolate(str(env["AMEND_DATABASE_URL"])))


def test_compose_grafana_mounts_what_its_provisioning_reads() -> None:
    compose = _compose()
    grafana = compose["services"]["grafana"]
    assert GRAFANA_IMAGE.match(str(grafana["image"])), (
        f"pin an official Grafana image version, not {grafana['image']!r}"
    )
    mounts = _compose_mounts(grafana)
    provisioning = GRAFANA / "provisioning"
    assert mounts.get("/etc/grafana/provisioning") == (str(provisioning.resolve()), "ro")
    assert (provisioning / "datasources").is_dir() and (provisioning / "dashboards").is_dir()
    dashboards = GRAFANA / "dashboards"
    assert mounts.get(_provider_path()) == (str(dashboards.resolve()), "ro"), (
        f"deploy/grafana/dashboards is not mounted at {_provider_path()}, where "
        f"{GRAFANA_PROVIDER.name} loads dashboards from"
    )
    assert list(dashboards.glob("*.json")), "no dashboard to load"
    data, _ = mounts["/var/lib/grafana"]
    assert data in compose["volumes"], "Grafana's data is not a named volume"


def test_compose_grafana_sets_every_variable_its_data_source_reads() -> None:
    services = _compose()["services"]
    env = {k: str(v) for k, v in services["grafana"]["environment"].items()}
    missing = _datasource_variables() - set(env)
    assert not missing, (
        f"grafana's environment lacks {sorted(missing)}, read by {GRAFANA_DATASOURCE.name}"
    )
    value = {k: _interpolate(v) for k, v in env.items()}
    source = _datasource()
    host, port = value[_variable(source["url"])].rsplit(":", 1)
    assert host in services and str(services[host]["image"]).startswith("postgres:")
    assert port == "5432"
    assert source["jsonData"]["database"] == _ledger_url().path.lstrip("/")
    assert value[_variable(source["jsonData"]["sslmode"])] in {
        "disable",
        "require",
        "verify-ca",
        "verify-full",
    }
    # The password is the one postgres-init.sql gives that user, from deploy/.env.
    user = value[_variable(source["user"])]
    password = env[_variable(source["secureJsonData"]["password"])]
    assert FROM_ENV.match(password), f"the ledger password must be ${{VAR:?...}}, not {password}"
    postgres = services["postgres"]["environment"]
    assert password == str(postgres[_role_password_variable(user)]), (
        f"grafana's password for {user} is not the one postgres-init.sql sets"
    )


def test_compose_grafana_is_private_and_starts_after_the_migration() -> None:
    grafana = _compose()["services"]["grafana"]
    env = {k: str(v) for k, v in grafana["environment"].items()}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert FROM_ENV.match(env["GF_SECURITY_ADMIN_PASSWORD"])
    # The dashboards read the dash_* views the migration creates.
    assert grafana["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    (published,) = [str(p) for p in grafana["ports"]]
    assert published.startswith("127.0.0.1:")
    assert published.rsplit(":", 1)[-1] == str(GRAFANA_PORT)
    assert _interpolate(published).split(":")[1].isdigit()
    test = " ".join(grafana["healthcheck"]["test"])
    assert f"127.0.0.1:{GRAFANA_PORT}/api/health" in test


def test_init_sql_checks_every_password_it_reads() -> None:
    sql = _init_sql()
    variables = re.findall(r"\\getenv (\w+) \w+", sql)
    assert len(variables) >= 3
    check = re.search(r"SELECT ([^;]*?) AS passwords_set \\gset", sql)
    assert check, "postgres-init.sql does not check its passwords"
    for var in variables:
        # Unset, \getenv leaves the variable alone: start it empty, then check it.
        assert f"\\set {var} ''" in sql, f"{var} is not reset before \\getenv"
        assert f":'{var}' <> ''" in check.group(1), f"{var} is not checked non-empty"
    assert re.search(r"\\if :passwords_set \\else .*? SELECT 1/0; \\endif", sql)


def test_init_sql_creates_a_read_only_grafana_role() -> None:
    user = _compose()["services"]["grafana"]["environment"]["GRAFANA_LEDGER_USER"]
    assert user == "grafana_reader"
    sql = _init_sql()
    (create,) = re.findall(rf"CREATE ROLE {user}\b[^;]*;", sql)
    assert " LOGIN " in create
    assert not re.search(r"\b(SUPERUSER|CREATEDB|CREATEROLE|REPLICATION|BYPASSRLS)\b", create)
    assert re.search(rf"ALTER ROLE {user} SET default_transaction_read_only = on;", sql)
    for grant in re.findall(rf"GRANT ([^;]*?) TO {user}\b", sql):
        privileges, on, _ = grant.partition(" ON ")
        assert on, f"{user} is made a member of a role: GRANT {grant}"
        assert set(re.split(r",\s*", privileges)) <= {"CONNECT", "USAGE", "SELECT"}, grant
    ledger = _ledger_url()
    database, owner = ledger.path.lstrip("/"), ledger.username
    assert re.search(rf"CREATE DATABASE {database} OWNER {owner};", sql)
    assert re.search(rf"GRANT CONNECT ON DATABASE {database} TO {user};", sql)
    _, connected, in_ledger = sql.partition(f"\\connect {database} ")
    assert connected, f"postgres-init.sql does not \\connect {database}"
    # The migration creates the tables and dash_* views later, as the owner.
    assert re.search(rf"GRANT USAGE ON SCHEMA public TO {user};", in_ledger)
    assert re.search(
        rf"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        rf"GRANT SELECT ON TABLES TO {user};",
        in_ledger,
    ), f"tables {owner} creates later are not readable by {user}"


def _grafana_pod() -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = _k8s("Deployment", "amend-grafana")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_kubernetes_grafana_runs_the_compose_version_with_secrets_by_reference() -> None:
    compose = _compose()["services"]["grafana"]
    pod, container = _grafana_pod()
    match = GRAFANA_IMAGE.match(str(compose["image"]))
    assert match
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    images = {i["name"]: i for i in kustomization["images"]}
    assert container["image"] == match.group(1)
    assert images[match.group(1)]["newTag"] == match.group(2), "not the version compose runs"
    env = {var["name"]: var for var in container["env"]}
    missing = _datasource_variables() - set(env)
    assert not missing, f"amend-grafana lacks {sorted(missing)}"
    secret = _k8s("Secret", "amend-grafana-secrets")
    secret_vars = {name for name in env if SECRETISH.search(name)}
    assert secret_vars >= {
        "GF_SECURITY_ADMIN_PASSWORD",
        _variable(_datasource()["secureJsonData"]["password"]),
    }
    for name in secret_vars:
        assert "value" not in env[name], f"amend-grafana: {name} written in the manifest"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] == name
    assert set(secret["stringData"]) == secret_vars, "the Secret holds what Grafana reads"
    user = _variable(_datasource()["user"])
    assert env[user]["value"] == compose["environment"][user]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_grafana_mounts_the_files_of_deploy_grafana() -> None:
    pod, container = _grafana_pod()
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def mounted(path: str) -> dict[str, str]:
        """file path -> text, of the ConfigMap mounted at `path`."""
        assert path in mounts, f"amend-grafana mounts nothing at {path}"
        assert mounts[path].get("readOnly") is True, path
        volume = volumes[mounts[path]["name"]]["configMap"]
        data: dict[str, str] = _k8s("ConfigMap", volume["name"])["data"]
        items = volume.get("items") or [{"key": key, "path": key} for key in data]
        return {item["path"]: data[item["key"]] for item in items}

    provisioning = GRAFANA / "provisioning"
    files = {str(p.relative_to(provisioning)): p for p in provisioning.rglob("*") if p.is_file()}
    copies = mounted("/etc/grafana/provisioning")
    assert set(copies) == set(files)
    for name, path in files.items():
        assert copies[name] == path.read_text(), (
            f"grafana-configmaps.yaml: {name} differs from {path.relative_to(DEPLOY)}"
        )
    dashboards = {p.name: p for p in (GRAFANA / "dashboards").iterdir() if p.is_file()}
    copies = mounted(_provider_path())
    assert set(copies) == set(dashboards)
    for name, path in dashboards.items():
        assert json.loads(copies[name]) == json.loads(path.read_text()), (
            f"grafana-configmaps.yaml: {name} differs from {path.relative_to(DEPLOY)}"
        )
    assert "emptyDir" in volumes[mounts["/var/lib/grafana"]["name"]]


def test_kubernetes_grafana_probes_and_service() -> None:
    _, container = _grafana_pod()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [GRAFANA_PORT]
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/api/health", probe
        assert ports.get(get["port"], get["port"]) == GRAFANA_PORT, probe
    labels = _k8s("Deployment", "amend-grafana")["spec"]["template"]["metadata"]["labels"]
    service = _k8s("Service", "amend-grafana")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP", "keep Grafana private"
    (service_port,) = service["spec"]["ports"]
    assert ports.get(service_port["targetPort"], service_port["targetPort"]) == GRAFANA_PORT


# -- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_entrypoint_is_amend_and_runs_a_worker() -> None:
    (entrypoint,) = _docker("ENTRYPOINT")
    assert json.loads(entrypoint) == ["amend"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "amend" in pyproject["project"]["scripts"]
    (cmd,) = _docker("CMD")
    assert json.loads(cmd) == ["worker"]
    _check_cli_args(json.loads(cmd))


def test_dockerfile_base_user_and_port() -> None:
    arg_defaults = _docker_args()

    def resolve(match: re.Match[str]) -> str:
        return arg_defaults[match.group(1)]

    images = [re.sub(r"\$\{(\w+)\}", resolve, rest.split()[0]) for rest in _docker("FROM")]
    assert images and all(image == "python:3.11-slim" for image in images)
    user = _docker("USER")[-1].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert _docker("EXPOSE") == ["8000 8001"]
    env = _docker_env()
    assert env["AMEND_GATEWAY_PORT"] == "8000" == str(FIELDS["gateway_port"].default)
    assert env["AMEND_GATEWAY_HOST"] == "0.0.0.0"


def test_dockerfile_installs_the_lock_with_hashes_then_the_project_alone() -> None:
    runs = _docker("RUN")
    [locked] = [i for i, r in enumerate(runs) if "-r requirements.lock" in r]
    assert "--require-hashes" in runs[locked]
    [project] = [i for i, r in enumerate(runs) if re.search(r"pip install --no-deps \.(\s|$)", r)]
    assert locked < project
    assert "deploy/requirements.lock ./" in _docker("COPY")


def _requirement_names(requirements: list[str]) -> set[str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _lock() -> dict[str, str]:
    """name -> pinned version of deploy/requirements.lock; every pin has hashes."""
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    text = (DEPLOY / "requirements.lock").read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = block.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        name, _, version = head.split(";", 1)[0].strip().partition("==")
        assert version, f"not pinned: {head}"
        assert "--hash=sha256:" in block, f"no hash: {head}"
        pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_runtime_dependency_within_its_range() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in the lock: run `make lock`"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]}: `make lock`"
    # The dev stack's servers stay out of the image.
    dev_only = _requirement_names(project["optional-dependencies"]["dev"])
    assert not dev_only & set(pins), sorted(dev_only & set(pins))


def test_dockerfile_bakes_no_secret() -> None:
    env = _docker_env()
    assert set(k for k in env if k.startswith("AMEND_")) <= set(ENV_VARS) - SECRET_ENV_VARS
    assert not set(_docker_args()) & (SECRET_ENV_VARS | {"PASSWORD", "TOKEN"})
    for rest in _docker("COPY"):
        sources = rest.split()[:-1]
        assert "." not in sources and "./" not in sources, "COPY . would take a local .env"
        assert not any(".env" in s for s in sources)


def _installed_folders() -> set[str]:
    """The top-level folders pyproject's package discovery installs."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}


def test_every_folder_of_python_code_is_installed_with_its_subpackages() -> None:
    from setuptools import find_namespace_packages

    top = _installed_folders()
    found = set(find_namespace_packages(str(ROOT), include=[f"{t}*" for t in top]))
    for folder in top:
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in source.parts:
                continue
            package = ".".join(source.parent.relative_to(ROOT).parts)
            assert package in found, f"{source.relative_to(ROOT)} would not be installed"
    assert {"worker.cli", "standins.model", "standins.slack"} <= found


def test_dockerfile_copies_every_package() -> None:
    # A subpackage ("standins.model") travels in its top-level folder.
    packages = _installed_folders()
    copied = {
        s.rstrip("/")
        for rest in _docker("COPY")
        if not rest.startswith("--from")
        for s in rest.split()[:-1]
    }
    assert set(packages) <= copied, f"not copied: {sorted(set(packages) - copied)}"
    allowed = {
        line.strip("!/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert (
        set(packages)
        | {
            "pyproject.toml",
            "deploy/healthcheck.py",
            "deploy/requirements.lock",
        }
        <= allowed
    )
    assert "deploy/healthcheck.py" in copied
    assert (DEPLOY / "healthcheck.py").is_file()


# -- no secrets in deploy/ -------------------------------------------------------------------

SLACK_TOKEN = re.compile(r"xox[abeoprs]-[A-Za-z0-9_-]+")
API_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s@/]+)@")
ASSIGNED = re.compile(
    r"(?<!\{)\b[A-Z][A-Z0-9]*_[A-Z0-9_]*?(?:PASSWORD|PWD|SECRET|TOKEN|API_KEY)\b\"?\s*[:=]\s*(\S+)"
)
DEV_SIGNING_SECRET = SecretStr.get_secret_value(FIELDS["slack_signing_secret"].default)


def _is_placeholder(value: str) -> bool:
    value = value.strip("'\"")
    return (
        PLACEHOLDER in value
        or value.startswith("${")
        or value.startswith("$")
        or re.fullmatch(r"<[^>]+>", value) is not None
    )


def secret_literals(text: str) -> list[str]:
    """What in `text` looks like a real secret rather than a marked placeholder."""
    found = [m.group(0) for m in SLACK_TOKEN.finditer(text) if PLACEHOLDER not in m.group(0)]
    found += API_KEY.findall(text) + PRIVATE_KEY.findall(text)
    found += [m.group(0) for m in URL_PASSWORD.finditer(text) if not _is_placeholder(m.group(1))]
    found += [m.group(0) for m in ASSIGNED.finditer(text) if not _is_placeholder(m.group(1))]
    return found


def test_the_secret_scanner_catches_secrets_and_spares_placeholders() -> None:
    token = "xox" + "b-" + "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
    assert secret_literals(f"AMEND_SLACK_BOT_TOKEN: {token}")
    assert secret_literals("AMEND_SLACK_SIGNING_SECRET=8f14e45fceea167a5a36dedd4bea2543")
    assert secret_literals('  AMEND_MODEL_API_KEY: "' + "sk-" + "a" * 40 + '"')
    assert secret_literals("url: postgresql://amend:hunter2@db:5432/amend")
    assert not secret_literals("AMEND_SLACK_BOT_TOKEN=xoxb-REPLACE_ME")
    assert not secret_literals("AMEND_SLACK_SIGNING_SECRET: ${AMEND_SLACK_SIGNING_SECRET:?set}")
    assert not secret_literals("postgresql://amend:${LEDGER_DB_PASSWORD:?x}@postgres:5432/amend")
    assert not secret_literals("# postgresql://<user>:<password>@<host>:5432/amend")


@pytest.mark.parametrize("path", _deploy_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_no_secret_literal_in_deploy(path: Path) -> None:
    text = path.read_text()
    assert not secret_literals(text), f"{path.name}: {secret_literals(text)}"
    if path != SETTINGS_MD:  # settings.md documents the dev default, as a dev default
        assert DEV_SIGNING_SECRET not in text, f"{path.name} uses the dev signing secret"
