"""Names shared by every layer: Docker label keys, image names, defaults.

Labels are the runtime truth (style.md §5): every Docker object the lab makes carries
``io.labctl.lab=<lab>`` plus ``io.labctl.kind`` and, where it applies, app/dyno/instance/release.
Shared images (base, stack) carry ``io.labctl.image`` instead of ``io.labctl.lab`` so that
``labctl down`` keeps them: rebuilding them takes a minute.
"""

LABEL_LAB = "io.labctl.lab"
LABEL_KIND = "io.labctl.kind"  # one of the KIND_* below
LABEL_APP = "io.labctl.app"
LABEL_DYNO = "io.labctl.dyno"
LABEL_INSTANCE = "io.labctl.instance"
LABEL_RELEASE = "io.labctl.release"
LABEL_SPACE = "io.labctl.space"
LABEL_IMAGE = "io.labctl.image"  # base | stack (shared, not removed by `down`)
LABEL_STACK_HASH = "io.labctl.stack-hash"  # on the stack image: the Dockerfile and base it was built from
LABEL_SLUG_KEY = "io.labctl.slug-key"  # on a slug: its build's inputs (engine/images.py slug_key)
LABEL_CONTROLLER = "io.labctl.controller"  # on a container running a lab's controller (compose/): the lab's name
LABEL_STACK_BASE = "io.labctl.stack-base"  # on the stack image: the base image's name (`labctl doctor` shows it)
# On what `labctl swarm:local` makes (node containers, their volumes, the network joining them, the overlay
# network inside the swarm): the lab's name. Not io.labctl.lab: `labctl down` leaves the local swarm alone.
LABEL_SWARM = "io.labctl.swarm"
LABEL_NODE_HASH = "io.labctl.node-hash"  # on the swarm node image: its Dockerfile, entry script and base

KIND_ROUTER = "router"
KIND_SANDBOX = "sandbox"
KIND_DYNO = "dyno"
KIND_SLUG = "slug"
KIND_NETWORK = "network"
KIND_SWARM_NODE = "swarm-node"  # a Docker-in-Docker node of a local swarm (engine/swarm_nodes.py)
KIND_SWARM_VOLUME = "swarm-volume"  # a node's /var/lib/docker
KIND_SWARM_NETWORK = "swarm-network"  # the bridge joining the nodes on the host; the overlay inside the swarm
KIND_PROBE = "probe"  # the short-lived container that checks which fault kinds the engine supports

DEFAULT_LAB = "default"
STACK_NAME = "lab-24"
BASE_IMAGE = "labctl/base:trixie"
STACK_IMAGE = f"labctl/stack:{STACK_NAME}"
NODE_IMAGE = "labctl/swarm-node:trixie"  # a local swarm's node (images/swarm-node); io.labctl.image=swarm-node
STACK_PYTHON = "3.13"  # the stack's Python minor version (images/stack/Dockerfile: Debian trixie's python3)
SLUG_REPO = "labctl-slug"  # slugs are tagged labctl-slug/<lab>-<app>:v<version>
DEBIAN_SUITE = "trixie"

DEFAULT_HTTP_PORT = 5080
DEFAULT_HTTPS_PORT = 5443
ROUTER_CERT = "/etc/nginx/labctl/router.crt"  # inside the router container
ROUTER_KEY = "/etc/nginx/labctl/router.key"
DEFAULT_POOL_SIZE = 3

# Env var a dyno reads to learn the runtime instance it runs on (documented in README).
ENV_INSTANCE = "LABCTL_INSTANCE_ID"
