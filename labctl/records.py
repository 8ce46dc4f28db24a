"""The lab's records: the store's rows and the API's JSON views, each a TypedDict with one meaning per key.

TypedDicts rather than dataclasses because both kinds cross a JSON or SQLite boundary as plain dicts: the store
decodes a row into one (``store.py``), the API serializes a view as it is, and the type checker still knows every
key. Records built in code and never serialized are dataclasses next to their code (``domain.formation.Process``,
``context.Terminating``).

Names, the same everywhere in ``labctl/controller`` and ``labctl/store.py``:

- ``app`` is an app's NAME (``str``); its row is ``app_row`` (``AppRow``).
- ``dyno`` is a dyno's NAME (``web.1``); its row is ``row`` (``DynoRow``); an old generation's row is ``old``
  (``OldDynoRow``).
- ``version`` is a release number; a release's row is ``rel`` (``ReleaseRow``).
- ``iid`` (or a row's ``instance`` key) is an instance id; its row is ``inst`` (``InstanceRow``).
- ``sb`` is a ``SandboxRow``; ``cid`` (or a row's ``container`` key) a container id.
- A view (what the API answers) is named after what it shows: ``view`` or ``<thing>_view`` (``DynoView`` …).

SQLite has no booleans: flags in rows (``maintenance``, ``one_off``, ``attach``, ``routed``) are 0/1 ``int``;
the views turn them into JSON booleans. Times in rows are Unix timestamps; views give ISO 8601 strings.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# -- parts of rows -------------------------------------------------------------------------------------------


class ProcessDict(TypedDict):
    """One process type of an app's formation as stored (``domain.formation.Process`` as a dict)."""

    type: str
    quantity: int
    size: str
    command: str


class Rollout(TypedDict, total=False):
    """What rollout is in progress on an app (``controller/rollout.py``); ``{}`` when none.

    ``{"kind": "deploy", "release", "switch_at", "switched"}`` (preboot deploy), ``{"kind": "restart"}`` (preboot
    restart), ``{"kind": "rolling", "release", "pending", "batch"}`` (Private Space rolling deploy).
    """

    kind: str
    release: int
    switch_at: float
    switched: bool
    pending: list[str]
    batch: list[str]


# A fault as stored in ``instances.faults``: ``{"id", "kind", <params>, "created_at", "expires_at"}``; its keys
# depend on its kind (``controller/faults.py`` builds and reads it).
Fault = dict[str, Any]

# -- store rows ----------------------------------------------------------------------------------------------


class SpaceRow(TypedDict):
    id: str  # a UUID, the Platform API's identity (kept for the space's life)
    name: str
    created_at: float
    updated_at: float | None


class AppRow(TypedDict):
    id: str  # a UUID, the Platform API's identity (kept for the app's life, across renames)
    name: str
    space: str | None  # None: the Common Runtime
    maintenance: int
    features: dict[str, bool]
    config: dict[str, str]
    formation: dict[str, ProcessDict]  # by process type
    created_at: float
    updated_at: float | None
    rollout: Rollout


class ReleaseRow(TypedDict):
    id: str  # a UUID (Platform API rollbacks name a release by it)
    app: str
    version: int
    image: str | None  # None while the build runs (status "pending")
    procfile: dict[str, str]  # process type -> command
    config: dict[str, str]
    description: str
    status: str  # pending | succeeded | failed
    created_at: float
    updated_at: float | None


class InstanceRow(TypedDict):
    id: str
    runtime: str  # "common" (the pool) or the Private Space's name
    state: str
    created_at: float
    faults: list[Fault]
    ready_at: float | None  # provisioning until then (None: ready since its creation)
    size: str | None  # the dyno size a dedicated instance is for (None: a Common Runtime pool instance)


class SandboxRow(TypedDict):
    instance: str
    app: str
    container: str
    ip: str


class DynoRow(TypedDict):
    id: NotRequired[str]  # a UUID given by the store when the row is added (a new dyno: a new id)
    created_at: NotRequired[float]
    app: str
    name: str
    type: str
    size: str
    command: str
    release: int
    instance: str | None
    state: str  # starting | up | crashed
    updated_at: float
    container: str | None
    port: int | None  # web dynos only
    crashes: int
    next_start: float | None  # due to start (again) at this time
    boot_deadline: float | None  # R10 after this time
    up_since: float | None
    cycle_at: float | None
    one_off: int
    attach: int


class OldDynoRow(TypedDict):
    """A previous generation preboot keeps serving (hidden from ``ps``, shown by ``ps --all``)."""

    container: str
    app: str
    name: str
    instance: str | None
    port: int | None
    release: int
    size: str
    command: str
    started_at: float
    routed: int
    retire_at: float | None


class LogRow(TypedDict):
    id: int
    app: str
    ts: float
    source: str  # heroku | app
    dyno: str  # web.1, router, api
    msg: str


class DrainRow(TypedDict):
    id: str  # a UUID
    app: str
    url: str
    token: str  # d.<uuid>
    created_at: float
    updated_at: float
    cursor: int  # the last log line id given to the drain


# -- API views -----------------------------------------------------------------------------------------------


class Ref(TypedDict):
    """A nested reference to another object: ``{id, name}`` (an app, a space, a stack, a region)."""

    id: str
    name: str


class VersionRef(TypedDict):
    """A dyno's release: ``{id, version}`` (``id`` None only for a version the store no longer has)."""

    id: str | None
    version: int


class DynoExtended(TypedDict):
    """Where a dyno runs (``ps --extended``), keys as the Platform API's ``extended`` object."""

    region: str
    execution_plane: str  # "common" or "space:NAME"
    instance: str | None
    ip: str | None  # the address of the dyno's network sandbox on its instance
    port: int | None


class _DynoViewBase(TypedDict):
    id: str
    created_at: str | None
    attach_url: str | None
    name: str
    type: str
    state: str
    size: str
    command: str
    instance: str | None
    release: VersionRef
    updated_at: str | None
    app: Ref
    port: int | None
    container: str | None
    attach: bool
    extended: NotRequired[DynoExtended]


class DynoView(_DynoViewBase):
    """A dyno as ``ps --json`` shows it."""

    cycle_at: str | None
    crashes: int
    next_start: str | None


class OldDynoView(_DynoViewBase):
    """An old generation as ``ps --all --json`` shows it."""

    old: bool
    routed: bool
    retire_at: str | None


class SpaceRef(Ref):
    shared: bool


class AppView(TypedDict):
    """``apps:info --json``: the Platform API's app, plus ``features``, ``release`` (version) and ``formation``."""

    id: str
    name: str
    created_at: str | None
    updated_at: str | None
    released_at: str | None
    space: SpaceRef | None
    maintenance: bool
    stack: Ref
    build_stack: Ref
    region: Ref
    generation: Ref
    owner: dict[str, str]
    organization: None
    team: None
    acm: bool
    internal_routing: bool | None
    archived_at: None
    buildpack_provided_description: None
    git_url: None
    web_url: None
    repo_size: None
    slug_size: None
    features: dict[str, bool]
    release: int | None
    formation: list[dict[str, Any]]


class InstanceView(TypedDict):
    """``instances --json``: an instance and the dynos (``app/web.1``) it hosts."""

    id: str
    runtime: str
    state: str  # running | provisioning
    created_at: str | None
    ready_at: str | None  # when a provisioning instance can start dynos (None: ready since its creation)
    dynos: list[str]
    faults: list[Fault]
    dedicated_to: str | None  # the dyno size of a dedicated instance (None: a Common Runtime pool instance)
    budget: dict[str, Any] | None  # {"cpus", "memory_mb", "enforced"}: what the instance is sized for
    limit: dict[str, Any] | None  # {"cpus", "memory_mb"}: what its dynos share now (its faults applied)
    usage: dict[str, Any] | None  # {"cpus", "memory_mb"}: read live from its parent cgroup (None: not readable)


class FeatureView(TypedDict):
    id: str
    name: str
    display_name: str
    description: str
    enabled: bool
    state: str
    doc_url: str
    feedback_email: None
    created_at: str | None
    updated_at: str | None


# ``releases --json``: the Platform API's release plus the lab's ``image``, ``procfile`` and ``config``
# (``controller/views.release_view``).
ReleaseView = dict[str, Any]


class _RouterStatus(TypedDict):
    url: str
    port: int
    app_url: str


class RouterStatus(_RouterStatus, total=False):
    """Where the router listens; the ``https_*`` keys and ``ca_cert`` only when the lab serves HTTPS."""

    https_url: str
    https_port: int
    https_app_url: str
    ca_cert: str


class RouterRow(TypedDict):
    """A router container: ``runtime`` is ``common`` or a space's name; ``address`` where it listens."""

    runtime: str
    container: str
    state: str
    address: str


class ApiStatus(TypedDict):
    """Where the lab's Platform API listens (the base URL for a Heroku API client; the token: ``auth:token``)."""

    url: str


class LabStatus(TypedDict):
    """``status --json``: the lab, its router and controller, and how much it runs."""

    lab: str
    router: RouterStatus
    routers: list[RouterRow]  # one per runtime: common (the published listener) and each Private Space's
    timescale: float
    pool_size: int
    provision_time: float  # seconds a new runtime instance provisions, before the time scale
    placement: str  # how the Common Runtime's pool takes new dynos: spread | packed
    controller_pid: int
    uptime_s: float
    apps: int
    spaces: int
    dynos: int
    instances: int
    state_dir: str
    engine: str  # ok | unreachable
    api: ApiStatus
    swarm_nodes: list[SwarmNodeRow]  # the nodes of the settings' swarm_nodes, as the controller reached them


class SwarmNodeRow(TypedDict):
    name: str  # the node engine's hostname (its name in the swarm); "" for a node not reached
    url: str  # its Docker API as docker-py calls it (https://… when TLS); as the settings name it if not reached
    tls: bool  # client certificate presented, node certificate verified
    reached: bool  # False: it did not answer when the controller started (left out, see controller.log)


# A fault as the API shows it: the stored ``Fault`` plus ``instance``, ``runtime``, ``description`` and the
# ``dynos`` (``app/web.1``) on its instance.
FaultView = dict[str, Any]
