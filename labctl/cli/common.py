"""Shared options and the Typer app every command module registers on."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from labctl import const
from labctl.cli.dyno_commands import require_app as require_app  # the commands import it from here

if TYPE_CHECKING:
    from labctl.client import Client

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion, as Typer gives them
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="labctl: Heroku's dyno platform, reproduced on one machine with Docker.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

Lab = Annotated[str, typer.Option("--lab", envvar="LABCTL_LAB", help="Which lab (default: 'default').")]
AppOpt = Annotated[str | None, typer.Option("-a", "--app", envvar="LABCTL_APP", help="The app to act on.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DEFAULT_LAB = const.DEFAULT_LAB
F = TypeVar("F", bound=Callable[..., Any])


def command(name: str, *, aliases: Sequence[str] = (), hidden: Sequence[str] = (), **settings: Any) -> Callable[[F], F]:
    """Register ``fn`` as ``name`` and under each alias: the same callback, the same options.

    ``aliases`` are listed by ``labctl --help`` (``dyno:restart``), ``hidden`` ones work but are left out of it
    (``restart``), as the Heroku CLI's ``aliases`` and ``hiddenAliases``. An alias's ``--help`` is its command's,
    saying whose alias it is."""

    def register(fn: F) -> F:
        app.command(name, **settings)(fn)
        doc = inspect.getdoc(fn) or ""
        for alias in [*aliases, *hidden]:
            app.command(
                alias,
                help=f"{doc}\n\nAlias of {name}.",
                short_help=f"Alias of {name}.",
                hidden=alias in hidden,
                **settings,
            )(fn)
        return fn

    return register


def version() -> str:
    """labctl's version from its installed distribution's metadata (whatever the distribution is named)."""
    from importlib import metadata

    for dist in metadata.packages_distributions().get("labctl", []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    from labctl import __version__  # a checkout on sys.path without an install

    return __version__


def _print_version(value: bool) -> None:
    if value:
        import platform
        import sys

        typer.echo(f"labctl/{version()} {sys.platform}-{platform.machine()} python-{platform.python_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print labctl's version and exit.")
    ] = False,
) -> None:
    # no docstring: the app's help above is what `labctl --help` shows
    pass


def client(lab: str) -> Client:
    from labctl.client import Client  # here, not at the top: `labctl --help` needs no HTTP client

    return Client(lab)


def env_default_lab() -> str:
    return os.environ.get("LABCTL_LAB", const.DEFAULT_LAB)
