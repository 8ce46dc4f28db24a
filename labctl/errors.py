"""One error tree (style.md §6): core code raises these; the CLI prints one line and exits non-zero."""


class LabError(Exception):
    """Base of every error a user can act on. ``str(err)`` is the one line shown."""

    exit_code = 1
    http_status = 400


class InvalidInput(LabError):
    """The user's input is malformed (name, grammar, file)."""

    http_status = 422


class NotFound(LabError):
    """An app, space, dyno, release or instance that does not exist."""

    http_status = 404


class Conflict(LabError):
    """The request clashes with the current state (name taken, preboot in progress)."""

    http_status = 409


class EngineUnavailable(LabError):
    """The Docker engine does not answer."""

    http_status = 503


class ControllerUnavailable(LabError):
    """The lab's controller does not answer (lab not up, or it died)."""

    http_status = 503


class BuildFailed(LabError):
    """An image or slug build failed; the message carries the reason."""

    http_status = 422
