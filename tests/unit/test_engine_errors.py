"""Docker SDK errors leave labctl.engine as the lab's errors (engine/translate.py), with no engine: fake clients
raise what docker-py raises. The doctor's report when the engine is unreachable needs no engine either."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from labctl import doctor
from labctl.domain.faults import KINDS
from labctl.engine import build
from labctl.engine.docker import Engine
from labctl.engine.faults import FaultEngine
from labctl.engine.translate import translate, translate_errors, translated
from labctl.errors import EngineError, EngineUnavailable, InvalidInput, LabError


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    cls = docker.errors.NotFound if status == 404 else docker.errors.APIError
    return cls(f"{status} Client Error", response=response, explanation=explanation)


def test_an_engine_refusal_is_engine_error_with_the_daemons_words():
    err = translate(_api_error(409, "Conflict. The container name is already in use"))
    assert type(err) is EngineError
    assert str(err) == "Docker engine error: Conflict. The container name is already in use"
    assert err.id == "engine_error" and err.http_status == 502


@pytest.mark.parametrize(
    "raw",
    [
        requests.exceptions.ConnectionError("Connection refused"),
        requests.exceptions.ReadTimeout("read timed out"),
        docker.errors.DockerException("Error while fetching server API version"),
    ],
)
def test_an_engine_that_does_not_answer_is_engine_unavailable(raw):
    err = translate(raw)
    assert isinstance(err, EngineUnavailable) and str(err).startswith("Docker engine is not reachable (")


def test_the_block_raises_the_translation_chained_and_lets_lab_errors_through():
    raw = _api_error(500, "boom")
    with pytest.raises(EngineError) as err:
        with translated():
            raise raw
    assert err.value.__cause__ is raw
    with pytest.raises(InvalidInput):
        with translated():
            raise InvalidInput("bad")
    with pytest.raises(KeyError):  # not the engine's: untouched
        with translated():
            raise KeyError("x")


@translate_errors
class Adapter:
    def call(self):
        raise _api_error(500, "refused")

    def stream(self):
        yield 1
        raise requests.exceptions.ConnectionError("gone")

    def _private(self):
        raise _api_error(500, "raw inside the adapter")


def test_the_class_decorator_wraps_public_methods_and_generators():
    with pytest.raises(EngineError, match="refused"):
        Adapter().call()
    with pytest.raises(EngineUnavailable):
        list(Adapter().stream())
    with pytest.raises(docker.errors.APIError):
        Adapter()._private()


class _Containers:
    def __init__(self, error: Exception):
        self.error = error

    def get(self, container_id):
        raise self.error


class _Api:
    def __init__(self, error: Exception):
        self.error = error

    def update_container(self, *a, **kw):
        raise self.error

    def remove_container(self, *a, **kw):
        raise self.error

    def build(self, **kw):
        raise self.error


class FakeClient:
    """Raises ``error`` from every call the tests below make."""

    def __init__(self, error: Exception):
        self.containers, self.api = _Containers(error), _Api(error)
        self.error = error

    def ping(self):
        raise self.error


def test_engine_methods_raise_lab_errors_only():
    engine = Engine(FakeClient(_api_error(500, "server error")), "t")
    with pytest.raises(EngineError, match="server error"):
        engine.info("abc")
    with pytest.raises(EngineUnavailable):
        Engine(FakeClient(requests.exceptions.ConnectionError("refused")), "t").ping()


def test_already_gone_stays_a_quiet_answer_inside_the_adapter():
    engine = Engine(FakeClient(_api_error(404, "No such container: abc")), "t")
    assert engine.try_info("abc") is None
    assert engine.terminate("abc", 0.1) == (None, False)
    assert engine.wait_for_exit("abc", 0.1) is True
    engine.remove("abc")  # nothing to remove: no error
    assert FaultEngine(engine).set_cpu("abc", 0.5) is None  # the dyno exited meanwhile: nothing to throttle
    with pytest.raises(LabError, match="container abc is gone"):
        FaultEngine(engine).sandbox_state("abc")


def test_fault_engine_raises_lab_errors_only():
    engine = Engine(FakeClient(_api_error(500, "cannot update")), "t")
    with pytest.raises(EngineError, match="cannot update"):
        FaultEngine(engine).set_cpu("abc", 0.5)


def test_a_refused_build_is_build_failed_and_a_lost_engine_unavailable():
    from labctl.errors import BuildFailed

    with pytest.raises(BuildFailed, match="^Build failed: no space left$"):
        build.run_build(
            FakeClient(_api_error(500, "no space left")), build.tar_context({}), tag="t", what="Build", progress=print
        )
    with pytest.raises(EngineUnavailable, match="failed during the build"):
        build.run_build(
            FakeClient(requests.exceptions.ConnectionError("reset")),
            build.tar_context({}),
            tag="t",
            what="Build",
            progress=print,
        )


def test_doctor_without_an_engine_reports_it_and_no_fault_kind(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")  # nothing listens on port 1
    report = doctor.gather("nolab").as_dict()
    assert report["ok"] is False and report["lab"] == "nolab"
    [check] = report["checks"]
    assert (check["name"], check["status"]) == ("engine", "error")
    assert check["detail"].startswith("Docker engine is not reachable (") and "\n" not in check["detail"]
    assert report["faults"]["cpu"] == {"supported": False, "reason": "the engine is not reachable"}
    assert set(report["faults"]) == set(KINDS)
