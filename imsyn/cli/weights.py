"""``python -m imsyn weights list|fetch``: the pretrained networks and their cache.

``weights list [--json]`` shows every network (name, status, path, sha256 of the
published file, source, licence). ``weights fetch NAME|all [--force] [--file PATH]``
downloads the published file from its first working source, checks its sha256,
converts it and writes it atomically into the cache (see :mod:`imsyn.weights`).
This is the only command in imsyn that uses the network.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every network: status, path, sha256, source, licence")
    ls.add_argument("--json", action="store_true", help="one JSON object per network")
    fe = sub.add_parser("fetch", help="download, verify (sha256) and convert into the cache")
    fe.add_argument(
        "names", nargs="+", metavar="NAME", help="vgg19, inception_fid, lpips_vgg16 or all"
    )
    fe.add_argument("--force", action="store_true", help="fetch again even when cached")
    fe.add_argument(
        "--file",
        metavar="PATH",
        help="a local copy of the published weights file (one NAME): verified and converted",
    )


def _names(given: list[str]) -> list[str]:
    from imsyn import weights

    if "all" in given:
        return list(weights.NETWORKS)
    for name in given:
        weights.get(name)  # one line naming an unknown network, before any work
    return list(dict.fromkeys(given))


def run(args: argparse.Namespace) -> int:
    from imsyn import weights
    from imsyn.errors import InputError

    if args.action == "list":
        rows = [weights.status(name) for name in weights.NETWORKS]
        if args.json:
            for row in rows:
                print(json.dumps(row))
        else:
            for row in rows:
                print(f"{row['name']:<14} {row['status']:<8} {row['path']}")
                for key in ("sha256", "source", "licence", "used_by"):
                    print(f"{'':<14} {key}: {row[key]}")
        return 0
    names = _names(args.names)
    if args.file and len(names) != 1:
        raise InputError("--file takes exactly one network name")
    for name in names:
        was_cached = weights.cached(name) is not None and not args.force and not args.file
        path = weights.fetch(name, force=args.force, file=args.file)
        print(f"{name}: {'already cached' if was_cached else 'fetched and verified'}: {path}")
    return 0
