"""``python -m labctl.controller serve|supervise --lab NAME`` (started by ``labctl up``).

``supervise --init`` is the controller as a Compose service (compose/docker-compose.yml): it creates the lab's
state with the settings given here when there is none, and builds the stack image it lacks, before serving.
"""

import argparse
import sys

from labctl import const
from labctl.controller.daemon import serve, supervise
from labctl.errors import LabError
from labctl.settings import Settings, check_settings


def main() -> int:
    p = argparse.ArgumentParser(prog="labctl.controller")
    p.add_argument("mode", choices=["serve", "supervise"])
    p.add_argument("--lab", required=True)
    p.add_argument("--init", action="store_true", help="create the lab's state and images when missing (Compose)")
    p.add_argument("--http-port", type=int, default=const.DEFAULT_HTTP_PORT)
    p.add_argument("--https-port", type=int, default=const.DEFAULT_HTTPS_PORT)
    p.add_argument("--timescale", type=float, default=1.0)
    p.add_argument("--pool-size", type=int, default=const.DEFAULT_POOL_SIZE)
    args = p.parse_args()
    if args.mode == "serve":
        return serve(args.lab)
    init = None
    if args.init:
        init = Settings(
            lab=args.lab,
            http_port=args.http_port,
            https_port=args.https_port,
            timescale=args.timescale,
            pool_size=args.pool_size,
        )
        try:
            check_settings(init)
        except LabError as err:
            print(f"labctl.controller: {err}", file=sys.stderr)
            return 2
    return supervise(args.lab, init)


if __name__ == "__main__":
    sys.exit(main())
