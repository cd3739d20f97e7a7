"""Every ``chargeflow`` command and sub-command answers ``--help`` (the help is rich
markup: a ``[/X]`` in a help text broke ``chargeflow simulate --help``)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from chargeflow.cli import app


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The group's own path, then each command's, sub-groups walked (click objects)."""
    found = [prefix]
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_group(app))


def test_every_command_is_found() -> None:
    assert {("simulate",), ("run",), ("dashboards", "publish"), ("tariff", "price")} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "chargeflow")
def test_help_renders(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Usage:" in result.output
