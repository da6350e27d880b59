"""Slice geometry of ``(Z, Y, X)`` volumes: viewing axes, plane indices, 2D-to-3D shapes.

A volume is indexed ``(Z, Y, X)``; a 2D image is treated as a volume with one z slice. A slice
along ``axis`` is ``"xy"`` (``vol[z]``: rows y, columns x), ``"xz"`` (``vol[:, y]``: rows z,
columns x) or ``"yz"`` (``vol[:, :, x]``: rows z, columns y). Every module that cuts a volume into
slices (the viewer, patches, stack inference) uses these functions, so one table says which
dimension a view holds fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

AXES = ("xy", "xz", "yz")
#: for each viewing axis: (the volume dimension held fixed, (row dimension, column dimension))
AXIS_DIMS: dict[str, tuple[int, tuple[int, int]]] = {"xy": (0, (1, 2)), "xz": (1, (0, 2)), "yz": (2, (0, 1))}


def check_axis(axis: str) -> str:
    """``axis`` if it is one of ``AXES``, else a one-line ValueError.

    Parameters
    ----------
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.

    Returns
    -------
    str
        The same axis name.

    Examples
    --------
    >>> check_axis("xz")
    'xz'
    """
    if axis not in AXIS_DIMS:
        raise ValueError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    return axis


def axis_dim(axis: str) -> int:
    """The volume dimension that slices along ``axis`` hold fixed (0 for ``"xy"``, 1, 2).

    Parameters
    ----------
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.

    Returns
    -------
    int
        0, 1 or 2.

    Examples
    --------
    >>> axis_dim("yz")
    2
    """
    return AXIS_DIMS[check_axis(axis)][0]


def shape3(shape: Sequence[int]) -> tuple[int, int, int]:
    """A 2D shape as ``(1, Y, X)``; a 3D shape unchanged; anything else a ValueError.

    Parameters
    ----------
    shape : sequence of int
        The shape of a 2D image or a 3D volume.

    Returns
    -------
    tuple of int
        ``(Z, Y, X)``.

    Examples
    --------
    >>> shape3((20, 30))
    (1, 20, 30)
    """
    out = tuple(int(s) for s in shape)
    if len(out) == 2:
        return (1, out[0], out[1])
    if len(out) != 3:
        raise ValueError(f"expected a 2D or 3D shape, got {out}")
    return out[0], out[1], out[2]


def plane_shape(shape: Sequence[int], axis: str) -> tuple[int, int]:
    """Shape ``(rows, cols)`` of one slice along ``axis`` of a volume of ``shape`` (2D or 3D).

    Parameters
    ----------
    shape : sequence of int
        The volume's shape (a 2D shape counts as one z slice).
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.

    Returns
    -------
    tuple of int
        ``(rows, cols)``.

    Examples
    --------
    >>> plane_shape((4, 20, 30), "xz")
    (4, 30)
    """
    s = shape3(shape)
    _, (r, c) = AXIS_DIMS[check_axis(axis)]
    return s[r], s[c]


def n_slices(shape: Sequence[int], axis: str) -> int:
    """Number of slices along ``axis`` of a volume of ``shape`` (2D or 3D).

    Parameters
    ----------
    shape : sequence of int
        The volume's shape.
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.

    Returns
    -------
    int
        The length of the dimension that ``axis`` holds fixed.

    Examples
    --------
    >>> n_slices((4, 20, 30), "yz")
    30
    """
    return shape3(shape)[axis_dim(axis)]


def plane_index(axis: str, index: int, rows: Any = slice(None), cols: Any = slice(None)) -> tuple:
    """The numpy index of ``(rows, cols)`` of slice ``index`` along ``axis`` in a ``(Z, Y, X)`` array.

    Parameters
    ----------
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.
    index : int
        The slice along ``axis``.
    rows, cols : slice or int, optional
        Which rows and columns of the slice (all by default).

    Returns
    -------
    tuple
        An index for ``volume[...]``.

    Examples
    --------
    >>> plane_index("xz", 5, slice(0, 2))
    (slice(0, 2, None), 5, slice(None, None, None))
    """
    fixed, (r, c) = AXIS_DIMS[check_axis(axis)]
    idx: list[Any] = [None, None, None]
    idx[fixed], idx[r], idx[c] = int(index), rows, cols
    return tuple(idx)


def plane_to_volume(axis: str, index: int, row: float, col: float) -> tuple[float, float, float]:
    """``(z, y, x)`` of the point ``(row, col)`` on slice ``index`` along ``axis``.

    Parameters
    ----------
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.
    index : int
        The slice along ``axis``.
    row, col : float
        The point on the slice.

    Returns
    -------
    tuple
        ``(z, y, x)``.

    Examples
    --------
    >>> plane_to_volume("yz", 7, 2, 3)
    (2, 3, 7)
    """
    fixed, (r, c) = AXIS_DIMS[check_axis(axis)]
    out: list[Any] = [0, 0, 0]
    out[fixed], out[r], out[c] = index, row, col
    return out[0], out[1], out[2]


def volume_to_plane(axis: str, z: Any, y: Any, x: Any) -> tuple[Any, Any, Any]:
    """``(index, row, col)`` of the volume point ``(z, y, x)`` seen along ``axis``.

    Parameters
    ----------
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.
    z, y, x : int or float
        The point in the volume.

    Returns
    -------
    tuple
        ``(slice index, row, col)``.

    Examples
    --------
    >>> volume_to_plane("xz", 2, 3, 7)
    (3, 2, 7)
    """
    fixed, (r, c) = AXIS_DIMS[check_axis(axis)]
    p = (z, y, x)
    return p[fixed], p[r], p[c]
