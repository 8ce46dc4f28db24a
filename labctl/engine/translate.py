"""Docker SDK errors become the lab's errors here, once (style.md §6), as docker-py's own
``create_api_error_from_http_exception`` maps an HTTP error to its error class.

Every public method of the engine adapters (``Engine``, ``FaultEngine``) runs inside ``translated()`` through the
``translate_errors`` class decorator, so no caller above ``labctl.engine`` sees a ``docker`` or ``requests``
exception: the engine refusing an operation is ``EngineError``, the engine not answering ``EngineUnavailable``.
Code inside the adapters that treats "already gone" as success keeps catching ``docker.errors.NotFound`` itself,
before the translation sees it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import docker.errors
import requests

from labctl.errors import EngineError, EngineUnavailable, LabError

SDK_ERRORS: tuple[type[Exception], ...] = (docker.errors.DockerException, requests.exceptions.RequestException)
"""What the Docker SDK raises: its own exceptions and the HTTP transport's."""

T = TypeVar("T")


def short(err: BaseException) -> str:
    """One line about ``err``: the daemon's explanation when there is one, else the first line of its text."""
    text = getattr(err, "explanation", None) or str(err) or type(err).__name__
    return str(text).strip().splitlines()[0][:200]


def translate(err: BaseException) -> EngineError:
    """The lab's error for a Docker SDK error: the engine not answering, or refusing/failing an operation."""
    if isinstance(err, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return EngineUnavailable(f"Docker engine is not reachable ({short(err)})")
    if isinstance(err, docker.errors.DockerException) and not isinstance(err, docker.errors.APIError):
        return EngineUnavailable(f"Docker engine is not reachable ({short(err)})")  # e.g. no socket at DOCKER_HOST
    return EngineError(f"Docker engine error: {short(err)}")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Run a block whose Docker SDK errors leave it as ``EngineError``; the lab's own errors pass through."""
    try:
        yield
    except LabError:
        raise
    except SDK_ERRORS as err:
        raise translate(err) from err


def translating(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` with its Docker SDK errors translated (a generator function: while it is iterated, too)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            with translated():
                return (yield from fn(*args, **kwargs))

        return gen

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        with translated():
            return fn(*args, **kwargs)

    return call


C = TypeVar("C", bound=type)


def translate_errors(cls: C) -> C:
    """Class decorator: every public method the class defines itself goes through ``translating``."""
    for name, value in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(value):
            continue
        setattr(cls, name, translating(value))
    return cls
