"""One error tree (style.md §6): core code raises these; the CLI prints one line and exits non-zero.

Each class has the ``id`` that the API puts in its error body (``{"id": "not_found", "message": …}``, the
Platform API's shape) and the status it answers with; the API client maps an error body back to the same class
by its ``id`` (``error_for``), so a caller catches the class the controller raised.
"""

from __future__ import annotations


class LabError(Exception):
    """Base of every error a user can act on. ``str(err)`` is the one line shown."""

    exit_code = 1
    http_status = 400
    id = "bad_request"


class InvalidInput(LabError):
    """The user's input is malformed (name, grammar, file)."""

    http_status = 422
    id = "invalid_params"


class NotFound(LabError):
    """An app, space, dyno, release or instance that does not exist."""

    http_status = 404
    id = "not_found"


class Conflict(LabError):
    """The request clashes with the current state (name taken, preboot in progress)."""

    http_status = 409
    id = "conflict"


class MethodNotAllowed(LabError):
    """A path the API has, with a method it does not take."""

    http_status = 405
    id = "method_not_allowed"


class TooLarge(LabError):
    """A request body over the API's limit."""

    http_status = 413
    id = "request_too_large"


class EngineError(LabError):
    """The Docker engine refused or failed an operation (raised only by ``labctl.engine``)."""

    http_status = 502
    id = "engine_error"


class EngineUnavailable(EngineError):
    """The Docker engine does not answer."""

    http_status = 503
    id = "engine_unavailable"


class ControllerUnavailable(LabError):
    """The lab's controller does not answer (lab not up, or it died)."""

    http_status = 503
    id = "controller_unavailable"


class BuildFailed(LabError):
    """An image or slug build failed; the message carries the reason."""

    http_status = 422
    id = "build_failed"


def _subclasses(cls: type[LabError]) -> list[type[LabError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


def error_for(error_id: str | None, status: int) -> type[LabError]:
    """The class whose ``id`` is ``error_id``; else the first whose status matches; else ``LabError``."""
    classes = _subclasses(LabError)
    for cls in classes:
        if cls.id == error_id:
            return cls
    for cls in classes[1:]:
        if cls.http_status == status:
            return cls
    return LabError
