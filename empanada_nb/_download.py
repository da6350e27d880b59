"""Downloads into the model cache: once per URL, with a progress bar, a checksum where one is known,
a short connect timeout and a one-line error that names the cache folder when the network is out of reach.

Set ``EMPANADA_NB_OFFLINE=1`` to fail at once without touching the network (CI, air-gapped nodes).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ._atomic import atomic_path

ENV_OFFLINE = "EMPANADA_NB_OFFLINE"
#: seconds to wait for a server to answer; an offline machine fails fast instead of hanging a kernel
CONNECT_TIMEOUT = 10.0


def is_url(s: object) -> bool:
    """True for http(s) URLs."""
    return isinstance(s, str) and s.startswith(("http://", "https://"))


def url_filename(url: str) -> str:
    """The file name a URL downloads to (its last path part, query removed)."""
    name = os.path.basename(urllib.parse.urlparse(url).path)
    return name or "download"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(
    url: str,
    folder: str | os.PathLike,
    *,
    sha256: str | None = None,
    filename: str | None = None,
    timeout: float | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` into ``folder`` unless it is already there; return the local path.

    Parameters
    ----------
    url : str
        http(s) URL.
    folder : path
        Cache folder; the file lands in ``folder/filename``.
    sha256 : str, optional
        Expected SHA-256 hex digest; a mismatch deletes the download and raises ValueError.
    filename : str, optional
        Local name (default: the URL's last path part).
    timeout : float, optional
        Seconds to wait for the server (default :data:`CONNECT_TIMEOUT`).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Path
        The cached file.

    Examples
    --------
    >>> fetch("https://example.org/m.pth", "/tmp/cache")  # doctest: +SKIP
    """
    folder = Path(folder)
    dst = folder / (filename or url_filename(url))
    if dst.is_file():
        return dst
    hint = f"on an offline machine copy the file to {dst} (the cache folder is {folder}) and retry"
    if os.environ.get(ENV_OFFLINE, "").strip() not in ("", "0"):
        raise ConnectionError(f"cannot download {url}: {ENV_OFFLINE} is set; {hint}")
    req = urllib.request.Request(url, headers={"User-Agent": "empanada_nb"})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout or CONNECT_TIMEOUT)
    except urllib.error.HTTPError as e:
        raise ConnectionError(f"cannot download {url}: HTTP {e.code} {e.reason}; check the URL") from None
    except (urllib.error.URLError, OSError, socket.timeout) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(f"cannot download {url} ({reason}); no network? {hint}") from None
    from tqdm.auto import tqdm

    total = int(resp.headers.get("Content-Length") or 0) or None
    h = hashlib.sha256()
    got = 0
    # atomic_path: an interrupted or rejected download never leaves a file that looks cached
    with resp, atomic_path(dst) as tmp, open(tmp, "wb") as f:
        with tqdm(total=total, unit="B", unit_scale=True, desc=dst.name, disable=not progress, leave=False) as bar:
            while True:
                try:
                    block = resp.read(1 << 20)
                except (OSError, socket.timeout, http.client.HTTPException) as e:
                    raise ConnectionError(
                        f"download of {url} broke off after {got} bytes ({e.__class__.__name__}); retry"
                    ) from None
                if not block:
                    break
                f.write(block)
                h.update(block)
                got += len(block)
                bar.update(len(block))
        if total is not None and got != total:
            raise ConnectionError(f"download of {url} is truncated ({got} of {total} bytes); retry")
        if sha256 and h.hexdigest() != sha256.lower():
            raise ValueError(
                f"checksum mismatch for {url}: expected sha256 {sha256[:12]}..., got {h.hexdigest()[:12]}...; "
                "the download was discarded: retry, or check the URL and checksum"
            )
    return dst
