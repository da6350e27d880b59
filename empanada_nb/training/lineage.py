"""Lineage of a trained model: the dataset files that trained it (sha256), its settings and its parent.

Hashing streams each file in 1 MiB blocks and is cached per process by ``(path, size, mtime)``, so a
file is read once per kernel however many runs use it (a changed file, new size or time, is read
again). ``HashJob`` hashes a run's files in a background thread, so the first iteration does not wait
for a large dataset; the loop takes the result for checkpoints once it is ready and waits for it only
when the model is saved.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CACHE: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()
_BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, streamed, cached by ``(path, size, mtime)`` for this process.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> f = Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = f.write_bytes(b"abc")
    >>> file_sha256(f)[:16]
    'ba7816bf8f01cfea'
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    digest = h.hexdigest()
    with _LOCK:
        _CACHE[key] = digest
    return digest


def dataset_lineage(pairs: Sequence, val_pairs: Sequence = ()) -> dict[str, Any]:
    """The training (and validation) files by content: path, bytes and sha256 of every image and mask.

    Parameters
    ----------
    pairs : sequence of Pair
        Training pairs (``image``, ``mask`` paths), as ``find_pairs`` returns them.
    val_pairs : sequence of Pair
        Validation pairs.

    Returns
    -------
    dict
        ``{"sha256": digest of the whole list, "files": [{"role", "path", "bytes", "sha256"}, ...]}``;
        the overall digest changes when any file's content, name or role does.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from types import SimpleNamespace
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "i.tif").write_bytes(b"image"); _ = (d / "m.tif").write_bytes(b"mask")
    >>> lin = dataset_lineage([SimpleNamespace(image=d / "i.tif", mask=d / "m.tif")])
    >>> [(f["role"], f["bytes"]) for f in lin["files"]], len(lin["sha256"])
    ([('train image', 5), ('train mask', 4)], 64)
    """
    files = []
    for role, group in (("train", pairs), ("validation", val_pairs)):
        for pair in group:
            for kind in ("image", "mask"):
                p = Path(getattr(pair, kind)).resolve()
                files.append(
                    {"role": f"{role} {kind}", "path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
                )
    whole = hashlib.sha256()
    for f in files:
        whole.update(f"{f['role']}\0{Path(f['path']).name}\0{f['sha256']}\n".encode())
    return {"sha256": whole.hexdigest(), "files": files}


def weights_sha256(model) -> str:
    """sha256 of a model's weights (every state-dict tensor's name, dtype, shape and bytes, in order).

    Names a parent model that has no file (a model object given in Python).

    Parameters
    ----------
    model : torch.nn.Module
        The model.

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import torch
    >>> a = torch.nn.Linear(2, 2)
    >>> weights_sha256(a) == weights_sha256(a), len(weights_sha256(a))
    (True, 64)
    """
    import torch

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def compact(lineage: dict) -> dict:
    """A lineage with each dataset's file list replaced by its count (the digest stays), nested ones too.

    A finetuned model's card keeps its parent's lineage this way: the parent's own card has the list.

    Parameters
    ----------
    lineage : dict
        A card's ``lineage``.

    Returns
    -------
    dict
        A copy.

    Examples
    --------
    >>> compact({"dataset": {"sha256": "ab", "files": [{}, {}]}, "parent_lineage": {}})
    {'dataset': {'sha256': 'ab', 'files': 2}, 'parent_lineage': {}}
    """
    out = {}
    for k, v in (lineage or {}).items():
        if k == "dataset" and isinstance(v, dict) and isinstance(v.get("files"), list):
            v = {**v, "files": len(v["files"])}
        elif isinstance(v, dict):
            v = compact(v)
        out[k] = v
    return out


def parent_lineage(source: Any) -> dict[str, Any] | None:
    """The parent model (finetuned from) or pretrained weights: its name and, for a local file, its sha256.

    Parameters
    ----------
    source : str or os.PathLike or None
        A model path, registered or published name, or URL (None: no parent).

    Returns
    -------
    dict or None
        ``{"name": ..., "sha256": ...}`` (``sha256`` only when the file is on this machine).

    Examples
    --------
    >>> parent_lineage(None) is None
    True
    >>> parent_lineage("MitoNet_v1")["name"]
    'MitoNet_v1'
    """
    if source is None or str(source) == "":
        return None
    out: dict[str, Any] = {"name": str(source)}
    path = Path(str(source))
    if not path.is_file():
        try:  # a registered name: its file in the registry
            from ..registry import _read_index, registry_dir

            entry = _read_index(registry_dir()).get(str(source))
            if entry is not None:
                path = registry_dir() / entry["dir"] / entry["main"]
        except Exception:
            pass
    if path.is_file():
        out["path"] = str(path.resolve())
        out["sha256"] = file_sha256(path)
    return out


class HashJob:
    """``dataset_lineage`` (and ``parent_lineage``) computed in a background thread (daemon), started at once.

    Parameters
    ----------
    pairs : sequence of Pair
        Training pairs.
    val_pairs : sequence of Pair
        Validation pairs.
    parent : str or os.PathLike, optional
        The parent model or pretrained weights (see ``parent_lineage``).

    Examples
    --------
    >>> job = HashJob([], [])
    >>> job.result()["dataset"]["files"]
    []
    """

    def __init__(self, pairs: Sequence, val_pairs: Sequence = (), parent: Any = None):
        self._out: dict = {}
        self._thread = threading.Thread(
            target=self._run, args=(list(pairs), list(val_pairs), parent), name="empanada_nb-lineage", daemon=True
        )
        self._thread.start()

    def _run(self, pairs, val_pairs, parent) -> None:
        # a vanished or unreadable file must not kill training: the card says why instead
        try:
            self._out["dataset"] = dataset_lineage(pairs, val_pairs)
        except Exception as e:
            self._out["dataset"] = {"error": f"{e.__class__.__name__}: {e}"}
        try:
            par = parent_lineage(parent)
        except Exception as e:
            par = {"name": str(parent), "error": f"{e.__class__.__name__}: {e}"}
        if par is not None:
            self._out["parent"] = par

    def ready(self) -> bool:
        """Whether the hashes are done.

        Returns
        -------
        bool

        Examples
        --------
        >>> job = HashJob([])
        >>> _ = job.result()
        >>> job.ready()
        True
        """
        return not self._thread.is_alive()

    def result(self) -> dict:
        """Wait for the hashes and return them.

        Returns
        -------
        dict
            ``{"dataset": dataset_lineage(...), "parent": parent_lineage(...)}`` (no ``parent`` without
            one); a part that failed is ``{"error": ...}``.

        Examples
        --------
        >>> HashJob([]).result()
        {'dataset': {'sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'files': []}}
        """
        self._thread.join()
        return dict(self._out)
