"""Images onto a local swarm's nodes without a registry: ``docker save`` on the host engine, ``docker load`` on
each node, as docker-py streams.

The host's save is read once and fed to every node's load at the same time (a bounded queue per node): saving
from the host's storage driver takes as long as one node's load here (~11 s each for the stack image), so a
save per node would double the wait.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker

from labctl.engine.swarm import NodeApi, has_image
from labctl.engine.translate import SDK_ERRORS, short, translating
from labctl.errors import EngineError

CHUNK = 1 << 20
_LOAD_ERRORS: tuple[type[Exception], ...] = (*SDK_ERRORS, EngineError)
QUEUE_CHUNKS = 16  # per node: 16 MiB in flight at most; a slower node slows the save, never the memory


class _Failed:
    """Put in a node's queue when the save fails: its load stops with the save's error."""

    def __init__(self, err: BaseException):
        self.err = err


class _Tee:
    """One source of chunks, one bounded queue per reader; a reader that gives up is dropped, never waited on."""

    def __init__(self, source: Iterator[bytes], readers: int):
        self.source = source
        self.queues: list[queue.Queue[Any]] = [queue.Queue(QUEUE_CHUNKS) for _ in range(readers)]
        self.gone = [threading.Event() for _ in range(readers)]

    def pump(self) -> None:
        """Feed every reader to the end of the source. When the source fails (or Ctrl-C lands here), each
        reader's queue is emptied and given the failure instead, so no load waits for more."""
        try:
            for chunk in self.source:
                for i in range(len(self.queues)):
                    self._put(i, chunk)
        except BaseException as err:
            for q in self.queues:
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(_Failed(err))
            if not isinstance(err, Exception):
                raise
            return
        for i in range(len(self.queues)):
            self._put(i, None)

    def _put(self, i: int, item: Any) -> None:
        while not self.gone[i].is_set():
            try:
                self.queues[i].put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def reader(self, i: int) -> Iterator[bytes]:
        try:
            while (item := self.queues[i].get()) is not None:
                if isinstance(item, _Failed):
                    raise EngineError(f"docker save failed: {short(item.err)}")
                yield item
        finally:
            self.gone[i].set()


@translating
def distribute(
    host: docker.DockerClient, ref: str, nodes: list[NodeApi], progress: Callable[[str], None]
) -> dict[str, float]:
    """``ref`` from the host engine onto every node that lacks it (same image id); seconds per node loaded.

    EngineError names the first node whose load failed; the others' loads are finished or abandoned by then."""
    image_id = host.images.get(ref).id
    todo = [n for n in nodes if not has_image(n, ref, image_id)]
    if not todo:
        return {}
    progress(f"Loading {ref} into {', '.join(n.name for n in todo)}…")
    tee = _Tee(host.api.get_image(ref, chunk_size=CHUNK), len(todo))  # by name: the tarball carries the tag
    took: dict[str, float] = {}
    errors: dict[str, str] = {}
    started = time.monotonic()

    def load(i: int, node: NodeApi) -> None:
        try:
            for _ in node.client.images.load(tee.reader(i)):
                pass
            took[node.name] = time.monotonic() - started
        except _LOAD_ERRORS as err:
            errors[node.name] = short(err)
        finally:
            tee.gone[i].set()

    threads = [threading.Thread(target=load, args=(i, n), daemon=True) for i, n in enumerate(todo)]
    for t in threads:
        t.start()
    tee.pump()
    for t in threads:
        t.join()
    if errors:
        name = sorted(errors)[0]
        raise EngineError(f"loading {ref} into swarm node {name} failed: {errors[name]}")
    missing = [n.name for n in todo if not has_image(n, ref, image_id)]
    if missing:
        raise EngineError(f"{ref} is not on swarm node(s) {', '.join(missing)} after loading it")
    return took
