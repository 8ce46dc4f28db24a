"""``python -m labctl.controller serve|supervise --lab NAME`` (started by ``labctl up``)."""

import argparse
import sys

from labctl.controller.daemon import serve, supervise


def main() -> int:
    p = argparse.ArgumentParser(prog="labctl.controller")
    p.add_argument("mode", choices=["serve", "supervise"])
    p.add_argument("--lab", required=True)
    args = p.parse_args()
    return serve(args.lab) if args.mode == "serve" else supervise(args.lab)


if __name__ == "__main__":
    sys.exit(main())
