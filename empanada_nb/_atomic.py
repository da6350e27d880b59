"""Atomic file and folder writes, and the one overwrite rule every writer follows.

Writes go to a temporary beside the target, renamed over it on success. Temporaries carry a
recognisable name, ``.<target name>.~enb-<host>-<pid>-<random>.tmp``, so that the next write
into the same folder can remove the ones a killed process (same host, dead pid) left behind,
and nothing else. Finished files get the permissions the user's umask gives (mkstemp's 0600
would hide models and results from colleagues on a shared JupyterHub).

The overwrite rule (`claim`): an existing target is replaced only with ``overwrite=True``
and only when it is recognisably ours (`is_ours`): a zarr store whose attributes hold the
`MARKER` key, a TIFF whose Software tag is `MARKER`, a ``.pth`` written by
`empanada_nb.save_model` or the training loop, a training events log (``.jsonl`` whose first line
names the `empanada_nb-events` format), or a folder holding only outputs of ours
(TIFF slices, a generated dataset).
Anything else (a folder of the user's files, their raw data) is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Union

PathLike = Union[str, os.PathLike]

#: the key in zarr attributes and the TIFF Software tag that mark an output of this library
MARKER = "empanada_nb"
#: bytes found in the pickle of every model file and training checkpoint (model_io.FORMAT)
_PTH_MARKER = b"empanada_nb-model/"
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
_TMP_RE = re.compile(r"^\..*\.~enb-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]+(\.[^/]*)?\.tmp$")


# ------------------------------------------------------------------------------------ temporaries


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy between threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def temp_name(path: PathLike, suffix: str = "") -> Path:
    """A fresh temporary name beside ``path`` that `clean_stale` recognises."""
    path = Path(path)
    return path.with_name(f".{path.name}.~enb-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{suffix}.tmp")


def clean_stale(folder: PathLike) -> list[Path]:
    """Remove temporaries in ``folder`` left by killed writers of this library; returns what was removed.

    Only names made by `temp_name` whose process (on this host) is gone are touched.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TMP_RE.match(e.name)
        if not m or m["host"] != _HOST or _pid_alive(int(m["pid"])):
            continue
        p = Path(e.path)
        try:
            shutil.rmtree(p) if e.is_dir(follow_symlinks=False) else p.unlink()
            removed.append(p)
        except OSError:
            pass  # another writer got there first, or a read-only folder: leave it
    return removed


def _publish(tmp: Path) -> None:
    """Give a finished temporary the permissions the umask allows (files 0666, folders 0777)."""
    mask = _umask()
    if tmp.is_dir():
        for root, dirs, files in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777 & ~mask)
            for f in files:
                os.chmod(os.path.join(root, f), 0o666 & ~mask)
        os.chmod(tmp, 0o777 & ~mask)
    else:
        os.chmod(tmp, 0o666 & ~mask)


@contextlib.contextmanager
def temp_dir(near: PathLike, suffix: str = "") -> Iterator[Path]:
    """A scratch folder beside ``near`` (same file system), removed at exit; cleaned by `clean_stale`."""
    near = Path(near)
    near.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(near.parent)
    tmp = temp_name(near, suffix)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary is removed and ``path`` is
    left as it was, so a crash never leaves a half-written file that looks complete; a
    ``kill -9`` leaves the temporary, which the next write into that folder removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    tmp = temp_name(path, suffix)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        yield tmp
        _publish(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_paths(paths: list[PathLike], suffix: str = "") -> Iterator[list[Path]]:
    """Write several files as one unit (an image and its mask): temporaries, then renamed together.

    The renames run back to back only after every temporary is complete; if one fails or is
    interrupted (Ctrl-C), the targets already renamed are removed again, so either all files
    appear or none does. Only a ``kill -9`` between two renames can leave part of the unit,
    which the caller's next write repairs.
    """
    paths = [Path(p) for p in paths]
    for folder in {p.parent for p in paths}:
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale(folder)
    tmps = [temp_name(p, suffix) for p in paths]
    done: list[Path] = []
    try:
        for t in tmps:
            os.close(os.open(t, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        yield tmps
        for t in tmps:
            _publish(t)
        for t, p in zip(tmps, paths):
            os.replace(t, p)
            done.append(p)
    except BaseException:
        for t in tmps:
            t.unlink(missing_ok=True)
        for p in done:
            p.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Like `atomic_path` for a folder (e.g. a zarr store).

    An existing ``path`` is replaced only under the rule of `claim` (``overwrite=True`` and
    ours); it is checked before anything is written and again before the swap.
    """
    path = Path(path)
    claim(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    tmp = temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        publish_dir(tmp, path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_dir(tmp: PathLike, path: PathLike, overwrite: bool = False) -> None:
    """Rename the finished folder ``tmp`` onto ``path`` (the last step of `atomic_dir`).

    An existing ``path`` is replaced only under the rule of `claim`. Writers whose folder outlives
    one call (``partial_name``: block-wise writers that resume after a crash) finish with this.
    """
    tmp, path = Path(tmp), Path(path)
    _publish(tmp)
    if path.exists():
        claim(path, overwrite)
        # move the old one aside under a temporary name first: a kill between the two
        # renames leaves a complete old or new output plus a temporary, never half of one
        old = temp_name(path)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, path)


def partial_name(path: PathLike) -> Path:
    """Where an unfinished ``path`` is built when the work may span processes and restarts.

    Unlike `temp_name` it has no process id: it survives the writer's death (so that a restart
    resumes it) and `clean_stale` leaves it alone. `publish_dir` renames it onto ``path`` when done.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.~enb-partial")


# ------------------------------------------------------------------------------- overwrite rule


def _tiff_is_ours(path: Path) -> bool:
    try:
        import tifffile

        with tifffile.TiffFile(path) as t:
            return t.pages[0].software == MARKER
    except Exception:
        return False


def _pth_is_ours(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
            return bool(pkl) and _PTH_MARKER in z.read(pkl[0])
    except (OSError, zipfile.BadZipFile, KeyError):
        return False


def _zarr_is_ours(path: Path) -> bool:
    try:
        import zarr

        return MARKER in zarr.open(str(path), mode="r").attrs
    except Exception:
        return False


def is_ours(path: PathLike) -> bool:
    """Whether ``path`` is recognisably an output of this library (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        if _zarr_is_ours(path):
            return True
        # a folder of our outputs (TIFF slices, a generated dataset): every entry in it is ours
        # (autosaves of a Viewer opened on one of those files do not make the folder the user's)
        entries = [p for p in path.iterdir() if not _TMP_RE.match(p.name) and p.name != ".empanada_nb-autosave"]
        return bool(entries) and all(is_ours(p) for p in entries)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _tiff_is_ours(path)
    if suffix in (".pth", ".pt"):
        return _pth_is_ours(path)
    if suffix == ".jsonl":  # a training events log: its first line names our format (training/distributed.py)
        try:
            with open(path, encoding="utf-8") as f:
                return '"empanada_nb-events/' in f.readline(200)
        except (OSError, UnicodeDecodeError):
            return False
    if suffix == ".yaml":  # a model card: ours when the model beside it is
        return any(_pth_is_ours(path.with_suffix(s)) for s in (".pth", ".pt"))
    return False


def claim(path: PathLike, overwrite: bool, hint: str = "pass overwrite=True (CLI: --overwrite) to replace it") -> None:
    """Check that ``path`` may be written: absent, or ``overwrite`` and ours. Raises FileExistsError.

    Parameters
    ----------
    path : str or os.PathLike
        The target file or folder.
    overwrite : bool
        Whether the caller asked to replace an existing target.
    hint : str
        How to replace it, appended to the message when ``overwrite`` is False.

    Returns
    -------
    None

    Examples
    --------
    >>> claim("results.zarr", overwrite=True)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise FileExistsError(f"{path} exists; {hint}")
    if path.is_symlink() or not is_ours(path):
        kind = "folder" if path.is_dir() else "file"
        raise FileExistsError(
            f"{path} is a {kind} that empanada_nb did not write; overwrite only replaces its own outputs, "
            "so move it away yourself or choose another output path"
        )


def check_writable(folder: PathLike) -> None:
    """Create ``folder`` if needed and prove a file can be written in it, or raise PermissionError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_name(folder / "write-test")
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise PermissionError(
            f"cannot write to {folder} ({e.strerror or e}); choose a writable output folder"
        ) from None
