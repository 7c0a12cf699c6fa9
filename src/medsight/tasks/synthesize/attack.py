"""Synthesis runs and ``medsight robustness`` / ``medsight attack``: a generator has no decision to
attack, so both verbs answer a ConfigError that says so."""

from __future__ import annotations

from typing import Any

from medsight.errors import ConfigError
from medsight.runs import Run


def _refuse(run: Run) -> ConfigError:
    return ConfigError(
        f"{run.path} is a synthesis run: attacks and robustness need a model that decides "
        "(a generator makes pictures; it has no decision to flip)"
    )


def attack_adapter(run: Run, split: str, max_cases: int | None = None) -> Any:
    raise _refuse(run)


def file_attacker(run: Run) -> Any:
    raise _refuse(run)
