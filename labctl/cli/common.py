"""Shared options and the Typer app every command module registers on."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from labctl import const
from labctl.client import Client
from labctl.errors import InvalidInput

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="labctl: Heroku's dyno platform, reproduced on one machine with Docker.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

Lab = Annotated[str, typer.Option("--lab", envvar="LABCTL_LAB", help="Which lab (default: 'default').")]
AppOpt = Annotated[str | None, typer.Option("-a", "--app", envvar="LABCTL_APP", help="The app to act on.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DEFAULT_LAB = const.DEFAULT_LAB


def client(lab: str) -> Client:
    return Client(lab)


def require_app(name: str | None) -> str:
    if not name:
        raise InvalidInput("Missing required flag: -a, --app APP  (or set LABCTL_APP)")
    return name


def env_default_lab() -> str:
    return os.environ.get("LABCTL_LAB", const.DEFAULT_LAB)
