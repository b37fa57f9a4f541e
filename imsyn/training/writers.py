"""What a run writes while it trains: metrics.jsonl, TensorBoard events, loss plots, samples.

* :class:`MetricsLog` appends one JSON object per logged step to
  ``workdir/metrics.jsonl`` (``{"step": 100, "d_loss": ..., "g_loss": ...,
  "steps_per_s": ...}``); on resume it drops lines past the restored step so the
  file never holds two histories.
* :class:`EventWriter` writes TensorBoard event files
  (``events.out.tfevents.<time>.<host>``) without TensorFlow: TFRecord framing
  (little-endian length, masked CRC-32C of length and data) around hand-encoded
  ``Event``/``Summary`` protocol buffers (scalars and PNG images).
* :func:`plot_losses` draws ``plots/losses.png`` (raw curves faint, EMA-smoothed
  curves bold, one panel per metric group) from the metrics log.
* :func:`write_samples` writes sample grids to ``samples/<name>_<step>.png``.

Every file except the append-only logs is written atomically.
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np

from imsyn.image import atomic_path, to_uint8, write_image

# ---------------------------------------------------------------- CRC-32C (Castagnoli)


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli polynomial, reflected), as TFRecord uses."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: uint64 length, masked crc of length, data, masked crc of data."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


# ---------------------------------------------------------------- protobuf encoding


def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _pb_varint(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(n)


def _pb_bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _pb_double(field: int, x: float) -> bytes:
    return _key(field, 1) + struct.pack("<d", x)


def _pb_float(field: int, x: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", x)


def encode_event(
    *, wall_time: float, step: int, file_version: str | None = None, values: bytes = b""
) -> bytes:
    """tensorflow.Event: wall_time=1 (double), step=2 (int64), file_version=3, summary=5."""
    msg = _pb_double(1, wall_time) + _pb_varint(2, step)
    if file_version is not None:
        msg += _pb_bytes(3, file_version.encode())
    else:
        msg += _pb_bytes(5, values)  # Summary{repeated Value value = 1}
    return msg


def scalar_value(tag: str, value: float) -> bytes:
    """Summary.Value{tag=1, simple_value=2} wrapped as a Summary's repeated field 1."""
    return _pb_bytes(1, _pb_bytes(1, tag.encode()) + _pb_float(2, value))


def image_value(tag: str, img: np.ndarray) -> bytes:
    """Summary.Value{tag=1, image=4: Image{height=1, width=2, colorspace=3, encoded=4}}."""
    from PIL import Image

    arr = to_uint8(np.asarray(img, np.float32))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    h, w = arr.shape[:2]
    channels = arr.shape[2] if arr.ndim == 3 else 1
    image = (
        _pb_varint(1, h) + _pb_varint(2, w) + _pb_varint(3, channels) + _pb_bytes(4, buf.getvalue())
    )
    return _pb_bytes(1, _pb_bytes(1, tag.encode()) + _pb_bytes(4, image))


class EventWriter:
    """Appends TensorBoard events to ``<logdir>/events.out.tfevents.<time>.<host>``.

    Each record is flushed on write, so a killed run loses at most the record
    being written (TensorBoard skips a truncated tail record).
    """

    def __init__(self, logdir: str | os.PathLike):
        Path(logdir).mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = Path(logdir) / f"events.out.tfevents.{now:.6f}.{socket.gethostname()}"
        self._f = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._write(encode_event(wall_time=now, step=0, file_version="brain.Event:2"))

    def _write(self, event: bytes) -> None:
        self._f.write(tfrecord(event))
        self._f.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        summary = b"".join(scalar_value(k, float(v)) for k, v in values.items())
        self._write(encode_event(wall_time=time.time(), step=step, values=summary))

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        summary = b"".join(image_value(k, v) for k, v in images.items())
        self._write(encode_event(wall_time=time.time(), step=step, values=summary))

    def close(self) -> None:
        self._f.close()


def read_records(path: str | os.PathLike) -> list[bytes]:
    """The TFRecord payloads of a file, checking both CRCs; stops at a truncated tail."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(data):
        (n,) = struct.unpack("<Q", data[pos : pos + 8])
        (crc_len,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if crc_len != masked_crc32c(data[pos : pos + 8]):
            raise ValueError(f"{path}: corrupt record length at byte {pos}")
        end = pos + 12 + n + 4
        if end > len(data):
            break
        payload = data[pos + 12 : pos + 12 + n]
        (crc_data,) = struct.unpack("<I", data[end - 4 : end])
        if crc_data != masked_crc32c(payload):
            raise ValueError(f"{path}: corrupt record data at byte {pos}")
        out.append(payload)
        pos = end
    return out


# ---------------------------------------------------------------- metrics.jsonl


class MetricsLog:
    """Append-only ``metrics.jsonl``; ``truncate_after(step)`` on resume."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Keeps only records with ``step <= step`` (atomic rewrite)."""
        if not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl (a truncated last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# ---------------------------------------------------------------- plots and samples


def smooth(values: np.ndarray, *, weight: float = 0.9) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average."""
    out, acc = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc / (1 - weight ** (i + 1))
    return out


def _loss_groups(keys: list[str]) -> list[list[str]]:
    """Adversarial losses (``d_*``, ``g_*``) in one panel, every other loss in a second."""
    adversarial = [k for k in keys if k.startswith(("d_", "g_"))]
    other = [k for k in keys if k not in adversarial]
    return [g for g in (adversarial, other) if g]


def plot_losses(records: list[dict], path: str | os.PathLike, *, title: str = "") -> Path | None:
    """Plots every ``*loss*`` metric against step (raw faint + smoothed) to a PNG.

    Returns the path, or None when there is nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k in r if "loss" in k})
    if not keys:
        return None
    groups = _loss_groups(keys)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for k in group:
            pts = [(r["step"], r[k]) for r in records if k in r and math.isfinite(r[k])]
            if not pts:
                continue
            steps, vals = map(np.asarray, zip(*pts, strict=True))
            (line,) = ax.plot(steps, smooth(vals), label=k, linewidth=1.8)
            ax.plot(steps, vals, color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def write_samples(directory: str | os.PathLike, step: int, images: dict[str, np.ndarray]) -> None:
    """Writes ``<directory>/<name>_<step:07d>.png`` and ``<name>_latest.png`` for each grid."""
    for name, img in images.items():
        write_image(Path(directory) / f"{name}_{step:07d}.png", img)
        write_image(Path(directory) / f"{name}_latest.png", img)
