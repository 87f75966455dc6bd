"""The docs stay true to the code: environment variables, Settings fields and runbook CLI commands."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CODE_DIRS = ("features", "models", "training", "service", "notebooks", "benchmarks", "scripts")
CODE_FILES = ("polku.py", "Makefile", "Dockerfile", "tests/conftest.py")
_ENV_NAME = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)`")
# `polku <command> [args]` where a command starts: line start, `$(`, a backtick, or after env assignments.
_POLKU_CMD = re.compile(
    r"(?:^|\$\(|`)[ \t]*(?:[A-Z_]+=\S+[ \t]+)*polku ([a-z][a-z-]*)((?:[ \t]+[^\s`|;&)]+)*)", re.MULTILINE
)


@lru_cache(maxsize=1)
def _code_text() -> str:
    files = [p for d in CODE_DIRS for p in (REPO / d).rglob("*.py")]
    files += [REPO / f for f in CODE_FILES if (REPO / f).exists()]
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(files))


def _documented_env_vars() -> set[str]:
    """Names in the first column of the tables of docs/configuration.md."""
    names: set[str] = set()
    for line in (DOCS / "configuration.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(_ENV_NAME.findall(first_cell))
    return names


def _settings_env_vars() -> set[str]:
    return {f"POLKU_{name.upper()}" for name in Settings.model_fields}


def test_configuration_lists_variables() -> None:
    assert len(_documented_env_vars()) >= 15


def test_every_documented_env_var_exists_in_code() -> None:
    code = _code_text()
    settings_vars = _settings_env_vars()
    missing = sorted(v for v in _documented_env_vars() if v not in settings_vars and v not in code)
    assert not missing, f"documented in docs/configuration.md but not found in the code: {missing}"


def test_every_settings_field_is_documented() -> None:
    documented = _documented_env_vars()
    missing = sorted(_settings_env_vars() - documented)
    assert not missing, f"Settings fields missing from docs/configuration.md: {missing}"


def test_every_env_var_read_by_code_is_documented() -> None:
    read = set(re.findall(r"""environ(?:\.get)?\(\s*["']([A-Z][A-Z0-9_]+)["']""", _code_text()))
    read |= set(re.findall(r"""environ\.setdefault\(\s*["']([A-Z][A-Z0-9_]+)["']""", _code_text()))
    read |= set(re.findall(r"""environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]""", _code_text()))
    missing = sorted(read - _documented_env_vars())
    assert not missing, f"read by the code but missing from docs/configuration.md: {missing}"


def _runbook_commands() -> list[tuple[str, list[str]]]:
    """``(command, [--options])`` for every ``polku <command>`` in docs/runbook.md."""
    out: list[tuple[str, list[str]]] = []
    for cmd, rest in _POLKU_CMD.findall((DOCS / "runbook.md").read_text(encoding="utf-8")):
        options = re.findall(r"(--[a-z][a-z-]*)", rest)
        out.append((cmd, options))
    return out


def _help(*args: str) -> str:
    from polku import app

    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_runbook_names_commands() -> None:
    assert {cmd for cmd, _ in _runbook_commands()} >= {"train", "promote", "rollback", "token", "serve"}


def test_every_runbook_command_exists() -> None:
    listed = set(re.findall(r"^\W*([a-z][a-z-]*)\s", _help(), re.MULTILINE))
    missing = sorted({cmd for cmd, _ in _runbook_commands()} - listed)
    assert not missing, f"docs/runbook.md uses commands that `polku --help` does not list: {missing}"


@pytest.mark.parametrize("command", sorted({cmd for cmd, _ in _runbook_commands()}))
def test_runbook_options_exist(command: str) -> None:
    options = {opt for cmd, opts in _runbook_commands() if cmd == command for opt in opts}
    text = _help(command)
    missing = sorted(opt for opt in options if opt != "--help" and opt not in text)
    assert not missing, f"`polku {command}` has no option(s) {missing} used in docs/runbook.md"


def test_model_card_lists_every_feature() -> None:
    from features.pairs import FEATURE_NAMES

    text = (DOCS / "model-card.md").read_text(encoding="utf-8")
    missing = [name for name in FEATURE_NAMES if f"`{name}`" not in text]
    assert not missing, f"features missing from docs/model-card.md: {missing}"


def test_model_card_names_no_audit_attribute_as_feature() -> None:
    from features.pairs import FEATURE_NAMES

    assert not {"gender", "mother_tongue", "country_of_origin"} & set(FEATURE_NAMES)


@pytest.mark.parametrize("name", ["architecture", "data-contracts", "model-card", "algorithm-register", "runbook"])
def test_doc_exists_and_has_a_title(name: str) -> None:
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    assert text.startswith("# ")
    assert "TODO" not in text


def test_architecture_has_one_mermaid_diagram() -> None:
    assert (DOCS / "architecture.md").read_text(encoding="utf-8").count("```mermaid") == 1


def test_configuration_yaml_example_is_a_valid_train_config() -> None:
    import yaml

    from training.config import TrainConfig

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    TrainConfig.model_validate(yaml.safe_load(block.group(1)))
