"""Slice geometry (geometry.py): every view's index agrees with numpy slicing and round-trips."""

import numpy as np
import pytest

from empanada_nb.geometry import (
    AXES,
    axis_dim,
    check_axis,
    n_slices,
    plane_index,
    plane_shape,
    plane_to_volume,
    shape3,
    volume_to_plane,
)

VOL = np.arange(4 * 5 * 6).reshape(4, 5, 6)
NUMPY_SLICE = {"xy": lambda i: VOL[i], "xz": lambda i: VOL[:, i], "yz": lambda i: VOL[:, :, i]}


@pytest.mark.parametrize("axis", AXES)
def test_plane_index_matches_numpy_slicing(axis):
    assert n_slices(VOL.shape, axis) == VOL.shape[axis_dim(axis)]
    for i in range(n_slices(VOL.shape, axis)):
        plane = VOL[plane_index(axis, i)]
        np.testing.assert_array_equal(plane, NUMPY_SLICE[axis](i))
        assert plane.shape == plane_shape(VOL.shape, axis)
    box = VOL[plane_index(axis, 1, slice(1, 3), slice(0, 2))]
    np.testing.assert_array_equal(box, NUMPY_SLICE[axis](1)[1:3, 0:2])


@pytest.mark.parametrize("axis", AXES)
def test_plane_and_volume_coordinates_round_trip(axis):
    index, row, col = 2, 3, 1
    z, y, x = plane_to_volume(axis, index, row, col)
    assert VOL[z, y, x] == NUMPY_SLICE[axis](index)[row, col]
    assert volume_to_plane(axis, z, y, x) == (index, row, col)


def test_shapes_and_bad_input():
    assert shape3((5, 6)) == (1, 5, 6) and shape3([4, 5, 6]) == (4, 5, 6)
    assert plane_shape((5, 6), "xy") == (5, 6) and n_slices((5, 6), "xy") == 1  # a 2D image is one slice
    assert [axis_dim(a) for a in AXES] == [0, 1, 2]
    with pytest.raises(ValueError, match="expected a 2D or 3D shape"):
        shape3((2, 3, 4, 5))
    with pytest.raises(ValueError, match="axis must be one of xy, xz, yz, got 'zz'"):
        check_axis("zz")
    with pytest.raises(ValueError, match="axis must be one of"):
        plane_index("x", 0)
