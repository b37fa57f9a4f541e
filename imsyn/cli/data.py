"""``python -m imsyn data list|fetch|path``: the course's images and their cache.

``data list [--json] [--files]`` shows every set (course, prokudin, poisson, nst, cats):
status, files, size, location, licence, what uses it; ``--files`` lists each file with its
sha256 and sources. ``data fetch NAME... [--from DIR] [--mirror URL] [--force]`` downloads
the files from their first working source (or copies them from ``DIR``), checks every
sha256 and moves them into the data folder only when all verified (see
:mod:`imsyn.course_data`). ``data path [NAME]`` prints where a set lives.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every set: status, files, size, path, licence, used by")
    ls.add_argument("--json", action="store_true", help="one JSON object per set")
    ls.add_argument("--files", action="store_true", help="every file: sha256 and sources")
    fe = sub.add_parser("fetch", help="download (or import), verify (sha256) into the data folder")
    fe.add_argument(
        "names", nargs="+", metavar="NAME", help="course (everything), prokudin, poisson, nst, cats"
    )
    fe.add_argument(
        "--from",
        dest="from_dir",
        metavar="DIR",
        help="a local copy laid out like the data folder: every file is checked against its "
        "sha256 and copied; nothing is downloaded (e.g. --from ../shared/data)",
    )
    fe.add_argument(
        "--mirror",
        metavar="URL",
        help="a server holding the data folder's layout (URL/prokudin/small/cathedral.jpg), "
        "used instead of the public sources (default: $IMSYN_DATA_MIRROR)",
    )
    fe.add_argument("--force", action="store_true", help="fetch again files already present")
    pa = sub.add_parser("path", help="print the data folder (or a set's folder)")
    pa.add_argument("name", nargs="?", metavar="NAME", help="a set name (default: the folder)")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def run(args: argparse.Namespace) -> int:
    from imsyn import course_data

    if args.action == "path":
        if args.name:
            row = course_data.status(args.name)
            print(row["path"])
        else:
            print(course_data.data_dir())
        return 0
    if args.action == "list":
        sets = course_data.registry()
        rows = [course_data.status(name) for name in sets]
        if args.json:
            for row in rows:
                if args.files:
                    row["file_list"] = [
                        {
                            "path": f.path,
                            "size": f.size,
                            "sha256": f.sha256,
                            "sources": [course_data.source_url(s) for s in f.sources],
                        }
                        for f in sets[row["name"]].files
                    ]
                print(json.dumps(row))
            return 0
        print(f"data folder: {course_data.data_dir()}  (registry {course_data.registry_path()})")
        for row in rows:
            print(
                f"{row['name']:<9} {row['status']:<10} {row['files']:>4} files "
                f"{_size(row['bytes']):>9}  {row['path']}"
            )
            for key in ("description", "licence", "used_by"):
                print(f"{'':<9} {key}: {row[key]}")
        if args.files:
            print()
            every = {f.path: f for st in sets.values() for f in st.files}
            for f in every.values():
                print(f"{f.path}  {f.size}  {f.sha256}")
                for s in f.sources:
                    print(f"    {course_data.source_url(s)}")
        return 0
    names = list(dict.fromkeys(args.names))
    for name in names:
        course_data.get(name)  # one line naming an unknown set, before any work
    result = course_data.fetch(names, from_dir=args.from_dir, mirror=args.mirror, force=args.force)
    print(
        f"{' '.join(names)}: {result.fetched} file(s) fetched and verified, "
        f"{result.present} already present: {result.root}"
    )
    return 0
