"""The conda environment.yml and pyproject.toml describe the same dependencies."""
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pip_list_from_environment_yml() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    deps = []
    for line in lines[start + 1:]:
        stripped = line.strip()
        if not stripped.startswith("- "):
            break
        deps.append(stripped[2:].strip())
    return deps


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = [d for d in _pip_list_from_environment_yml() if d != "-e ."]
    assert sorted(deps) == sorted(project["dependencies"])
    assert "-e ." in _pip_list_from_environment_yml()


def test_torch_stack_is_pinned():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "torchaudio==2.11.0"):
        assert pin in deps


@pytest.mark.parametrize("name", ["torch", "torchaudio", "soundfile", "papermill", "torchmetrics"])
def test_installed_packages_import(name):
    __import__(name)
