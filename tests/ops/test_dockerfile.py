"""Dockerfile and .dockerignore: slim multi-stage build, non-root user, no secrets in the image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


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


def test_multi_stage_build_on_python_311_slim() -> None:
    stages = _stages()
    assert len(stages) >= 2, "build the wheel in one stage, run from another"
    for stage in stages:
        assert _image(stage[0][1]) == "python:3.11-slim"
    final = stages[-1]
    assert any(word == "COPY" and "--from=" in rest for word, rest in final)


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
    assert ("ENTRYPOINT", "[]") in final
    assert ("CMD", '["rotator", "--help"]') in final
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "[flower]" in text, "the image needs Flower (the `flower` extra)"


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
