"""The Kubernetes deployment (``deploy/``), checked where there is no cluster and no Docker.

The chart is rendered by a real Helm (Helm v4's Go library embedded in the ``helm-python-sdk`` wheel, rendering
offline) for several value combinations, and every object it renders is validated strictly against Kubernetes'
OpenAPI schemas for 1.29 and the newest version ``kubernetes-validate`` bundles, or, for the custom resources
(ServiceMonitor, KServe's InferenceService), against their projects' published schemas vendored in
``tests/crd_schemas``. The chart must keep the images and flags of ``docker-compose.yaml``; the probes' command must
be one the Triton image installs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="pip install -e '.[dev]' (helm-python-sdk renders the chart)")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]'")

from rtmo.build.reuse import plan_cache_key  # noqa: E402
from rtmo_contract import ENSEMBLES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "rtmo"
ADAPTER_VALUES = ROOT / "deploy" / "prometheus-adapter" / "values.yaml"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
CRD_SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"
DOCKER = ROOT / "docker"
PROBE = ["rtmo-client", "health", "--url", "localhost:8001"]
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
COMBINATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "cpu": {"target": "cpu"},
    "gpu-autoscaled-monitored-cached": {
        "autoscaling": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "planCache": {"existingClaim": "rtmo-plans"},
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    },
    "cpu-autoscaled-without-pdb": {
        "target": "cpu",
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
        "podDisruptionBudget": {"enabled": False},
    },
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The objects the chart renders for ``values`` as release ``rtmo`` in namespace ``pose``."""
    manifests = helm.Chart.load(CHART).render(values or {}, name="rtmo", namespace="pose")
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


# --- the custom resources' schemas -----------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """``schema`` with unknown fields refused wherever Kubernetes would prune them (objects with ``properties``)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        tightened["additionalProperties"] = False
    return tightened


CRDS = {
    (document["apiVersion"], document["kind"]): strict(document["schema"])
    for document in (json.loads(path.read_text()) for path in sorted(CRD_SCHEMAS.glob("*.json")))
}


def validate(obj: dict[str, Any], version: str) -> None:
    """Kubernetes' schema for a built-in kind (no schema for one is an error), the vendored one for a CRD."""
    crd = CRDS.get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        jsonschema.validate(obj, crd)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), obj["metadata"]
        return
    kubernetes_validate.validate(obj, version, strict=True)


# --- rendering and validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_rendered_object_validates_strictly(combination: str, version: str) -> None:
    objects = render(COMBINATIONS[combination])
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service"} <= kinds
    for obj in objects:
        validate(obj, version)


def test_the_validation_catches_misspelt_fields_and_unknown_kinds() -> None:
    objects = render({"serviceMonitor": {"enabled": True}})
    deployment = one(objects, "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, KUBERNETES_VERSIONS[-1])
    monitor = copy.deepcopy(one(objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, KUBERNETES_VERSIONS[-1])
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate({**deployment, "kind": "Deploymint"}, KUBERNETES_VERSIONS[-1])


def test_helm_renders_offline_without_any_network(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare --net needs root)")
    script = (
        "import sys, helm_python as helm; "
        "out = helm.Chart.load(sys.argv[1]).render({'autoscaling': {'enabled': True}}, name='rtmo'); "
        "print(sorted(out))"
    )
    # A new network namespace has only a loopback that is down: no DNS, no route anywhere.
    done = subprocess.run(
        [unshare, "--net", sys.executable, "-c", script, str(CHART)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "rtmo/templates/hpa.yaml" in done.stdout


# --- the same deployment as docker-compose.yaml -----------------------------------------------------------------


def test_gpu_pods_run_the_compose_images_and_command_with_one_gpu_for_both_containers() -> None:
    deployment = one(render(), "Deployment")
    by_name = containers(deployment)
    services = compose()["services"]
    triton, build = by_name["triton"], by_name["engine-build"]
    assert triton["image"] == services["triton"]["image"] and build["image"] == services["engine-build"]["image"]
    assert triton["command"] == [
        "--model-config-name=gpu" if arg.startswith("--model-config-name=") else arg
        for arg in services["triton"]["command"]
    ]
    for container in (triton, build):
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    # Every setting of compose's engine-build reaches the init container, with compose's default value.
    for key, value in services["engine-build"]["environment"].items():
        assert env(build)[key] == re.fullmatch(r"\$\{\w+:-(.*)\}", value).group(1), key
    assert env(build)["RTMO_TARGET"] == "gpu"
    pod = deployment["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert [p["containerPort"] for p in triton["ports"]] == [8000, 8001, 8002]


def test_cpu_pods_serve_the_onnx_runtime_configuration_without_any_gpu() -> None:
    objects = render({"target": "cpu"})
    text = json.dumps(objects)
    assert "nvidia.com/gpu" not in text
    by_name = containers(one(objects, "Deployment"))
    assert "--model-config-name=cpu" in by_name["triton"]["command"]
    assert env(by_name["engine-build"])["RTMO_TARGET"] == "cpu"
    gpu_command = containers(one(render(), "Deployment"))["triton"]["command"]
    assert [a for a in by_name["triton"]["command"] if "config-name" not in a] == [
        a for a in gpu_command if "config-name" not in a
    ]


def test_gpu_node_selector_and_tolerations_add_to_the_general_ones() -> None:
    values = {
        "nodeSelector": {"pool": "inference"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "rtmo", "effect": "NoSchedule"}],
        "gpu": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
    }
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "inference", "nvidia.com/gpu.product": "NVIDIA-L4"}
    assert [t["key"] for t in pod["tolerations"]] == ["dedicated", "nvidia.com/gpu"]
    cpu_pod = one(render({**values, "target": "cpu"}), "Deployment")["spec"]["template"]["spec"]
    assert cpu_pod["nodeSelector"] == {"pool": "inference"} and [t["key"] for t in cpu_pod["tolerations"]] == [
        "dedicated"
    ]


def test_the_plan_cache_is_a_shared_claim_mounted_by_the_init_container_only() -> None:
    pod = one(render({"planCache": {"existingClaim": "rtmo-plans"}}), "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["plan-cache"]["persistentVolumeClaim"] == {"claimName": "rtmo-plans"}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    by_name = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    assert {m["name"] for m in by_name["engine-build"]["volumeMounts"]} == {"models", "plan-cache"}
    assert {m["name"] for m in by_name["triton"]["volumeMounts"]} == {"models", "shm"}
    assert env(by_name["engine-build"])["RTMO_PLAN_CACHE"] == "/plan-cache"
    default = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in default["volumes"]}["plan-cache"] == {"name": "plan-cache", "emptyDir": {}}


def test_plan_cache_folders_differ_per_gpu_model_tensorrt_and_checkpoint() -> None:
    key = plan_cache_key("gpu:rtmo-s_body7", gpu="NVIDIA H100 80GB HBM3", tensorrt_version="10.5.0.18")
    assert key == plan_cache_key("gpu:rtmo-s_body7", gpu="NVIDIA H100 80GB HBM3", tensorrt_version="10.5.0.18")
    assert re.fullmatch(r"[A-Za-z0-9.-]+", key)
    assert key.startswith("NVIDIA-H100-80GB-HBM3-trt10.5.0.18-gpu-rtmo-s-body7-")
    others = {
        plan_cache_key("gpu:rtmo-s_body7", gpu="NVIDIA L4", tensorrt_version="10.5.0.18"),
        plan_cache_key("gpu:rtmo-s_body7", gpu="NVIDIA H100 80GB HBM3", tensorrt_version="10.6.0.26"),
        plan_cache_key("gpu:rtmo-m_body7", gpu="NVIDIA H100 80GB HBM3", tensorrt_version="10.5.0.18"),
    }
    assert key not in others and len(others) == 3


# --- probes ----------------------------------------------------------------------------------------------------


def test_every_probe_runs_the_sdk_health_check_that_the_triton_image_installs() -> None:
    import tomllib

    triton = containers(one(render(), "Deployment"))["triton"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert triton[probe]["exec"]["command"] == PROBE, probe
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert client["scripts"][PROBE[0]] == "rtmo_client.cli:main"
    dockerfile = (DOCKER / "triton" / "Dockerfile").read_text()
    assert '"./client[cli]"' in dockerfile and "COPY client ./client" in dockerfile
    assert re.search(r"^\s+&& rtmo-client health --help", dockerfile, re.MULTILINE)  # the probe starts in the image
    ignore = (DOCKER / "triton" / "Dockerfile.dockerignore").read_text().splitlines()
    assert {"!client/pyproject.toml", "!client/src/"} <= set(ignore)
    # --no-deps install: every dependency of the client and its cli extra is pinned by one of the image's lists.
    wanted = {_name(r) for r in client["dependencies"] + client["optional-dependencies"]["cli"]} - {"rtmo-contract"}
    installed = _requirement_names(DOCKER / "triton" / "probe-requirements.txt") | _requirement_names(
        DOCKER / "triton" / "requirements.txt"
    )
    assert wanted <= installed, sorted(wanted - installed)


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>~!; ]", requirement)[0].lower()


def _requirement_names(path: Path) -> set[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {_name(line) for line in lines if line}


# --- services, autoscaling, disruption budget, monitoring -------------------------------------------------------


def test_grpc_goes_through_a_headless_service_and_http_and_metrics_through_a_cluster_ip() -> None:
    objects = render()
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    grpc, plain = one(objects, "Service", "rtmo-grpc"), one(objects, "Service", "rtmo")
    assert grpc["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["port"], p["targetPort"]) for p in grpc["spec"]["ports"]] == [("grpc", 8001, "grpc")]
    assert plain["spec"]["type"] == "ClusterIP" and "clusterIP" not in plain["spec"]
    assert [(p["name"], p["port"]) for p in plain["spec"]["ports"]] == [("http", 8000), ("metrics", 8002)]
    for service in (grpc, plain):
        assert service["spec"]["selector"].items() <= pod_labels.items()


def test_autoscaling_is_off_by_default_and_scales_on_the_adapters_queue_metric_when_on() -> None:
    default = render()
    assert not [o for o in default if o["kind"] == "HorizontalPodAutoscaler"]
    assert one(default, "Deployment")["spec"]["replicas"] == 1
    objects = render({"autoscaling": {"enabled": True, "maxReplicas": 4, "targetQueueUsPerRequest": 20000}})
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert "replicas" not in one(objects, "Deployment")["spec"]  # the HPA owns the count
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rtmo"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "20000"}
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    query = rule["metricsQuery"]
    numerator, denominator = query.split(" / ")
    ensembles = "|".join(ENSEMBLES)
    assert "nv_inference_queue_duration_us" in numerator and f'model!~"{ensembles}"' in numerator
    assert "nv_inference_request_success" in denominator and f'model=~"{ensembles}"' in denominator
    assert denominator.startswith("(1 + ")


def test_inverted_replica_bounds_fail_the_render_naming_both_values() -> None:
    with pytest.raises(helm.HelmRenderError, match="maxReplicas=1 is below autoscaling.minReplicas=3"):
        render({"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 1}})


def test_disruption_budget_and_service_monitor_select_the_pods() -> None:
    objects = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}})
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= one(objects, "Service", "rtmo")["metadata"]["labels"].items()
    )
    assert not [o for o in render() if o["kind"] == "ServiceMonitor"]
    assert not [o for o in render({"podDisruptionBudget": {"enabled": False}}) if o["kind"] == "PodDisruptionBudget"]


# --- values: schema and documentation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"target": "tpu"}, "at '/target': value must be one of 'gpu', 'cpu'"),
        ({"engine": {"maxBatchSize": 0}}, "/engine/maxBatchSize"),
        ({"engine": {"precision": "int8"}}, "/engine/precision"),
        ({"autoscalling": {"enabled": True}}, "'autoscalling' not allowed"),
        ({"shmSize": "lots"}, "/shmSize"),
        ({"probes": {"readiness": {"periodSeconds": 0}}}, "/probes/readiness/periodSeconds"),
    ],
)
def test_the_values_schema_refuses_bad_values_naming_them(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(values)


def _documented_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of ``values`` down to the leaves, or to maps the schema leaves free (resources, selectors).

    Raises:
        KeyError: a value the schema does not describe.
    """
    for key, value in values.items():
        node = schema["properties"][key]
        assert node.get("description") or "properties" in node, f"{prefix}{key} has no description in the schema"
        if isinstance(value, dict) and value and "properties" in node:
            yield from _documented_paths(value, node, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_value_is_in_the_schema_and_documented_in_the_chart_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([\w.]+)` \|", readme, re.MULTILINE))
    paths = set(_documented_paths(values, schema))
    assert paths == documented, (sorted(paths - documented), sorted(documented - paths))


# --- KServe ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kserve_example_validates_and_runs_the_charts_containers(version: str) -> None:
    service = yaml.safe_load(KSERVE.read_text())
    validate(service, version)
    predictor = service["spec"]["predictor"]
    # The predictor's pod parts are Kubernetes' own types: validate them as a pod too.
    pod_spec = {k: predictor[k] for k in ("initContainers", "containers", "volumes", "tolerations")}
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rtmo"}, "spec": pod_spec}, version)
    chart = containers(one(render(), "Deployment"))
    (triton,) = predictor["containers"]
    (build,) = predictor["initContainers"]
    assert triton["command"] == chart["triton"]["command"] and triton["image"] == chart["triton"]["image"]
    assert build["image"] == chart["engine-build"]["image"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert triton[probe]["exec"]["command"] == PROBE, probe
    broken = copy.deepcopy(service)
    broken["spec"]["predictor"]["minReplica"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, version)


# --- the init container's entrypoint for the chart's settings ------------------------------------------------


def test_engine_build_refuses_an_unknown_target(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(DOCKER / "engine-build" / "entrypoint.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "RTMO_TARGET": "tpu", "RTMO_MODELS_DIR": str(tmp_path)},
    )
    assert done.returncode == 2 and "RTMO_TARGET=tpu; accepted: cpu, gpu" in done.stderr


@pytest.mark.slow
def test_engine_build_for_cpu_fills_the_repository_from_a_folder_of_the_plan_cache(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RTMO_TARGET": "cpu",
        "RTMO_CHECKPOINT": "random:tiny",
        "RTMO_TOP_K": "32",
        "RTMO_MODELS_DIR": str(tmp_path / "models"),
        "RTMO_TEMPLATES": str(ROOT / "model_repository"),
        "RTMO_PLAN_CACHE": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        ["bash", str(DOCKER / "engine-build" / "entrypoint.sh")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ready for tritonserver --model-config-name=cpu" in done.stdout
    repository = tmp_path / "models" / "repository"
    assert (repository / "engine" / "configs" / "cpu.pbtxt").is_file()
    (folder,) = (tmp_path / "cache").iterdir()
    assert folder.name == plan_cache_key("cpu:random:tiny:ema")  # target, checkpoint, weights (RTMO_CHECKPOINT_WEIGHTS)
    assert json.loads((folder / "export" / "metadata.json").read_text())["top_k"] == 32
