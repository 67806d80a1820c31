"""The package as an operator installs it: declared dependencies, two locks that agree, a
wheel that carries its migrations and configs and runs from any directory, and the files
a release needs (licence, changelog, security policy).

The wheel is installed offline: into a fresh virtual environment that sees, besides the
wheel, only the distributions pinned in requirements-runtime.lock (linked from this test
environment). pip then resolves the wheel's declared dependencies against exactly the
runtime lock, as the image's `pip check` does.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared import config
from shared.config import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
RUNTIME_LOCK = REPO_ROOT / "requirements-runtime.lock"
FULL_LOCK = REPO_ROOT / "requirements.lock"


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, pinned = line.partition("==")
        assert separator and pinned, f"{path.name}: {line!r} is not pinned with =="
        pins[canonicalize_name(name)] = pinned
    return pins


def _tree(requirements: list[str], extras_of_root: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution that `requirements` pull in, read from the installed metadata."""
    seen: set[str] = set()
    pending = [(Requirement(text), extras_of_root) for text in requirements]
    while pending:
        requirement, parent_extras = pending.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in (parent_extras or {""})
        ):
            continue
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        if name == "nocontact":  # nocontact[dev], and the dev extra names nocontact[test]
            texts = PROJECT["dependencies"] + [text for extra in requirement.extras
                                               for text in PROJECT["optional-dependencies"][extra]]
            pending += [(Requirement(text), frozenset()) for text in texts]
            continue
        for text in importlib.metadata.distribution(name).requires or []:
            pending.append((Requirement(text), frozenset(requirement.extras)))
    return {key.split("[", 1)[0] for key in seen} - {"nocontact"}


RUNTIME_TREE = _tree(PROJECT["dependencies"])


def test_every_runtime_dependency_is_pinned_in_both_locks_at_one_version() -> None:
    runtime, full = _pins(RUNTIME_LOCK), _pins(FULL_LOCK)
    for text in PROJECT["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{name} is declared in pyproject.toml but not pinned in {RUNTIME_LOCK.name}"
        assert name in full, f"{name} is declared in pyproject.toml but not pinned in {FULL_LOCK.name}"
        assert requirement.specifier.contains(runtime[name]), f"{name}=={runtime[name]} breaks {text!r}"
    disagreeing = {name: (pinned, full.get(name)) for name, pinned in runtime.items() if full.get(name) != pinned}
    assert not disagreeing, f"pinned differently in the two locks (runtime, full): {disagreeing}"


def test_the_runtime_lock_is_the_runtime_tree_and_nothing_test_only() -> None:
    runtime = set(_pins(RUNTIME_LOCK))
    assert runtime == RUNTIME_TREE, (
        f"in the runtime lock but not needed at run time: {sorted(runtime - RUNTIME_TREE)}; "
        f"needed but not pinned: {sorted(RUNTIME_TREE - runtime)}"
    )
    for tool in ("pytest", "playwright", "ruff", "py-spy", "schemathesis", "hypothesis", "testcontainers",
                 "pyinstrument", "eventsourcing", "setuptools"):
        assert tool not in runtime, f"{tool} is in the runtime lock"


def test_the_full_lock_is_the_tree_of_the_dev_extra() -> None:
    wanted = _tree(["nocontact[dev]"])
    full = set(_pins(FULL_LOCK))
    assert full == wanted, f"extra: {sorted(full - wanted)}; missing: {sorted(wanted - full)}"
    # Every extra declared is reachable from dev, so `make test` has the test tools.
    assert "nocontact[test]" in PROJECT["optional-dependencies"]["dev"]


def _third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names} - {"shared", "services", "infra"}


# Test fixtures shipped in shared/ import these only inside the functions the tests call.
TEST_ONLY_IMPORTS = {"shared/testing.py": {"docker", "testcontainers"}}


def test_the_code_imports_only_what_pyproject_declares_for_run_time() -> None:
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for folder in ("shared", "services", "infra"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            for module in _third_party_imports(path) - TEST_ONLY_IMPORTS.get(relative, set()):
                distributions = {canonicalize_name(name) for name in providers.get(module, [])}
                if not distributions & RUNTIME_TREE:
                    undeclared.setdefault(relative, []).append(module)
    assert not undeclared, f"imported by the services but not a runtime dependency: {undeclared}"


def test_installed_code_never_reads_files_from_the_source_tree() -> None:
    for folder in ("shared", "services", "infra"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if path == REPO_ROOT / "shared" / "config.py":
                continue
            assert "REPO_ROOT" not in path.read_text(), f"{path}: installed code cannot rely on the checkout"


def _dockerfile_copies() -> list[str]:
    """The sources the Dockerfile's build stage copies into the build context."""
    dockerfile = (REPO_ROOT / "infra" / "Dockerfile").read_text()
    sources = []
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    return sources


def _runtime_site(directory: Path) -> Path:
    """A directory holding links to exactly the distributions of the runtime lock."""
    directory.mkdir()
    for name in _pins(RUNTIME_LOCK):
        distribution = importlib.metadata.distribution(name)
        for top in {Path(str(file)).parts[0] for file in distribution.files or []}:
            if top == ".." or (directory / top).exists():  # ../../bin/...: scripts, not modules
                continue
            (directory / top).symlink_to(distribution.locate_file(top))
    return directory


def _run(command: list[str | Path], cwd: Path | None = None, **env: str) -> str:
    """Run a command in a clean environment (no NOCONTACT_*, no PYTHONPATH); its stdout."""
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith(("NOCONTACT_", "PYTHON", "VIRTUAL_ENV"))
             # Under `make test` these say "you are a sub-make": make would then print
             # "Entering directory" lines into the commands we read.
             and name not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    done = subprocess.run([str(part) for part in command], cwd=cwd, env={**clean, **env}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nocontact built from what the Dockerfile copies, installed from its wheel; returns the venv."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in _dockerfile_copies():
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    wheels = root / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--wheel-dir", wheels, source])
    venv = root / "venv"
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip())
    (site / "runtime-lock.pth").write_text(f"{_runtime_site(root / 'runtime-site')}\n")
    # With its dependencies resolved: each must be met by a distribution of the runtime lock.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--find-links", wheels,
          "nocontact"])
    return venv


def test_the_wheel_carries_migrations_and_configs_but_no_tests_or_host_files(installed: Path) -> None:
    wheel = next((installed.parent / "wheels").glob("nocontact-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("infra/gunicorn.conf.py", "infra/migrations/env.py", "infra/migrations/script.py.mako",
                    "infra/rabbitmq/definitions.json", "services/cli.py", "shared/config.py"):
        assert shipped in names, shipped
    versions = {path.name for path in (REPO_ROOT / "infra" / "migrations" / "versions").glob("*.py")}
    assert {f"infra/migrations/versions/{name}" for name in versions} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    # What docker-compose.yml names under infra/ is in the image: /app/infra is the package's.
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    named = {value for spec in compose["services"].values() for value in spec.get("command") or []
             if isinstance(value, str) and value.startswith("infra/")}
    assert named and named <= names, named - names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "var/"))
                or name in ("infra/Dockerfile", "infra/prometheus.yml") or name.startswith("infra/postgres")]
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    required = {Requirement(line.split(":", 1)[1]) for line in text.splitlines() if line.startswith("Requires-Dist:")}
    unconditional = {canonicalize_name(requirement.name) for requirement in required if requirement.marker is None}
    assert unconditional == {canonicalize_name(Requirement(text).name) for text in PROJECT["dependencies"]}


def test_the_installed_wheel_answers_its_version_and_migrates_from_any_directory(
        installed: Path, tmp_path: Path) -> None:
    nocontact = installed / "bin" / "nocontact"
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert _run([nocontact, "--version"], cwd=work).strip() == f"nocontact {PROJECT['version']}"

    located = _run([installed / "bin" / "python", "-c",
                    "import infra, shared; print(infra.path('migrations')); print(shared.__file__)"], cwd=work)
    assert all(Path(path).is_relative_to(installed) for path in located.split()), located  # not the checkout

    database = tmp_path / "given.sqlite3"
    _run([nocontact, "migrate"], cwd=work, NOCONTACT_DATABASE_URL=f"sqlite:///{database}")
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        heads = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    assert {"events", "alembic_version"} <= tables
    from alembic.script import ScriptDirectory

    import infra

    migrations = ScriptDirectory(str(infra.path("migrations")))
    applied = {revision.revision for revision in migrations.iterate_revisions(tuple(heads), "base")}
    assert applied == {revision.revision for revision in migrations.walk_revisions()}

    # No URL: the embedded database goes to ./var of the working directory, not site-packages.
    _run([nocontact, "migrate"], cwd=work)
    assert (work / "var" / "nocontact.sqlite3").is_file()
    assert not list(installed.rglob("var")), "a data directory inside the installed package"


def test_the_var_dir_is_the_working_directorys_unless_the_environment_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOCONTACT_VAR_DIR")
    assert config.var_dir() == tmp_path / "var"
    monkeypatch.setenv("NOCONTACT_VAR_DIR", "data")  # relative: to the working directory, made absolute
    assert config.var_dir() == tmp_path / "data"
    assert config.database_url() == f"sqlite:///{tmp_path / 'data' / 'nocontact.sqlite3'}"


def test_the_runtime_code_finds_its_packaged_files() -> None:
    import infra
    from services import runner

    assert (infra.path("migrations") / "env.py").is_file()
    assert infra.path("gunicorn.conf.py").is_file()
    assert infra.path("rabbitmq/definitions.json").is_file()
    assert "infra.path(\"gunicorn.conf.py\")" in Path(runner.__file__).read_text()


# -- the image -----------------------------------------------------------------------------------


def _dockerignored() -> list[str]:
    return [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_the_image_installs_the_runtime_lock_only_into_a_slim_non_root_image() -> None:
    dockerfile = (REPO_ROOT / "infra" / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    assert len(stages) == 2, "a build stage and a runtime stage"
    build, runtime = stages
    assert "-r requirements-runtime.lock" in build and "--no-deps" in build
    assert "pip check" in build
    assert "requirements.lock" not in dockerfile.replace("requirements-runtime.lock", "")
    assert " -e " not in dockerfile and "editable" not in dockerfile
    assert "pip wheel" in build and "nocontact-*.whl" in build
    for tool in ("playwright", "ruff", "py-spy", "pytest", "hypothesis", "schemathesis", "[dev]", "[test]"):
        assert tool not in dockerfile, tool
    image = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim", dockerfile, re.M)
    assert image and image.group(1) == "3.11"
    assert runtime.startswith("${PYTHON_IMAGE}\n")
    # The runtime stage takes the environment and nothing else from the build.
    copies = [line for line in runtime.splitlines() if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/nocontact /opt/nocontact"]
    user = re.findall(r"^USER (\S+)", runtime, re.M)
    assert user == ["nocontact"]
    assert "--uid 10001" in runtime


def test_everything_the_image_copies_exists_and_reaches_the_build_context() -> None:
    ignored = _dockerignored()
    copies = _dockerfile_copies()
    assert {"requirements-runtime.lock", "pyproject.toml", "README.md", "LICENSE", "shared", "services",
            "infra"} == set(copies)
    for source in copies:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file"
        assert source not in ignored and f"{source}/" not in ignored, f".dockerignore drops {source}"
    assert "requirements.lock" in ignored, "the full lock (test tools) must not reach the image build"


# -- make ----------------------------------------------------------------------------------------


def _make_dry_run(target: str) -> str:
    return _run(["make", "--no-print-directory", "--dry-run", "--always-make", target], cwd=REPO_ROOT)


def test_make_run_installs_the_runtime_lock_and_says_what_it_is_doing() -> None:
    commands = _make_dry_run("run")
    assert "pip install -r requirements-runtime.lock" in commands
    assert "requirements.lock" not in commands.replace("requirements-runtime.lock", "")
    assert "--quiet" not in commands and " -q " not in commands, "pip's own progress is what a newcomer sees"
    assert len(re.findall(r"^echo \"==> ", commands, re.M)) >= 3
    assert commands.rstrip().endswith(".venv/bin/nocontact run")


def test_make_test_builds_the_venv_with_the_test_tools() -> None:
    commands = _make_dry_run("test")
    assert "pip install -r requirements-runtime.lock" in commands
    assert "pip install -r requirements.lock" in commands
    assert "-m pytest" in commands


# -- release files -------------------------------------------------------------------------------


def test_licence_changelog_and_security_policy() -> None:
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text() and PROJECT["license"] == "Apache-2.0"
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in changelog
    assert re.search(r"^## \[Unreleased\]$", changelog, re.M)
    assert re.search(rf"^## \[{re.escape(PROJECT['version'])}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
    security = (REPO_ROOT / "SECURITY.md").read_text()
    minor = ".".join(PROJECT["version"].split(".")[:2])
    assert "Supported versions" in security and f"{minor}.x" in security
    assert "Reporting a vulnerability" in security
