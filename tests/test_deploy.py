"""The Kubernetes manifests of deploy/kubernetes/, checked against the app.

No cluster runs here: the manifests are loaded as YAML and every value that
must agree with the image, the routes or the settings is compared with them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.app import create_app
from api.launcher import Launcher
from api.record import BotRecord
from api.settings import ControlPlaneSettings
from callbot.cli import LOG_LEVEL_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
POD_IP = "10.42.0.17"

# Settings the deployment cannot leave at their defaults: the default data
# dir is under a home the image's user lacks, loopback ICE and server hosts
# reach nothing outside the pod, and the timeouts size the grace period.
REQUIRED = {
    "CALLBOT_HOST",
    "CALLBOT_PORT",
    "CALLBOT_DATA_DIR",
    "CALLBOT_ICE_ADDRESSES",
    "CALLBOT_SERVER_HOSTS",
    "CALLBOT_DRAIN_TIMEOUT",
    "CALLBOT_LEAVE_TIMEOUT",
    "CALLBOT_KEEP_BOTS_ON_SHUTDOWN",
    "CALLBOT_MAX_BOTS",
    "CALLBOT_WEBHOOK_SECRET",
    "CALLBOT_DATABASE_URL",
}


class IdleLauncher(Launcher):
    """Starts nothing; the probes only ask whether it is ready."""

    @property
    def ready(self) -> bool:
        return True

    async def start(self, record: BotRecord) -> None:
        raise AssertionError("no bot is started here")

    async def leave(self, record: BotRecord) -> None:
        raise AssertionError("no bot is started here")

    async def close(self) -> None:
        pass


def load_manifests() -> dict[str, dict[str, Any]]:
    """Every resource in deploy/kubernetes/ by kind (one of each)."""
    resources: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in resources, f"two {doc['kind']} in {path}"
            resources[doc["kind"]] = doc
    return resources


RESOURCES = load_manifests()
DEPLOYMENT = RESOURCES["Deployment"]
POD = DEPLOYMENT["spec"]["template"]
CONTAINER = POD["spec"]["containers"][0]
CONFIG = RESOURCES["ConfigMap"]["data"]
SECRET = RESOURCES["Secret"]["stringData"]


def dockerfile_uid() -> int:
    match = re.search(r"useradd\b[^\n]*--uid (\d+)", DOCKERFILE)
    assert match, "the Dockerfile creates no user with a fixed uid"
    return int(match.group(1))


def container_env() -> dict[str, str]:
    """The container's environment as Kubernetes builds it (envFrom, then env)."""
    env: dict[str, str] = {}
    for source in CONTAINER["envFrom"]:
        if "configMapRef" in source:
            assert (
                source["configMapRef"]["name"]
                == RESOURCES["ConfigMap"]["metadata"]["name"]
            )
            env.update(CONFIG)
        else:
            assert (
                source["secretRef"]["name"] == RESOURCES["Secret"]["metadata"]["name"]
            )
            env.update(SECRET)
    for var in CONTAINER["env"]:
        if "valueFrom" in var:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            env[var["name"]] = POD_IP
        else:
            # $(NAME) expands only variables defined before it.
            env[var["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"]
            )
    return env


def named_port(name: int | str) -> int:
    if isinstance(name, int):
        return name
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    return ports[name]


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> ControlPlaneSettings:
    """What `callbot serve` in the pod reads from its environment."""
    for name in [n for n in os.environ if n.startswith("CALLBOT_")]:
        monkeypatch.delenv(name)
    for name, value in container_env().items():
        monkeypatch.setenv(name, value)
    return ControlPlaneSettings()


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = ControlPlaneSettings(data_dir=tmp_path, webhook_secret="test")
    app = create_app(IdleLauncher(), settings=settings)
    async with app.router.lifespan_context(app):
        yield app


def test_kustomization_lists_every_manifest_in_one_namespace() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert set(RESOURCES) == {
        "Kustomization",
        "Namespace",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
    }
    namespace = RESOURCES["Namespace"]["metadata"]["name"]
    for kind, doc in RESOURCES.items():
        if kind not in {"Kustomization", "Namespace"}:
            assert doc["metadata"]["namespace"] == namespace, kind


def test_image_is_the_dockerfiles_documented_tag() -> None:
    match = re.search(r"docker build -t (\S+) \.", DOCKERFILE)
    assert match, "the Dockerfile documents no tag"
    assert CONTAINER["image"] == match.group(1)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert CONTAINER["image"] == f"callbot:{version}"


def test_container_port_is_the_images_and_the_settings(
    settings: ControlPlaneSettings,
) -> None:
    exposed = re.search(r"^EXPOSE (\d+)$", DOCKERFILE, re.M)
    command = re.search(r'^CMD \[.*"--port", "(\d+)"', DOCKERFILE, re.M)
    assert exposed and command
    port = named_port("http")
    assert port == int(exposed.group(1)) == int(command.group(1)) == settings.port
    assert port == 8080
    assert settings.host == "0.0.0.0"
    service = RESOURCES["Service"]["spec"]
    assert named_port(service["ports"][0]["targetPort"]) == port
    labels = POD["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= labels.items()


async def test_probe_and_scrape_paths_are_routes_that_answer(app: FastAPI) -> None:
    routes = {
        r.path for r in app.routes if isinstance(r, APIRoute) and "GET" in r.methods
    }
    probes = {
        name: CONTAINER[name]["httpGet"]
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    annotations = POD["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == named_port("http")
    paths = [p["path"] for p in probes.values()] + [annotations["prometheus.io/path"]]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as c:
        for path in paths:
            assert path in routes
            # No key: probes and the scraper send none.
            assert (await c.get(path)).status_code == 200, path
    for probe in probes.values():
        assert named_port(probe["port"]) == 8080


def test_every_callbot_variable_is_a_setting_and_the_required_are_set() -> None:
    known = {f"CALLBOT_{name.upper()}" for name in ControlPlaneSettings.model_fields}
    known.add(LOG_LEVEL_VARIABLE)
    names = {n for n in container_env() if n.startswith("CALLBOT_")}
    assert names - known == set()
    assert REQUIRED - names == set()
    assert set(SECRET) == {"CALLBOT_WEBHOOK_SECRET", "CALLBOT_DATABASE_URL"}


def test_settings_parse_as_the_pod_runs_them(settings: ControlPlaneSettings) -> None:
    mount = {m["name"]: m["mountPath"] for m in CONTAINER["volumeMounts"]}
    assert settings.data_dir == Path(mount["data"])
    assert settings.ice_addresses == [POD_IP]
    assert settings.server_hosts and "127.0.0.1" not in settings.server_hosts
    # The keepers end with the container: bots must leave on SIGTERM.
    assert settings.keep_bots_on_shutdown is False
    assert settings.resolved_database_url().startswith("postgresql+psycopg://")
    assert settings.webhook_secret


def test_secret_is_a_marked_template() -> None:
    for name, value in SECRET.items():
        assert "CHANGE-ME" in value, name
    assert "TEMPLATE" in (MANIFESTS / "secret.yaml").read_text()


def test_data_dir_is_one_persistent_volume_of_one_pod() -> None:
    volumes = {v["name"]: v for v in POD["spec"]["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    pvc = RESOURCES["PersistentVolumeClaim"]
    assert claim == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert CONFIG["CALLBOT_DATA_DIR"] == CONTAINER["volumeMounts"][0]["mountPath"]
    # One control plane owns a data dir: never two pods on it, not even
    # during an update.
    assert DEPLOYMENT["spec"]["replicas"] == 1
    assert DEPLOYMENT["spec"]["strategy"]["type"] == "Recreate"


def test_grace_period_outlasts_drain_and_leave(settings: ControlPlaneSettings) -> None:
    grace = POD["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.drain_timeout + settings.leave_timeout


def test_runs_as_the_images_user() -> None:
    security = POD["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == dockerfile_uid() == 10001
    assert security["fsGroup"] == security["runAsGroup"]
    assert re.search(r"^USER callbot$", DOCKERFILE, re.M)
    assert CONTAINER["securityContext"]["allowPrivilegeEscalation"] is False


def test_no_service_links_shadow_the_settings() -> None:
    # A Service "callbot" would inject CALLBOT_PORT=tcp://<ip>:<port>.
    assert RESOURCES["Service"]["metadata"]["name"].upper() == "CALLBOT"
    assert POD["spec"]["enableServiceLinks"] is False


def test_cpu_limit_fits_two_to_three_bots_per_core(
    settings: ControlPlaneSettings,
) -> None:
    cpu = float(CONTAINER["resources"]["limits"]["cpu"])
    assert 2 * cpu <= settings.max_bots <= 3 * cpu
    requests = CONTAINER["resources"]["requests"]
    assert float(requests["cpu"]) <= cpu
