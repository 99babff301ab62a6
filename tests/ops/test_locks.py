"""requirements/*.lock: the hashed locks the Dockerfile installs from (written by scripts/lock).

Each lock must pin, with hashes, every dependency that pyproject.toml declares for its
image, at a version the declaration allows; the runtime and sandbox locks must agree on
every package they share (the sandbox image installs one on top of the other).
Transitive completeness is checked where it can be: `pip check` in the image build, and
here for the extras of declared requirements (``celery[redis]`` needs ``redis``) as far as
this venv's installed metadata tells.
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
SCRIPT = ROOT / "scripts" / "lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: The image: Linux, CPython 3.11 (markers of declared requirements are evaluated for it).
IMAGE_ENVIRONMENT: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "python_version": "3.11",
    "python_full_version": "3.11.17",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
#: Lock file -> the pyproject requirements it must cover.
COVERS = {
    "runtime.lock": ("dependencies", "flower"),
    "sandbox.lock": ("dependencies", "flower", "sandbox"),
    "build.lock": ("build-system",),
}

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s\\;]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def declared(groups: tuple[str, ...]) -> list[Requirement]:
    """The requirements pyproject.toml declares in these groups (extras by name)."""
    project = PYPROJECT["project"]
    found: list[str] = []
    for group in groups:
        if group == "dependencies":
            found += project["dependencies"]
        elif group == "build-system":
            found += PYPROJECT["build-system"]["requires"]
        else:
            found += project["optional-dependencies"][group]
    requirements = [Requirement(text) for text in found]
    return [
        r
        for r in requirements
        if canonicalize_name(r.name) != "redox-rotator"
        and (r.marker is None or r.marker.evaluate(IMAGE_ENVIRONMENT))
    ]


def parse_lock(text: str) -> tuple[dict[str, Version], list[str]]:
    """The pins of a lock ({name: version}) and its problems (a pin without hashes, an
    unpinned requirement, an option line that would change where pip looks)."""
    pins: dict[str, Version] = {}
    problems: list[str] = []
    # A requirement with its `\`-continued --hash lines is one logical line.
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("-"):
            problems.append(f"option line in a lock: {stripped[:60]}")
            continue
        pin = PIN.match(stripped)
        if pin is None:
            problems.append(f"not pinned with ==: {stripped[:60]}")
            continue
        name = canonicalize_name(pin["name"])
        if "[" in stripped.split()[0]:
            problems.append(f"{name}: extras in a lock line")
        if not HASH.search(stripped):
            problems.append(f"{name}: no --hash")
        if name in pins:
            problems.append(f"{name}: pinned twice")
        pins[name] = Version(pin["version"])
    return pins, problems


def coverage_problems(pins: dict[str, Version], requirements: list[Requirement]) -> list[str]:
    """Declared requirements that the lock misses or pins outside their specifier."""
    problems = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement}: the lock has {pins[name]}")
    return problems


def extra_problems(pins: dict[str, Version], requirements: list[Requirement]) -> list[str]:
    """What the extras of declared requirements bring (``celery[redis]`` -> ``redis``) and
    the lock misses; read from this venv's installed metadata where it has the package."""
    problems = []
    for requirement in requirements:
        if not requirement.extras:
            continue
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            needed = Requirement(text)
            if needed.marker is None:
                continue
            wanted = any(
                needed.marker.evaluate({**IMAGE_ENVIRONMENT, "extra": extra})
                for extra in requirement.extras
            )
            if wanted and canonicalize_name(needed.name) not in pins:
                problems.append(f"{requirement} needs {needed.name}: not in the lock")
    return problems


def _lock(name: str) -> str:
    path = LOCKS / name
    assert path.is_file(), f"{path} is missing: run scripts/lock"
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(COVERS))
def test_every_line_of_the_lock_is_pinned_with_hashes(name: str) -> None:
    pins, problems = parse_lock(_lock(name))
    assert problems == []
    assert pins


@pytest.mark.parametrize("name", sorted(COVERS))
def test_lock_covers_every_declared_dependency(name: str) -> None:
    pins, _ = parse_lock(_lock(name))
    requirements = declared(COVERS[name])
    assert requirements
    assert coverage_problems(pins, requirements) == []
    assert extra_problems(pins, requirements) == []


def test_runtime_and_sandbox_locks_agree() -> None:
    runtime, _ = parse_lock(_lock("runtime.lock"))
    sandbox, _ = parse_lock(_lock("sandbox.lock"))
    assert set(runtime) <= set(sandbox), "sandbox.lock is installed over runtime.lock"
    differ = {n: (runtime[n], sandbox[n]) for n in runtime if runtime[n] != sandbox[n]}
    assert differ == {}
    tooling = {canonicalize_name(r.name) for r in declared(("sandbox",))}
    assert tooling <= set(sandbox)
    assert not tooling & set(runtime), "the production image has no sandbox tooling"


@pytest.mark.parametrize("name", sorted(COVERS))
def test_lock_names_its_generator_and_no_machine_paths(name: str) -> None:
    text = _lock(name)
    assert "#    scripts/lock" in text, "the header must say how to regenerate the file"
    for leak in ("/tmp/", "/opt/", "file://", str(ROOT), "--index-url", "--find-links"):
        assert leak not in text, leak


def test_lock_checks_catch_bad_locks() -> None:
    good = "a==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via x\n"
    assert parse_lock(good) == ({"a": Version("1.0")}, [])
    _, problems = parse_lock("a==1.0\nb>=2 \\\n    --hash=sha256:" + "1" * 64 + "\n")
    assert problems[0] == "a: no --hash"
    assert problems[1].startswith("not pinned with ==: b>=2")
    assert len(problems) == 2
    _, problems = parse_lock("--extra-index-url https://example.invalid/simple\n")
    assert problems == ["option line in a lock: --extra-index-url https://example.invalid/simple"]
    pins = {"celery": Version("5.3.0")}
    assert coverage_problems(pins, [Requirement("celery>=5.4"), Requirement("kombu")]) == [
        "celery>=5.4: the lock has 5.3.0",
        "kombu: not in the lock",
    ]


def test_scripts_lock_regenerates_all_three_with_hashes() -> None:
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text(encoding="utf-8")
    assert "--generate-hashes" in text
    for name in COVERS:
        assert f"requirements/{name}" in text, name
    dev = [Requirement(r).name for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
    assert "pip-tools" in dev, "scripts/lock runs pip-compile: pip-tools belongs in `dev`"
