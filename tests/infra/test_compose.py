"""docker-compose.yml, infra/Dockerfile and their files, checked against the real code.

There is no Docker engine here, so the file is validated the other way round: every
process it starts must be a real entry point (a wsgi module's Flask app, a worker part in
`services.<svc>.worker.parts`, a `nocontact` command whose options parse), every
NOCONTACT_* variable it sets must be read by the code, every worker part of every service
must be run by some compose service, and the one-shot jobs must gate the rest.

A service whose module does not exist yet (colleagues write them in parallel) is
skipped, for that service only, with the reason; once it exists its checks run.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from shared import config, topology
from shared.config import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SERVICE_NAMES = ("commitment", "checkin", "notification")
APP_SERVICES = {name: spec for name, spec in SERVICES.items() if spec.get("image", "").startswith("nocontact:")}
SOURCES = "\n".join(
    path.read_text() for folder in ("shared", "services") for path in (REPO_ROOT / folder).rglob("*.py")
) + (REPO_ROOT / "infra" / "gunicorn.conf.py").read_text()


def _module_or_skip(name: str) -> Any:
    try:
        found = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        found = None
    if found is None:
        pytest.skip(f"{name} does not exist yet (written in parallel); its compose checks wait for it")
    return importlib.import_module(name)


def _command(spec: dict[str, Any]) -> list[str]:
    command = spec["command"]
    assert isinstance(command, list), "exec form: the process gets SIGTERM itself, no shell in between"
    return command


def test_every_app_process_uses_the_one_image_built_by_infra_dockerfile() -> None:
    assert len(APP_SERVICES) >= 12  # migrate, broker-setup, 3 APIs, 7 worker parts
    for name, spec in APP_SERVICES.items():
        assert spec["build"] == {"context": ".", "dockerfile": "infra/Dockerfile"}, name
        assert spec["image"] == APP_SERVICES["migrate"]["image"], name
    assert (REPO_ROOT / "infra" / "Dockerfile").is_file()


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_api_runs_the_wsgi_app_under_gunicorn_on_its_port_with_a_readiness_check(service: str) -> None:
    spec = SERVICES[f"{service}-api"]
    command = _command(spec)
    assert command[:3] == ["gunicorn", "-c", "infra/gunicorn.conf.py"]
    assert (REPO_ROOT / command[2]).is_file()
    port = config.PORT_DEFAULTS[service]
    assert command[command.index("--bind") + 1] == f"0.0.0.0:{port}"
    # The same entry point as `make run` (services/runner.py).
    assert command[-1] == f"services.{service}.wsgi:app"
    runner = (REPO_ROOT / "services" / "runner.py").read_text()
    assert 'f"services.{service}.wsgi:app"' in runner
    module = _module_or_skip(f"services.{service}.wsgi")
    rules = {rule.rule for rule in module.app.url_map.iter_rules()}
    assert {"/healthz", "/readyz", "/metrics"} <= rules
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(spec["healthcheck"]["test"])
    # Reachable on the internal network only; clients come through the proxy, on the same port.
    assert "ports" not in spec and spec["expose"] == [str(port)]
    assert f"{port}:{port}" in SERVICES["proxy"]["ports"]


def _worker_services() -> dict[str, tuple[str, str]]:
    out = {}
    for name, spec in APP_SERVICES.items():
        command = _command(spec)
        if command[:2] == ["nocontact", "worker"]:
            assert command[3] == "--only" and len(command) == 5, f"{name}: one part per process"
            out[name] = (command[2], command[4])
    return out


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_worker_part_runs_in_its_own_compose_process(service: str, tmp_path: Path) -> None:
    module = _module_or_skip(f"services.{service}.worker")
    from shared.db import engine_for

    # Building the parts connects to nothing (connections are made when a part runs).
    parts = set(module.parts(engine_for(f"sqlite:///{tmp_path / 'parts.sqlite3'}")))
    in_compose = {part for svc, part in _worker_services().values() if svc == service}
    assert in_compose == parts, f"compose runs {sorted(in_compose)}, the code has {sorted(parts)}"


def test_worker_processes_expose_metrics_are_health_checked_and_stop_gracefully() -> None:
    workers = _worker_services()
    assert workers
    for name in workers:
        spec = SERVICES[name]
        port = spec["environment"]["NOCONTACT_WORKER_METRICS_PORT"]
        assert f"http://127.0.0.1:{port}/metrics" in " ".join(spec["healthcheck"]["test"]), name
        assert spec["stop_grace_period"], name
        assert spec["restart"] == "unless-stopped", name


def _resolve(args: list[str]) -> click.Context:
    """Parse a `nocontact ...` command line with the real CLI, without running it."""
    from services.cli import main

    command: click.Command = main
    rest = list(args)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert not isinstance(command, click.Group), f"{args}: no such command"
    return command.make_context("nocontact", rest)


def test_every_nocontact_command_parses_with_the_real_cli() -> None:
    commands = [_command(spec) for spec in APP_SERVICES.values() if _command(spec)[0] == "nocontact"]
    assert len(commands) >= 9  # migrate, bus setup, 7 worker parts
    for command in commands:
        context = _resolve(command[1:])
        for value in context.params.values():
            if isinstance(value, Path):
                assert (REPO_ROOT / value).is_file(), f"{command}: {value} is not in the image"


def test_one_shot_jobs_gate_every_long_running_process() -> None:
    assert _command(SERVICES["migrate"]) == ["nocontact", "migrate"]
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert SERVICES["broker-setup"]["depends_on"] == {"rabbitmq": {"condition": "service_healthy"}}
    for name, spec in APP_SERVICES.items():
        if name in ("migrate", "broker-setup"):
            assert spec["restart"] == "no"
            continue
        assert spec["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert spec["depends_on"]["broker-setup"] == {"condition": "service_completed_successfully"}, name
    for spec in SERVICES.values():
        for target, condition in (spec.get("depends_on") or {}).items():
            if isinstance(condition, dict) and condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} is waited on but has no healthcheck"


def _read_by_code(variable: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    if re.search(rf"\b{variable}\b", SOURCES):
        return True
    # Names the code builds: NOCONTACT_<SERVICE>_DATABASE_URL/_PORT/_URL, <COMPONENT>_PARTITIONS.
    for service in SERVICE_NAMES:
        monkeypatch.setenv(variable, "12345")
        if config.database_url(service) == "12345" or config.service_url(service) == "12345":
            return True
        if config.port(service) == 12345:
            return True
        monkeypatch.delenv(variable)
    return any(component.partitions_variable == variable for component in topology.COMPONENTS)


def test_every_nocontact_variable_in_compose_is_read_by_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = set()
    for spec in APP_SERVICES.values():
        seen |= {name for name in spec.get("environment", {}) if name.startswith("NOCONTACT_")}
    assert len(seen) >= 15
    unread = [name for name in sorted(seen) if not _read_by_code(name, monkeypatch)]
    assert not unread, f"set in docker-compose.yml but read nowhere: {unread}"


def test_secrets_come_from_the_environment_and_every_process_shares_the_signing_key() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    env = APP_SERVICES["checkin-api"]["environment"]
    assert env["NOCONTACT_SECRET_KEY"].startswith("${NOCONTACT_SECRET_KEY:?")
    # The services connect as the app role; only the migrate job holds the owner's password.
    assert env["NOCONTACT_DATABASE_URL"].startswith("postgresql://nocontact_app:${NOCONTACT_APP_DB_PASSWORD:?")
    assert "NOCONTACT_DB_PASSWORD" not in env["NOCONTACT_DATABASE_URL"]
    owner = APP_SERVICES["migrate"]["environment"]["NOCONTACT_MIGRATION_DATABASE_URL"]
    assert owner.startswith("postgresql://nocontact:${NOCONTACT_DB_PASSWORD:?")
    assert [name for name, spec in APP_SERVICES.items()
            if "NOCONTACT_MIGRATION_DATABASE_URL" in spec["environment"]] == ["migrate"]
    assert SERVICES["postgres"]["environment"]["NOCONTACT_APP_DB_PASSWORD"].startswith("${NOCONTACT_APP_DB_PASSWORD:?")
    assert "${NOCONTACT_BROKER_PASSWORD:?" in env["NOCONTACT_BROKER_URL"]
    assert SERVICES["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"].startswith("${NOCONTACT_BROKER_PASSWORD:?")
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${NOCONTACT_DB_PASSWORD:?")
    for spec in APP_SERVICES.values():
        assert spec["environment"]["NOCONTACT_SECRET_KEY"] == env["NOCONTACT_SECRET_KEY"]
        assert spec["environment"]["NOCONTACT_DATABASE_URL"] == env["NOCONTACT_DATABASE_URL"]
    assert not re.search(r"(?i)(password|secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9]{8,}", text)


def test_mounted_infra_files_exist() -> None:
    for spec in SERVICES.values():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).is_file(), source


def test_the_image_runs_on_the_pins_make_run_uses_and_resolves_compose_paths() -> None:
    dockerfile = (REPO_ROOT / "infra" / "Dockerfile").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    # The same runtime pins (tests/infra/test_packaging.py checks the image's build in detail).
    assert "-r requirements-runtime.lock" in dockerfile and "-r requirements-runtime.lock" in makefile
    python = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim", dockerfile, re.M)
    assert python and python.group(1) == "3.11"
    # Compose names infra/gunicorn.conf.py and infra/rabbitmq/definitions.json relative to the
    # working directory: /app, where infra/ is the installed package's own (package data).
    runtime = re.split(r"^FROM ", dockerfile, flags=re.M)[-1]
    assert re.search(r"^WORKDIR /app$", runtime, re.M)
    assert re.search(r"ln -s .*import infra.* /app/infra", runtime)
    named = {value for spec in APP_SERVICES.values() for value in _command(spec) if value.startswith("infra/")}
    assert named == {"infra/gunicorn.conf.py", "infra/rabbitmq/definitions.json"}, named
    import infra

    for value in named:
        assert infra.path(value.removeprefix("infra/")).is_file(), value
    ignored = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("shared", "services", "infra", "requirements-runtime.lock", "pyproject.toml"):
        assert needed not in ignored, f".dockerignore drops {needed}"
    assert "USER nocontact" in dockerfile


def test_the_proxy_is_the_only_way_in_and_holds_slow_and_oversized_requests() -> None:
    """infra/proxy/ as compose mounts it (tests/security/test_proxy.py runs it for real)."""
    from shared.web import MAX_BODY_BYTES

    proxy = SERVICES["proxy"]
    assert proxy["image"].startswith("nginx:")
    mounts = dict(volume.rsplit(":", 1)[0].split(":") for volume in proxy["volumes"])
    assert mounts == {"./infra/proxy/nginx.conf": "/etc/nginx/nginx.conf",
                      "./infra/proxy/api.conf": "/etc/nginx/api.conf"}
    assert all(volume.endswith(":ro") for volume in proxy["volumes"])
    nginx = (REPO_ROOT / "infra" / "proxy" / "nginx.conf").read_text()
    assert "include api.conf;" in nginx  # relative to /etc/nginx/, where compose mounts it
    for service in SERVICE_NAMES:
        port = config.PORT_DEFAULTS[service]
        assert f"listen {port};\n        set $api {service}-api:{port};" in nginx, service
    assert set(proxy["depends_on"]) == {f"{service}-api" for service in SERVICE_NAMES}
    assert sorted(proxy["ports"]) == sorted(f"{port}:{port}" for port in config.PORT_DEFAULTS.values())
    # Nothing else is published beyond this host.
    for name, spec in SERVICES.items():
        if name != "proxy":
            assert all(str(port).startswith("127.0.0.1:") for port in spec.get("ports", [])), name
    settings = dict(re.findall(r"^\s*(client_\w+|proxy_request_buffering)\s+([^;]+);", nginx, re.M))
    assert settings["client_max_body_size"] == f"{MAX_BODY_BYTES // 1024}k"
    assert settings["client_header_timeout"] == "10s" and settings["client_body_timeout"] == "10s"
    assert settings["proxy_request_buffering"] == "on"
    api = (REPO_ROOT / "infra" / "proxy" / "api.conf").read_text()
    assert re.search(r"location = /metrics \{\s*return 404;", api)


def test_prometheus_scrapes_every_worker_and_api() -> None:
    scrape = yaml.safe_load((REPO_ROOT / "infra" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    workers = {name for sd in jobs["nocontact-worker"]["dns_sd_configs"] for name in sd["names"]}
    assert workers == set(_worker_services())
    apis = {(sd["names"][0], sd["port"]) for sd in jobs["nocontact-api"]["dns_sd_configs"]}
    assert apis == {(f"{s}-api", config.PORT_DEFAULTS[s]) for s in SERVICE_NAMES}


def test_rabbitmq_definitions_match_the_code_and_import_into_a_real_broker() -> None:
    import json

    definitions = json.loads((REPO_ROOT / "infra" / "rabbitmq" / "definitions.json").read_text())
    vhost = APP_SERVICES["checkin-api"]["environment"]["NOCONTACT_BROKER_URL"].rsplit("/", 1)[1]
    assert SERVICES["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_VHOST"] == vhost
    assert [v["name"] for v in definitions["vhosts"]] == [vhost]
    exchanges = {e["name"]: e["type"] for e in definitions["exchanges"]}
    assert exchanges == {topology.EXCHANGE: "topic", topology.DEAD_LETTER_EXCHANGE: "direct"}
    assert "users" not in definitions, "users (password hashes) do not belong in the repository"
    try:
        subprocess.run(["rabbitmqctl", "status"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no local rabbitmqctl to import the definitions with")
    scratch = f"nocontact-definitions-{uuid.uuid4().hex[:8]}"
    text = json.dumps(definitions).replace(f'"{vhost}"', f'"{scratch}"')
    try:
        subprocess.run(["rabbitmqctl", "import_definitions"], input=text, text=True, check=True,
                       capture_output=True, timeout=60)
        policies = subprocess.run(["rabbitmqctl", "list_policies", "-q", "-p", scratch, "--formatter", "json"],
                                  check=True, capture_output=True, text=True, timeout=60).stdout
        assert {p["name"] for p in json.loads(policies)} == {p["name"] for p in definitions["policies"]}
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", scratch], capture_output=True, timeout=60)


def test_postgres_init_script_creates_the_databases_once(postgres_database_url: str) -> None:
    from sqlalchemy import create_engine, text

    script = REPO_ROOT / "infra" / "postgres" / "init-databases.sh"
    names = [f"nocx_{uuid.uuid4().hex[:8]}_{suffix}" for suffix in ("a", "b")]
    role = f"nocx_{uuid.uuid4().hex[:8]}_app"
    env = {"PATH": "/usr/bin:/bin", "PGHOST": "127.0.0.1", "POSTGRES_USER": "postgres",
           "NOCONTACT_DATABASES": ",".join(names), "NOCONTACT_APP_ROLE": role,
           "NOCONTACT_APP_DB_PASSWORD": "it's a secret"}
    admin = create_engine(postgres_database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        for _ in range(2):  # a second run finds them and changes nothing
            subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True, timeout=60)
        with admin.connect() as conn:
            found = {row[0] for row in conn.execute(text("SELECT datname FROM pg_database"))}
            app_role = conn.execute(
                text("SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = :r"),
                {"r": role},
            ).one()
            may_connect = conn.execute(
                text("SELECT has_database_privilege(:r, :d, 'CONNECT')"), {"r": role, "d": names[0]}
            ).scalar()
        assert set(names) <= found
        assert tuple(app_role) == (True, False, False, False) and may_connect
        refused = subprocess.run(["sh", str(script)], env={**env, "NOCONTACT_DATABASES": "x; DROP"},
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "refusing" in refused.stderr
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
