"""Autosaved annotation sessions: label slices, picks and regions kept on disk while a Viewer is edited.

A session is one folder per Viewer: ``session.json`` (picks, regions, the label layers and which of
their slices are stored) and ``layers/<key>/z<index>.npy.z`` (one ``(Y, X)`` slice of a layer each:
``np.save`` bytes, zlib-compressed). Only slices that changed since the last save are rewritten, so an
edit of one slice of a large volume costs one slice. A layer is stored as "zeros plus these slices":
its first save writes every non-empty slice once, later saves only the changed ones (an emptied
slice's file is removed).
Every file is written atomically (``_atomic.atomic_path``); ``session.json`` is written after the
slices it lists, so a kill at any moment leaves a readable session.

Where (``autosave_dir``): ``$EMPANADA_NB_AUTOSAVE`` when set (every session there); else beside the
image file, in ``.empanada_nb-autosave/<file name>-<fingerprint>``, when the user owns the file and
can write into its folder; else (read-only data, someone else's files, in-memory arrays) in the
user's cache folder (``$EMPANADA_NB_HOME/autosave``, else platformdirs' ``user_cache_dir``), keyed
by the source's path and its content fingerprint (``fingerprint``), so a different file of the same
name never restores another file's edits.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import stat
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import PathLike, atomic_path

ENV_AUTOSAVE = "EMPANADA_NB_AUTOSAVE"
#: the folder beside a dataset that holds its autosaved sessions
BESIDE = ".empanada_nb-autosave"
FORMAT = "empanada_nb-autosave/1"
_SESSION = re.compile(r"^session-[0-9]{8}T[0-9]{6}-[A-Za-z0-9]+-[0-9]+-[0-9a-f]{6}$")
_SAMPLE = 1 << 20  # bytes read at each end of a file for its fingerprint
_CHUNK = 1 << 16  # bytes read at each inner sample point


# ---------------------------------------------------------------------------------- fingerprint


def _hash_file_samples(h, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size};".encode())
    with open(path, "rb") as f:
        if size <= 2 * _SAMPLE + 8 * _CHUNK:
            h.update(f.read())
            return
        for pos in [0] + [int(size * k / 9) for k in range(1, 9)]:
            f.seek(pos)
            h.update(f.read(_SAMPLE if pos == 0 else _CHUNK))
        f.seek(size - _SAMPLE)
        h.update(f.read())


def fingerprint(source: Any) -> str:
    """A content fingerprint of an image file, a zarr folder or an array (sha256 of sampled bytes).

    Files: the size, the first and last MiB and eight chunks in between (a whole file under 2.5 MiB),
    so a large volume costs a few reads. Folders (zarr stores): every file's name and size, the
    metadata files whole and a sample of the chunks. Arrays: shape, dtype and a strided sample of
    the values. Two files with the same name but other content get different fingerprints.

    Parameters
    ----------
    source : str or os.PathLike or array-like
        The image as the Viewer was given it.

    Returns
    -------
    str
        32 hex digits.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((2, 32, 32), np.uint8)
    >>> fingerprint(a) == fingerprint(a.copy()), fingerprint(a) == fingerprint(a + 1)
    (True, False)
    """
    h = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            chunks = []
            for p in files:
                rel = p.relative_to(path).as_posix()
                h.update(f"{rel}:{p.stat().st_size};".encode())
                if p.name in (".zarray", ".zattrs", ".zgroup", "zarr.json"):
                    h.update(p.read_bytes())
                else:
                    chunks.append(p)
            for p in chunks[:: max(1, len(chunks) // 16)]:
                with open(p, "rb") as f:
                    h.update(f.read(_CHUNK))
        else:
            _hash_file_samples(h, path)
    else:
        shape = tuple(int(s) for s in source.shape)
        h.update(f"array:{shape}:{np.dtype(source.dtype).str};".encode())
        if len(shape) >= 1 and shape[0] > 0:
            step = max(1, shape[0] // 16)
            for i in range(0, shape[0], step):
                h.update(np.ascontiguousarray(np.asarray(source[i])).tobytes()[: 4 * _SAMPLE])
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------------------- locations


def cache_root() -> Path:
    """The user's autosave folder for sources that cannot be autosaved beside themselves.

    Returns
    -------
    pathlib.Path
        ``$EMPANADA_NB_AUTOSAVE``, else ``$EMPANADA_NB_HOME/autosave``, else ``user_cache_dir/autosave``.

    Examples
    --------
    >>> cache_root().name  # doctest: +SKIP
    'autosave'
    """
    if os.environ.get(ENV_AUTOSAVE):
        return Path(os.environ[ENV_AUTOSAVE]).expanduser()
    if os.environ.get("EMPANADA_NB_HOME"):
        return Path(os.environ["EMPANADA_NB_HOME"]).expanduser() / "autosave"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("empanada_nb", appauthor=False)) / "autosave"


def _writable_beside(path: Path) -> bool:
    """Whether the user owns ``path`` and may write into its folder (never autosave into others' folders)."""
    try:
        st, pst = path.stat(), path.parent.stat()
    except OSError:
        return False
    if not hasattr(os, "getuid"):
        return os.access(path.parent, os.W_OK)
    uid = os.getuid()
    # the mode bits too: root passes os.access on a folder marked read-only (shared data)
    bit = stat.S_IWUSR if pst.st_uid == uid else stat.S_IWGRP if pst.st_gid in os.getgroups() else stat.S_IWOTH
    return st.st_uid == uid and bool(pst.st_mode & bit) and os.access(path.parent, os.W_OK | os.X_OK)


def autosave_dir(source: Any, fp: str | None = None) -> Path:
    """The folder that holds the autosaved sessions of ``source`` (see the module docstring).

    Parameters
    ----------
    source : str or os.PathLike or array-like
        An image file or zarr folder, or an in-memory array.
    fp : str, optional
        Its ``fingerprint`` when already computed.

    Returns
    -------
    pathlib.Path
        Beside the file (``.empanada_nb-autosave/<name>-<fingerprint>``) when the user owns it and can
        write there (and ``$EMPANADA_NB_AUTOSAVE`` is not set), else under ``cache_root()``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> f = Path(tempfile.mkdtemp()) / "cell.npy"
    >>> np.save(f, np.zeros((2, 8, 8), np.uint8))
    >>> autosave_dir(f).parent == f.parent / ".empanada_nb-autosave"  # doctest: +SKIP
    True
    >>> autosave_dir(f).name.startswith("cell.npy-")
    True
    """
    fp = fp or fingerprint(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).resolve()
        if not os.environ.get(ENV_AUTOSAVE) and _writable_beside(path):
            return path.parent / BESIDE / f"{path.name}-{fp[:12]}"
        key = hashlib.sha256(f"{path}\n{fp}".encode()).hexdigest()[:16]
        return cache_root() / f"{path.name}-{key}"
    return cache_root() / f"array-{fp[:16]}"


# ------------------------------------------------------------------------------------ sessions


def new_session_dir(root: PathLike) -> Path:
    """A fresh session folder name under ``root`` (not created): time, host, process and a random part."""
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"
    return Path(root) / f"session-{stamp}-{host}-{os.getpid()}-{secrets.token_hex(3)}"


#: a stored slice: ``np.save`` bytes, zlib level 1 (labels compress ~200x; level 1 is ~2x faster than savez's 6)
SLICE_SUFFIX = ".npy.z"


def _slice_file(session: Path, key: str, z: int) -> Path:
    return session / "layers" / key / f"z{int(z):06d}{SLICE_SUFFIX}"


def write_slices(session: PathLike, key: str, slices: dict[int, np.ndarray]) -> None:
    """Write slices of one layer into a session (each file atomically; empty slices remove their file).

    Parameters
    ----------
    session : str or os.PathLike
        The session folder.
    key : str
        The layer's folder name in the session.
    slices : dict of int to numpy.ndarray
        ``{z: (Y, X) labels}``; an all-zero slice is stored as no file.

    Returns
    -------
    None

    Examples
    --------
    >>> import tempfile
    >>> s = Path(tempfile.mkdtemp()) / "s"
    >>> write_slices(s, "layer1", {3: np.ones((4, 4), np.uint32)})
    >>> sorted(p.name for p in (s / "layers" / "layer1").iterdir())
    ['z000003.npy.z']
    """
    session = Path(session)
    for z, arr in slices.items():
        target = _slice_file(session, key, z)
        if not np.any(arr):
            target.unlink(missing_ok=True)
            continue
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        with atomic_path(target, suffix=SLICE_SUFFIX) as tmp:
            tmp.write_bytes(zlib.compress(buf.getvalue(), 1))


def write_meta(session: PathLike, meta: dict) -> Path:
    """Write ``session.json`` atomically (after the slices it lists).

    Parameters
    ----------
    session : str or os.PathLike
        The session folder.
    meta : dict
        ``source``, ``fingerprint``, ``shape``, ``picks``, ``regions`` and ``layers`` (each
        ``{key, name, dtype, shape, slices, opacity, visible}``).

    Returns
    -------
    pathlib.Path
        The written ``session.json``.

    Examples
    --------
    >>> import tempfile
    >>> s = Path(tempfile.mkdtemp()) / "s"
    >>> write_meta(s, {"picks": [], "regions": [], "layers": []}).name
    'session.json'
    """
    session = Path(session)
    meta = {**meta, "format": FORMAT, "saved": datetime.datetime.now().isoformat(timespec="seconds")}
    meta.setdefault("host", socket.gethostname())
    meta.setdefault("pid", os.getpid())
    with atomic_path(session / "session.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    return session / "session.json"


def read_meta(session: PathLike) -> dict:
    """``session.json`` of a session folder (a ValueError names a folder that is not a session).

    Parameters
    ----------
    session : str or os.PathLike
        The session folder.

    Returns
    -------
    dict
        The metadata written by ``write_meta``.

    Examples
    --------
    >>> import tempfile
    >>> s = Path(tempfile.mkdtemp()) / "s"
    >>> _ = write_meta(s, {"picks": [{"axis": "xy", "z": 0, "y": 4, "x": 4, "size": 8}], "regions": [], "layers": []})
    >>> len(read_meta(s)["picks"])
    1
    """
    f = Path(session) / "session.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{session} is not a readable autosave session ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{session} is not an empanada_nb autosave session")
    return meta


def read_layer(session: PathLike, layer: dict) -> np.ndarray:
    """Rebuild one layer of a session: zeros of its shape with its stored slices.

    Parameters
    ----------
    session : str or os.PathLike
        The session folder.
    layer : dict
        Its entry in ``session.json``'s ``layers``.

    Returns
    -------
    numpy.ndarray
        The layer's labels, ``(Z, Y, X)``.

    Examples
    --------
    >>> import tempfile
    >>> s = Path(tempfile.mkdtemp()) / "s"
    >>> write_slices(s, "k", {1: np.full((4, 4), 7, np.uint32)})
    >>> vol = read_layer(s, {"key": "k", "dtype": "uint32", "shape": [2, 4, 4], "slices": [1]})
    >>> int(vol[0].max()), int(vol[1].max())
    (0, 7)
    """
    vol = np.zeros(tuple(layer["shape"]), dtype=np.dtype(layer["dtype"]))
    for z in layer.get("slices", []):
        f = _slice_file(Path(session), layer["key"], z)
        if f.exists():  # a listed slice whose file is gone was emptied after the listing was written
            vol[int(z)] = np.load(io.BytesIO(zlib.decompress(f.read_bytes())), allow_pickle=False)
    return vol


def describe(meta: dict) -> str:
    """What a session holds, in words: ``"2 label layers (5 edited slices), 3 picks, 1 region from 14:02"``.

    The time is the last save's, with its date when that was not today.

    Parameters
    ----------
    meta : dict
        A session's ``session.json``.

    Returns
    -------
    str
        The summary.

    Examples
    --------
    >>> describe({"layers": [{"slices": [1, 2]}], "picks": [{}], "regions": [], "saved": "2020-01-02T14:02:11"})
    '1 label layer (2 edited slices), 1 pick, 0 regions from 2020-01-02 14:02'
    """

    def n(k: int, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"

    layers = meta.get("layers", [])
    slices = sum(len(l.get("slices", [])) for l in layers)
    when = str(meta.get("saved", ""))
    clock = when[11:16] if len(when) >= 16 else when
    day = when[:10]
    today = datetime.date.today().isoformat()
    stamp = f"{clock}" if day == today or not day else f"{day} {clock}"
    return (
        f"{n(len(layers), 'label layer')} ({n(slices, 'edited slice')}), {n(len(meta.get('picks', [])), 'pick')}, "
        f"{n(len(meta.get('regions', [])), 'region')} from {stamp}"
    )


def list_autosaves(source: Any, exclude: Iterable[PathLike] = ()) -> list[dict]:
    """The autosaved sessions of ``source``, newest first, each ``{"path", "saved", "summary", "meta"}``.

    Parameters
    ----------
    source : str or os.PathLike or array-like
        The image the sessions were edited on (matched by path and ``fingerprint``).
    exclude : iterable of path
        Session folders to leave out (a live Viewer's own).

    Returns
    -------
    list of dict
        One per readable session.

    Examples
    --------
    >>> import numpy as np
    >>> list_autosaves(np.zeros((2, 8, 8), np.uint8) + 3)
    []
    """
    fp = fingerprint(source)
    root = autosave_dir(source, fp)
    skip = {Path(p).resolve() for p in exclude}
    out = []
    if not root.is_dir():
        return out
    for d in root.iterdir():
        if not _SESSION.match(d.name) or d.resolve() in skip:
            continue
        try:
            meta = read_meta(d)
        except ValueError:
            continue
        if meta.get("fingerprint") not in (None, fp):
            continue
        out.append({"path": d, "saved": meta.get("saved", ""), "summary": describe(meta), "meta": meta})
    out.sort(key=lambda s: s["saved"], reverse=True)
    return out


def clear_autosave(session: PathLike) -> None:
    """Delete one autosaved session folder (only a folder named and laid out as a session).

    What the user saved explicitly (patches, label files, models) is never touched: only a folder
    whose name is a session's and that holds ``session.json`` is removed.

    Parameters
    ----------
    session : str or os.PathLike
        A session folder (``list_autosaves()[i]["path"]``).

    Returns
    -------
    None

    Examples
    --------
    >>> import tempfile
    >>> s = new_session_dir(tempfile.mkdtemp())
    >>> _ = write_meta(s, {"picks": [], "regions": [], "layers": []})
    >>> clear_autosave(s); s.exists()
    False
    """
    session = Path(session)
    if not session.exists():
        return
    if not _SESSION.match(session.name) or not (session / "session.json").is_file():
        raise ValueError(f"{session} is not an autosave session folder; refusing to delete it")
    shutil.rmtree(session, ignore_errors=True)
    try:
        session.parent.rmdir()  # the per-source folder goes with its last session
        if session.parent.parent.name == BESIDE:
            session.parent.parent.rmdir()
    except OSError:
        pass
