"""The Kubernetes manifests of deploy/kubernetes/, checked against the app.

No cluster runs here: the manifests are loaded as YAML and every value that
must agree with the image, the routes or the settings is compared with them.
"""

from __future__ import annotations

import json
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


# deploy/kuberay/: the same control plane with its bots as Ray actors on a
# KubeRay cluster, checked against the app, the image and the ray pin.

KUBERAY = ROOT / "deploy" / "kuberay"
# One bot with media flowing (benchmarks): about 155 MiB RSS, a quarter core.
BOT_RSS_MIB = 155
BOT_CORES = 0.25
GCS_PORT = 6379


def load_kuberay() -> dict[str, dict[str, Any]]:
    """Every resource in deploy/kuberay/ (patches included) by file name."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERAY.glob("*.yaml")):
        loaded = list(yaml.safe_load_all(path.read_text()))
        assert len(loaded) == 1, f"one resource per file: {path}"
        docs[path.name] = loaded[0]
    return docs


KUBERAY_DOCS = load_kuberay()
KUSTOMIZATION = KUBERAY_DOCS["kustomization.yaml"]
RAY_CLUSTER = next(d for d in KUBERAY_DOCS.values() if d["kind"] == "RayCluster")
HEAD = RAY_CLUSTER["spec"]["headGroupSpec"]
WORKER_GROUPS = RAY_CLUSTER["spec"]["workerGroupSpecs"]
RAY_GROUPS = [HEAD, *WORKER_GROUPS]


def patch_of(kind: str) -> dict[str, Any]:
    """The kustomize patch of the base resource of this kind."""
    patches = [KUBERAY_DOCS[p["path"]] for p in KUSTOMIZATION["patches"]]
    found = [p for p in patches if p["kind"] == kind]
    assert len(found) == 1, f"one {kind} patch"
    base = RESOURCES[kind]["metadata"]
    assert found[0]["metadata"]["name"] == base["name"]
    assert found[0]["metadata"]["namespace"] == base["namespace"]
    return found[0]


def ray_control_plane_env() -> dict[str, str]:
    """The control plane's environment with both patches applied."""
    env: dict[str, str] = {}
    env.update(CONFIG)
    env.update(patch_of("ConfigMap")["data"])
    env.update(SECRET)
    (patched,) = patch_of("Deployment")["spec"]["template"]["spec"]["containers"]
    names = [v["name"] for v in CONTAINER["env"]]
    # A strategic merge adds the patch's variables by name, after the base's.
    variables = CONTAINER["env"] + [v for v in patched["env"] if v["name"] not in names]
    for var in variables:
        if "valueFrom" in var:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            env[var["name"]] = POD_IP
        else:
            env[var["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"]
            )
    return env


def ray_containers() -> list[dict[str, Any]]:
    return [c for g in RAY_GROUPS for c in g["template"]["spec"]["containers"]]


def ray_container_env(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    assert "envFrom" not in container
    for var in container.get("env", []):
        if "valueFrom" in var:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            env[var["name"]] = POD_IP
        else:
            env[var["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"]
            )
    return env


def ray_resources(group: dict[str, Any]) -> dict[str, float]:
    """The custom resources `ray start --resources` gets for a group."""
    text = group["rayStartParams"].get("resources")
    if text is None:
        return {}
    # KubeRay puts the value on a shell command line: it must be quoted.
    assert text.startswith("'") and text.endswith("'"), text
    resources: dict[str, float] = json.loads(text[1:-1])
    return resources


def ray_pin() -> str:
    """The ray version constraints.txt pins (the callbot[ray] extra)."""
    constraints = (ROOT / "constraints.txt").read_text()
    match = re.search(r"^ray==(\S+)\s*$", constraints, re.M | re.I)
    if not match:
        pytest.fail(
            "constraints.txt pins no ray (a line ray==X.Y.Z): the callbot[ray] "
            "extra and RayCluster.spec.rayVersion need one version"
        )
    return match.group(1)


def test_kuberay_kustomization_is_the_base_plus_the_ray_cluster() -> None:
    assert KUSTOMIZATION["kind"] == "Kustomization"
    assert "../kubernetes" in KUSTOMIZATION["resources"]
    listed = set(KUSTOMIZATION["resources"]) | {
        p["path"] for p in KUSTOMIZATION["patches"]
    }
    files = set(KUBERAY_DOCS) - {"kustomization.yaml"}
    assert listed - {"../kubernetes"} == files
    namespace = RESOURCES["Namespace"]["metadata"]["name"]
    for name, doc in KUBERAY_DOCS.items():
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["namespace"] == namespace == "callbot", name
    assert RAY_CLUSTER["apiVersion"] == "ray.io/v1"
    assert RAY_CLUSTER["metadata"]["name"] == "callbot-ray"


def test_ray_nodes_run_the_control_planes_image_with_the_ray_extra() -> None:
    match = re.search(r"docker build -t (\S+) \.", DOCKERFILE)
    assert match, "the Dockerfile documents no tag"
    for container in ray_containers():
        assert container["image"] == CONTAINER["image"] == match.group(1)
    install = re.search(r"pip install --constraint constraints\.txt (\S+)", DOCKERFILE)
    assert install, "the Dockerfile installs nothing with the constraints"
    assert install.group(1).strip("'\"") == ".[ray]"
    assert re.search(r"^USER callbot$", DOCKERFILE, re.M)


def test_ray_version_is_the_pinned_ray() -> None:
    pin = ray_pin()
    assert RAY_CLUSTER["spec"]["rayVersion"] == pin
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for spec in extras.get("ray", []):
        exact = re.fullmatch(r"ray(\[[\w,]+\])?==(\S+)", spec.replace(" ", ""))
        if exact:
            assert exact.group(2) == pin, spec


def test_bots_land_on_the_workers_only() -> None:
    head = ray_resources(HEAD)
    assert head.get("callbot_slot", 0) == 0
    # No CPU either: nothing that asks for a CPU lands on the head.
    assert HEAD["rayStartParams"]["num-cpus"] == "0"
    workers = {g["groupName"]: g for g in WORKER_GROUPS}
    assert set(workers) == {"callbot-workers"}
    group = workers["callbot-workers"]
    slots = ray_resources(group)["callbot_slot"]
    assert slots == int(slots) > 0
    assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_worker_slots_fit_the_pods_requests() -> None:
    group = WORKER_GROUPS[0]
    slots = ray_resources(group)["callbot_slot"]
    (container,) = group["template"]["spec"]["containers"]
    requests = container["resources"]["requests"]
    assert requests == container["resources"]["limits"]
    cpu = float(requests["cpu"])
    memory = requests["memory"]
    assert memory.endswith("Gi")
    memory_mib = float(memory[:-2]) * 1024
    # Half of the pod for the bots' own use: the rest is encoder peaks, the
    # Ray worker of each actor, the raylet and the object store.
    assert slots * BOT_CORES <= cpu / 2
    assert slots * BOT_RSS_MIB <= memory_mib / 2
    object_store = int(group["rayStartParams"]["object-store-memory"])
    assert object_store <= memory_mib * 1024 * 1024 / 8


def test_control_plane_settings_name_the_head_services_gcs_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("CALLBOT_")]:
        monkeypatch.delenv(name)
    for name, value in ray_control_plane_env().items():
        monkeypatch.setenv(name, value)
    settings = ControlPlaneSettings()
    assert settings.launcher == "ray"
    assert settings.ray_namespace == "callbot"
    assert settings.ray_address is not None
    host, port = settings.ray_address.rsplit(":", 1)
    cluster = RAY_CLUSTER["metadata"]["name"]
    namespace = RAY_CLUSTER["metadata"]["namespace"]
    # KubeRay names the head service <cluster>-head-svc.
    assert "headService" not in HEAD
    assert host in {
        f"{cluster}-head-svc",
        f"{cluster}-head-svc.{namespace}",
        f"{cluster}-head-svc.{namespace}.svc",
        f"{cluster}-head-svc.{namespace}.svc.cluster.local",
    }, host
    assert int(port) == GCS_PORT
    # The head service exposes the head container's named ports.
    ports = {p["name"]: p["containerPort"] for p in ray_containers()[0]["ports"]}
    assert ports["gcs-server"] == GCS_PORT
    assert int(HEAD["rayStartParams"].get("port", GCS_PORT)) == GCS_PORT
    # Detached actors outlive the control plane's pod: keep them on SIGTERM.
    assert settings.keep_bots_on_shutdown is True
    assert settings.warm_pool == 0
    # Bots must fit the slots, or they wait for one.
    group = WORKER_GROUPS[0]
    slots = ray_resources(group)["callbot_slot"] * group["replicas"]
    assert settings.max_bots == slots


def test_every_callbot_variable_of_the_ray_deployment_is_a_setting() -> None:
    known = {f"CALLBOT_{name.upper()}" for name in ControlPlaneSettings.model_fields}
    known.add(LOG_LEVEL_VARIABLE)
    names = set(ray_control_plane_env())
    for container in ray_containers():
        names |= set(ray_container_env(container))
    names = {n for n in names if n.startswith("CALLBOT_")}
    assert {"CALLBOT_LAUNCHER", "CALLBOT_RAY_ADDRESS"} <= names
    assert names - known == set()


def test_bot_workers_get_the_local_workers_ice_and_log_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for group in WORKER_GROUPS:
        (container,) = group["template"]["spec"]["containers"]
        env = ray_container_env(container)
        assert env[LOG_LEVEL_VARIABLE] == CONFIG[LOG_LEVEL_VARIABLE]
        for name in [n for n in os.environ if n.startswith("CALLBOT_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # The worker pod's own address, as the control plane's pod has its own.
        assert ControlPlaneSettings().ice_addresses == [POD_IP]
    head_env = ray_container_env(ray_containers()[0])
    assert not [n for n in head_env if n.startswith("CALLBOT_")]


def test_usage_stats_are_off_on_every_ray_container() -> None:
    containers = ray_containers()
    assert len(containers) == len(RAY_GROUPS)
    for container in containers:
        env = ray_container_env(container)
        assert env["RAY_USAGE_STATS_ENABLED"] == "0", container["name"]
    for group in RAY_GROUPS:
        assert group["rayStartParams"]["disable-usage-stats"] == "true"


def test_ray_pods_are_locked_down_like_the_control_plane() -> None:
    assert HEAD["rayStartParams"]["include-dashboard"] == "false"
    assert HEAD["serviceType"] == "ClusterIP"
    for group in RAY_GROUPS:
        spec = group["template"]["spec"]
        assert spec["enableServiceLinks"] is False
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == dockerfile_uid()
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            # Own probes, or KubeRay adds ones that ask the dashboard agent.
            for probe in ("livenessProbe", "readinessProbe"):
                command = " ".join(container[probe]["exec"]["command"])
                assert "ray health-check --address" in command


def test_control_plane_joins_as_a_ray_node_without_slots() -> None:
    (patched,) = patch_of("Deployment")["spec"]["template"]["spec"]["containers"]
    assert patched["name"] == CONTAINER["name"]
    assert patched["command"] == ["bash", "-c"]
    (script,) = patched["args"]
    start, serve = script.split(" && ")
    # A driver needs a raylet in its own pod: one that offers nothing.
    assert start.split()[:2] == ["ray", "start"]
    assert '--address="$CALLBOT_RAY_ADDRESS"' in start.split()
    assert "--num-cpus=0" in start.split()
    assert "--disable-usage-stats" in start.split()
    assert "--head" not in start and "--resources" not in start
    assert "--block" not in start
    # Then the image's own command, as the process that gets SIGTERM.
    command = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M)
    assert command
    assert serve.split() == ["exec", *json.loads(command.group(1))]
    resources = patched["resources"]
    assert float(resources["requests"]["cpu"]) <= float(resources["limits"]["cpu"])
    assert float(resources["limits"]["cpu"]) < float(
        CONTAINER["resources"]["limits"]["cpu"]
    )
    assert ray_control_plane_env()["RAY_USAGE_STATS_ENABLED"] == "0"
