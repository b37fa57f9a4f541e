"""Image I/O and the one place where image conventions are converted.

Conventions (the project's one image convention):

* Classical code works on ``float32[H, W, C]`` (or ``[H, W]``) in ``[0, 1]``.
* Networks work on ``float32[N, H, W, C]`` in ``[-1, 1]``.

Files: JPEG, PNG and TIFF; 8- and 16-bit; grayscale, RGB and RGBA. TIFF goes
through ``tifffile`` (any bit depth, the Library of Congress plates are 16-bit
TIFFs), the rest through Pillow. One decoded-size limit, :data:`MAX_PIXELS`, holds
for every format; it is checked from the header, before anything is decoded.

Every write is atomic: the data goes to a temporary file in the destination
directory which is then renamed, so a crash never leaves a truncated output; a
failed write (disk full, ...) is one :class:`~imsyn.errors.OutputError` naming the
path. Files that belong together (a result and its JSON sidecar) are committed
together or not at all with :func:`write_together`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imsyn.errors import InputError, OutputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
_TIFF = (".tif", ".tiff")

#: the most pixels (height x width, any channels) an image file may declare: Pillow's
#: decompression-bomb threshold (89.5 Mpx; the largest Prokudin-Gorskii scans are ~37 Mpx),
#: applied to every format from the file's header, before decoding
MAX_PIXELS = 89_478_485


def _check_size(p: Path, h: int, w: int, depth: int = 1) -> None:
    n = int(h) * int(w) * int(depth)
    if n > MAX_PIXELS:
        dims = f"{w}x{h}" + (f"x{depth}" if depth > 1 else "")
        raise InputError(
            f"{p}: declares {dims} pixels ({n / 1e6:.1f} Mpx), more than the "
            f"{MAX_PIXELS / 1e6:.1f} Mpx that imsyn decodes (imsyn.image.MAX_PIXELS)"
        )


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file into its native dtype.

    Args:
      path: a JPEG/PNG/TIFF/BMP/WebP file.

    Returns:
      ``uint8`` or ``uint16`` (or float for float TIFFs) array of shape
      ``[H, W]`` (grayscale) or ``[H, W, C]`` with C in {3, 4}, as viewers show it: an
      EXIF/TIFF orientation tag (a phone photo stored sideways) is applied here, for
      every caller.

    Raises:
      InputError: the path is missing, a directory, or not a decodable image.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected an image file")
    try:
        if p.suffix.lower() in _TIFF:
            arr, orientation = _read_tiff(p)
        else:
            arr, orientation = _read_pil(p)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
        raise InputError(f"{p}: not a readable image ({type(e).__name__}: {e})") from None
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar TIFF
    if arr.ndim in (2, 3):
        arr = orient(arr, orientation)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        raise InputError(f"{p}: unsupported image layout {arr.shape}")
    if arr.ndim == 3 and arr.shape[-1] == 2:  # gray + alpha -> RGBA
        arr = np.concatenate([arr[..., :1]] * 3 + [arr[..., 1:]], axis=-1)
    if arr.size == 0:
        raise InputError(f"{p}: empty image")
    return arr


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF/TIFF orientation (tag 274, 1-8) to ``img`` ``[H, W, ...]``: the
    image as a viewer shows it (what ``PIL.ImageOps.exif_transpose`` does, for any dtype).
    Other values are left alone."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(int(orientation or 1))
    return np.ascontiguousarray(op(img)) if op else img


def _read_tiff(p: Path) -> tuple[np.ndarray, int]:
    import logging

    import tifffile

    log = logging.getLogger("tifffile")  # its warnings on odd files: the error says enough
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        return _read_tiff_quiet(p, tifffile)
    finally:
        log.setLevel(level)


def _read_tiff_quiet(p: Path, tifffile) -> tuple[np.ndarray, int]:
    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        page = series.keyframe
        spp = max(1, int(getattr(page, "samplesperpixel", 1) or 1))
        total = int(np.prod(series.shape, dtype=np.float64)) // spp
        h, w = int(page.imagelength), int(page.imagewidth)
        _check_size(p, h, w, max(1, total // max(1, h * w)))
        tag = page.tags.get(274)  # Orientation
        return np.asarray(series.asarray()), int(tag.value) if tag is not None else 1


def _read_pil(p: Path) -> tuple[np.ndarray, int]:
    import re
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except Image.DecompressionBombError as e:  # beyond Pillow's own (2x larger) limit
            m = re.search(r"\((\d+) pixels\)", str(e))
            n = int(m.group(1)) if m else 0
            raise InputError(
                f"{p}: declares {n / 1e6:.1f} Mpx, more than the {MAX_PIXELS / 1e6:.1f} Mpx "
                "that imsyn decodes (imsyn.image.MAX_PIXELS)"
            ) from None
        with im:
            w, h = im.size
            _check_size(p, h, w)
            im.load()
            try:
                orientation = int(im.getexif().get(0x0112, 1))
            except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels as stored
                orientation = 1
            return _pil_to_array(im), orientation


def _pil_to_array(im) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16)
    if mode == "I":
        a = np.asarray(im)
        return a.astype(np.uint16) if a.max(initial=0) < 65536 and a.min(initial=0) >= 0 else a
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode in ("L", "RGB", "RGBA"):
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode == "LA":
        return np.asarray(im.convert("RGBA"))
    if "A" in im.getbands() or (mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"))
    return np.asarray(im.convert("RGB"))


def to_float(img: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Converts an integer or float image to ``float32`` in ``[0, 1]``.

    ``uint8`` is divided by 255, ``uint16`` by 65535; float input is clipped.

    Args:
      img: the image.
      out: optional ``float32`` array of ``img``'s shape that receives the result
        (e.g. one aligned for XLA, see :func:`imsyn.align.colorize`); it is returned.
    """
    img = np.asarray(img)
    if out is not None:
        if img.dtype in (np.uint8, np.uint16):
            return np.divide(img, np.float32(255.0 if img.dtype == np.uint8 else 65535.0),
                             out=out, dtype=np.float32)  # fmt: skip
        out[...] = to_float(img)
        return out
    # One pass and one new array each (the cast happens inside the ufunc loop); the same
    # float32 operations, so the same bits, as converting first and dividing after.
    if img.dtype == np.uint8:
        return np.divide(img, np.float32(255.0), dtype=np.float32)
    if img.dtype == np.uint16:
        return np.divide(img, np.float32(65535.0), dtype=np.float32)
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(img.astype(np.float32) / np.float32(info.max), 0.0, 1.0)
    if img.dtype == np.float32:
        return np.clip(img, np.float32(0.0), np.float32(1.0))
    out = img.astype(np.float32)
    return np.clip(out, np.float32(0.0), np.float32(1.0), out=out)


def read_float(path: str | os.PathLike, *, mode: str | None = None) -> np.ndarray:
    """Reads an image as ``float32`` in ``[0, 1]``.

    Args:
      path: image file.
      mode: ``None`` keeps the file's channels (``[H, W]`` or ``[H, W, C]``);
        ``"gray"`` gives ``[H, W]`` (Rec. 601 luma; alpha dropped);
        ``"rgb"`` gives ``[H, W, 3]`` (alpha composited on white);
        ``"rgba"`` gives ``[H, W, 4]``.
    """
    img = to_float(read_image(path))
    if mode is None:
        return img
    if mode == "gray":
        return rgb_to_gray(img)
    if mode == "rgb":
        return to_rgb(img)
    if mode == "rgba":
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        if img.shape[-1] == 3:
            img = np.concatenate([img, np.ones_like(img[..., :1])], -1)
        return img
    raise ValueError(f"mode must be None, 'gray', 'rgb' or 'rgba', got {mode!r}")


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of ``[H, W, C]`` (C = 3 or 4, alpha ignored); ``[H, W]`` passes."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        return img
    rgb = img[..., :3]
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def to_rgb(img: np.ndarray, *, background: float = 1.0) -> np.ndarray:
    """``[H, W]``/``[H, W, 3]``/``[H, W, 4]`` float in [0, 1] -> ``[H, W, 3]``.

    Alpha is composited over a uniform ``background`` (white by default).
    """
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=-1)
    if img.shape[-1] == 4:
        a = img[..., 3:]
        return img[..., :3] * a + background * (1.0 - a)
    return img


# --------------------------------------------------------------------------- conversions


#: elements per block of :func:`_quantize` (512 KiB of float64: the block stays in cache)
_BLOCK = 1 << 16


def _quantize(img: np.ndarray, top: int, dtype) -> np.ndarray:
    """``clip(rint(float64(img) * top), 0, top)`` as ``dtype``, in cache-sized row blocks.

    The same float64 arithmetic as on the whole array (so the same result, bit for bit),
    without whole-image float64 temporaries: 4-6x faster on a 7 Mpx colour image.
    """
    img = np.asarray(img)
    if img.ndim == 0 or img.size <= _BLOCK:
        return np.clip(np.rint(np.asarray(img, np.float64) * top), 0, top).astype(dtype)
    out = np.empty(img.shape, dtype)
    rows = max(1, _BLOCK // (img.size // img.shape[0]))
    buf = np.empty((min(rows, img.shape[0]), *img.shape[1:]), np.float64)
    for i in range(0, img.shape[0], rows):
        src = img[i : i + rows]
        b = buf[: src.shape[0]]
        b[...] = src  # exact: every float32/integer pixel is a float64
        b *= top
        np.rint(b, out=b)
        np.clip(b, 0, top, out=b)
        out[i : i + rows] = b  # integral and in range: the cast is exact
    return out


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float in [0, 1] -> ``uint8``, correctly rounded (round half to even) and clipped."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    return _quantize(img, 255, np.uint8)


def to_uint16(img: np.ndarray) -> np.ndarray:
    """Float in [0, 1] -> ``uint16``, correctly rounded and clipped."""
    img = np.asarray(img)
    if img.dtype == np.uint16:
        return img
    return _quantize(img, 65535, np.uint16)


def to_network(img):
    """[0, 1] -> [-1, 1] (works on numpy and jax arrays, any leading shape)."""
    return img * 2.0 - 1.0


def from_network(img):
    """[-1, 1] -> [0, 1], clipped (numpy or jax arrays)."""
    out = (img + 1.0) * 0.5
    return out.clip(0.0, 1.0)


def make_grid(
    images: np.ndarray | Sequence[np.ndarray],
    *,
    ncol: int | None = None,
    pad: int = 2,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` (or a list of equal-size images) into one image.

    Args:
      images: images in [0, 1] (convert network outputs with :func:`from_network`).
      ncol: images per row (default: ceil(sqrt(N))).
      pad: pixels between tiles and around the border.
      pad_value: colour of the padding.

    Returns:
      ``float32[rows*(H+pad)+pad, ncol*(W+pad)+pad, C]``.
    """
    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    if imgs.ndim != 4 or imgs.shape[0] == 0:
        raise ValueError(f"images must be [N, H, W, C] with N > 0, got {imgs.shape}")
    n, h, w, c = imgs.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = imgs[i]
    return grid


# --------------------------------------------------------------------------- writing


def _write_error(dest: Path, e: OSError) -> OutputError:
    return OutputError(f"{dest}: cannot write output ({e.strerror or e})")


def _stage(dest: Path) -> Path:
    """A new empty temporary file beside ``dest`` (same suffix, so encoders see the format)."""
    if dest.is_dir():
        raise OutputError(f"{dest}: is a directory, cannot write a file there")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{dest.name}.", suffix=".tmp" + dest.suffix, dir=dest.parent
        )
        os.close(fd)
    except OSError as e:
        raise OutputError(f"{dest.parent}: cannot write output ({e.strerror or e})") from None
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.

    Raises:
      OutputError: the destination is a directory, its directory cannot be created or
        written, or the write fails (disk full, ...): one line naming the path.
    """
    dest = Path(path)
    tmp_path = _stage(dest)
    try:
        try:
            yield tmp_path
            os.replace(tmp_path, dest)
        except OSError as e:
            raise _write_error(dest, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_together(writers: Mapping[str | os.PathLike, Callable[[Path], Any]]) -> list[Path]:
    """Writes several files that belong together: all of them, or none.

    Every ``writer(tmp)`` writes its file to a temporary path beside its destination
    (with the destination's suffix). Only when all have succeeded are the files renamed
    into place; if anything fails, the temporaries are removed and every file that
    existed before is left as it was (a rename that fails half-way is rolled back).

    Args:
      writers: destination -> function writing that file to the path it is given.

    Returns:
      The destinations.

    Raises:
      OutputError: a destination is a directory or cannot be written (one line naming it);
        whatever a writer raises otherwise passes through. Nothing was changed.
    """
    dests = [Path(d) for d in writers]
    for d in dests:
        if d.is_dir():
            raise OutputError(f"{d}: is a directory, cannot write a file there")
    staged: list[tuple[Path, Path]] = []
    backups: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        for d, write in zip(dests, writers.values(), strict=True):
            tmp = _stage(d)
            staged.append((d, tmp))
            try:
                write(tmp)
            except OSError as e:
                raise _write_error(d, e) from None
        for d, _ in staged:  # keep what exists, to put it back if a rename fails
            if d.exists():
                bak = _stage(d)
                backups[d] = bak
                try:
                    try:
                        bak.unlink()
                        os.link(d, bak)  # a second name for the old file: no copy
                    except OSError:
                        shutil.copy2(d, bak)  # no hard links on this file system
                except OSError as e:
                    raise _write_error(d, e) from None
        for d, tmp in staged:
            try:
                os.replace(tmp, d)
            except OSError as e:
                raise _write_error(d, e) from None
            done.append(d)
    except BaseException:
        for d in reversed(done):  # roll back the renames that happened
            with contextlib.suppress(OSError):
                if d in backups:
                    os.replace(backups.pop(d), d)
                else:
                    d.unlink()
        for _, tmp in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        for bak in backups.values():
            with contextlib.suppress(OSError):
                bak.unlink()
        raise
    for bak in backups.values():
        with contextlib.suppress(OSError):
            bak.unlink()
    return dests


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically writes bytes."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically writes UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically writes JSON (numpy scalars/arrays converted), pretty-printed."""
    return write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray) or hasattr(o, "__array__"):
        return np.asarray(o).tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_image(
    path: str | os.PathLike, img: np.ndarray, *, bit_depth: int | None = None, quality: int = 95
) -> Path:
    """Atomically writes an image; the format follows the suffix.

    Args:
      path: destination (``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff``, ``.bmp``, ``.webp``).
      img: ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``; float in [0, 1], ``uint8`` or ``uint16``.
      bit_depth: 8 or 16 (default: 16 for ``uint16`` input, else 8). 16 bits are
        written for TIFF (any channels) and PNG (grayscale only; Pillow cannot
        write 16-bit colour PNG, use TIFF).
      quality: JPEG quality.

    Raises:
      OutputError: unsupported suffix/bit depth, or the destination is unwritable.
    """
    dest = Path(path)
    suffix = dest.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise OutputError(
            f"{dest}: unsupported output format {suffix or '(none)'!r}; "
            f"use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"img must be [H, W], [H, W, 3] or [H, W, 4], got {arr.shape}")
    if bit_depth is None:
        bit_depth = 16 if arr.dtype == np.uint16 else 8
    if bit_depth not in (8, 16):
        raise OutputError(f"{dest}: bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16:
        if suffix == ".png" and arr.ndim == 3:
            raise OutputError(f"{dest}: 16-bit colour PNG is not supported; write .tif instead")
        if suffix not in _TIFF + (".png",):
            raise OutputError(f"{dest}: 16-bit output needs .tif or .png")
        data = arr if arr.dtype == np.uint16 else _quantize_float(arr, to_uint16)
    else:
        data = arr if arr.dtype == np.uint8 else _quantize_float(arr, to_uint8)
    with atomic_path(dest) as tmp:
        if suffix in _TIFF:
            import tifffile

            tifffile.imwrite(tmp, data, photometric="minisblack" if data.ndim == 2 else "rgb")
        else:
            from PIL import Image

            fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}[
                suffix
            ]
            if fmt == "JPEG" and data.ndim == 3 and data.shape[-1] == 4:
                data = to_uint8(to_rgb(to_float(data)))
            im = Image.fromarray(data)
            kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
            im.save(tmp, format=fmt, **kwargs)
    return dest


def _quantize_float(arr: np.ndarray, quantize) -> np.ndarray:
    """``quantize(to_float(arr))``; float32 goes straight in (its clip to [0, 1] is implied
    by the quantizer's clip, so the result is the same without a full-size float copy)."""
    return quantize(arr if arr.dtype == np.float32 else to_float(arr))


def list_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Sorted image files (by suffix) under ``folder``: every one, or an error.

    Raises:
      InputError: ``folder`` or a folder under it cannot be read (no permission, ...): a
        data set or an FID folder is never silently smaller than what the user gave.
    """
    root = Path(folder)

    def fail(e: OSError):
        where = e.filename or root
        raise InputError(
            f"{where}: cannot read this folder ({e.strerror or e}); every image under "
            f"{root} is used, so fix its permissions or move it out"
        )

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        if not recursive:
            dirnames.clear()
        for name in filenames:
            f = Path(dirpath, name)
            if f.suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".") and f.is_file():
                found.append(f)
    return sorted(found)
