"""OME-Zarr and other large-volume inputs/outputs: the opener (every pyramid level, voxel sizes, zarr v2/v3,
dask), the writers (labels, convert) read back by the ome-zarr package, inference on dask and OME-Zarr inputs,
the convert CLI on real data, and a SIGKILL during convert."""

import os
import signal
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
import zarr
from fault_workers import context

import empanada_nb as enb
import empanada_nb.cli as cli
from empanada_nb._atomic import partial_name
from empanada_nb.reader import LevelView, open_pyramid, open_volume, volume_info

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMPANADA_NB_DATA", ROOT / ".." / "shared" / "data"))


def _ome_read(path):
    """What the ome-zarr package (napari's reader) makes of ``path``: its first node."""
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(path), fmt=FormatV04()))())
    assert nodes, f"ome-zarr found no image in {path}"
    return nodes[0]


def _scales(node):
    return [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]


class Counting:
    """An array-like that records the size of every read (dask passes its slices straight through)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.ndim, self.sizes = a, a.shape, a.dtype, a.ndim, []

    def __getitem__(self, idx):
        out = self.a[idx]
        self.sizes.append(out.size)
        return out


# ------------------------------------------------------------------------------------------- writers


def test_labels_pyramid_is_read_by_ome_zarr_with_levels_and_voxel_sizes(tmp_path, rng):
    labels = rng.integers(0, 6, (6, 40, 50)).astype(np.uint16)
    path = enb.write_ome_zarr_labels(
        da.from_array(labels, chunks=(3, 20, 25)),
        tmp_path / "seg.ome.zarr",
        voxel_size=(40, 5, 5),
        unit="nm",
        n_levels=3,
    )
    node = _ome_read(path)
    kinds = {type(s).__name__ for s in node.specs}
    assert {"Label", "Multiscales"} <= kinds
    assert [tuple(d.shape) for d in node.data] == [(6, 40, 50), (6, 20, 25), (6, 10, 13)]
    # anisotropic: z (40 nm) is not halved while y, x (5 nm) catch up
    assert _scales(node) == [[40, 5, 5], [40, 10, 10], [40, 20, 20]]
    assert [a["unit"] for a in node.metadata["axes"]] == ["nanometer"] * 3
    np.testing.assert_array_equal(np.asarray(node.data[0]), labels)
    # strided picking: every level holds only ids of level 0, at the picked voxels
    np.testing.assert_array_equal(np.asarray(node.data[2]), labels[:, ::4, ::4])
    with pytest.raises(FileExistsError, match="exists"):
        enb.write_ome_zarr_labels(labels, path)
    enb.write_ome_zarr_labels(labels[:2], path, overwrite=True)  # ours: may be replaced
    assert open_volume(path).shape == (2, 40, 50)


def test_block_wise_labels_appear_only_when_finished_and_resume(tmp_path):
    path = tmp_path / "seg.ome.zarr"
    arr = enb.create_labels(path, (4, 64, 64), np.uint32, (2, 32, 32), voxel_size=(8, 8, 8), unit="nm")
    arr[:2, :32, :32] = 5
    assert not path.exists() and partial_name(path).is_dir()  # nothing under the final name yet
    again = enb.create_labels(path, (4, 64, 64), np.uint32, (2, 32, 32), voxel_size=(8, 8, 8), resume=True)
    again[2:, 32:, 32:] = 9  # a restarted run keeps what the first wrote
    assert enb.write_label_pyramid(path, n_levels=2) == path
    assert not partial_name(path).exists()
    node = _ome_read(path)
    assert _scales(node) == [[8, 8, 8], [16, 16, 16]]
    lv0 = np.asarray(node.data[0])
    assert (lv0[:2, :32, :32] == 5).all() and (lv0[2:, 32:, 32:] == 9).all() and lv0[:2, 32:].max() == 0
    assert enb.write_label_pyramid(path) == path  # already finished: nothing to do
    fresh = enb.create_labels(tmp_path / "b.ome.zarr", (4, 64, 64), np.uint32, (2, 32, 32))
    fresh[:] = 1
    assert enb.create_labels(tmp_path / "b.ome.zarr", (4, 64, 64), np.uint32, (2, 32, 32))[0, 0, 0] == 0
    with pytest.raises(FileNotFoundError, match="create_labels"):
        enb.write_label_pyramid(tmp_path / "never.ome.zarr")


# ------------------------------------------------------------------------------------------- opener


def test_opener_reads_every_level_of_ome_zarr_0_4_written_by_ome_zarr_package(tmp_path, rng):
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    img = rng.integers(0, 255, (8, 64, 48), dtype=np.uint8)
    store = parse_url(str(tmp_path / "img.ome.zarr"), mode="w", fmt=FormatV04()).store
    root = zarr.group(store=store, zarr_format=2)
    write_image(  # ome-zarr-py's own writer: levels "s0", "s1", "s2", scale and translation transforms
        img,
        root,
        axes="zyx",
        scale_factors=[{"z": 1, "y": 2, "x": 2}, {"z": 1, "y": 4, "x": 4}],
        scale={"z": 0.05, "y": 0.005, "x": 0.005},
        axes_units={a: "micrometer" for a in "zyx"},
        fmt=FormatV04(),
    )
    p = open_pyramid(tmp_path / "img.ome.zarr")
    assert [lv.shape for lv in p.levels] == [(8, 64, 48), (8, 32, 24), (8, 16, 12)]
    assert p.voxel_size == pytest.approx((0.05, 0.005, 0.005)) and p.unit == "micrometer"
    assert p.scales == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]
    np.testing.assert_array_equal(open_volume(tmp_path / "img.ome.zarr")[...], img)
    info = volume_info(tmp_path / "img.ome.zarr")
    assert info["levels"][2] == (8, 16, 12) and info["voxel_size"] == pytest.approx((0.05, 0.005, 0.005))
    # one level opened on its own still knows its voxel size (its group's metadata)
    assert open_pyramid(zarr.open_array(str(tmp_path / "img.ome.zarr" / "s1"))).voxel_size == pytest.approx(
        (0.05, 0.01, 0.01)
    )


def test_opener_reads_ngff_0_5_zarr_v3_with_channel_axis_and_level_not_named_0(tmp_path, rng):
    vol = rng.integers(0, 1000, (1, 5, 32, 40)).astype(np.uint16)
    g = zarr.open_group(str(tmp_path / "v3.ome.zarr"), mode="w", zarr_format=3)
    g.create_array("s0", shape=vol.shape, dtype=vol.dtype, chunks=(1, 2, 16, 16))[:] = vol
    g.create_array("s1", shape=(1, 5, 16, 20), dtype=vol.dtype, chunks=(1, 2, 16, 16))[:] = vol[:, :, ::2, ::2]
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    g.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": axes,
                "datasets": [
                    {
                        "path": f"s{k}",
                        "coordinateTransformations": [{"type": "scale", "scale": [1, 30, 4 * 2**k, 4 * 2**k]}],
                    }
                    for k in range(2)
                ],
            }
        ],
    }
    p = open_pyramid(tmp_path / "v3.ome.zarr")
    assert isinstance(p.levels[0], LevelView) and [lv.shape for lv in p.levels] == [(5, 32, 40), (5, 16, 20)]
    assert p.voxel_size == (30, 4, 4) and p.scales[1] == (1, 2, 2) and p.unit == "nanometer"
    vol0 = open_volume(tmp_path / "v3.ome.zarr")  # level 0, though no array is called "0"
    np.testing.assert_array_equal(vol0[2], vol[0, 2])
    np.testing.assert_array_equal(vol0[:, 5, :], vol[0, :, 5, :])
    # several channels: refused in one line that says what to do
    g2 = zarr.open_group(str(tmp_path / "c2.ome.zarr"), mode="w", zarr_format=3)
    g2.create_array("0", shape=(2, 5, 8, 8), dtype="u1")
    g2.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [{"path": "0"}]}]}
    with pytest.raises(ValueError, match=r"has c=2; .* one greyscale channel") as e:
        open_volume(tmp_path / "c2.ome.zarr")
    assert "\n" not in str(e.value)


def test_opener_reads_zarr_v2_and_v3_arrays_and_dask(tmp_path, rng):
    vol = rng.integers(0, 255, (4, 16, 16), dtype=np.uint8)
    for fmt in (2, 3):
        a = zarr.open_array(str(tmp_path / f"v{fmt}.zarr"), mode="w", shape=vol.shape, dtype=vol.dtype, zarr_format=fmt)
        a[:] = vol
        got = open_volume(tmp_path / f"v{fmt}.zarr")
        assert isinstance(got, zarr.Array) and got.metadata.zarr_format == fmt
        np.testing.assert_array_equal(got[1:3, 4], vol[1:3, 4])
        assert volume_info(tmp_path / f"v{fmt}.zarr")["voxel_size"] is None
    d = da.from_array(vol, chunks=(2, 8, 8))
    assert open_volume(d) is d and open_pyramid(d).levels == [d]
    assert volume_info(d)["shape"] == (4, 16, 16)
    # a TIFF's ImageJ spacing and resolution are its voxel size
    tifffile.imwrite(
        tmp_path / "ij.tif",
        vol,
        imagej=True,
        resolution=(1 / 0.005, 1 / 0.005),
        metadata={"spacing": 0.04, "unit": "um"},
    )
    p = open_pyramid(tmp_path / "ij.tif")
    assert p.voxel_size == pytest.approx((0.04, 0.005, 0.005)) and p.unit == "micrometer"


# ------------------------------------------------------------------------------------------- inference


@pytest.fixture(scope="module")
def real_crop():
    path = SHARED_DATA / "vnc_stack1_image.tif"
    if not path.is_file():
        pytest.skip(f"real data {path} not found; set EMPANADA_NB_DATA")
    return np.asarray(open_volume(path)[4:8, 400:448, 380:428])


@pytest.fixture(scope="module")
def one_thread():
    """Inference on 1 torch thread: with conftest's 2 on a shared 2-core machine every conv waits on the other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model(real_crop, one_thread):
    """An untrained resnet18 whose output heads are scaled so that it finds objects (its raw logits are ~1e-4)."""
    torch.manual_seed(0)
    m = enb.build_model("PanopticDeepLab", "resnet18").eval()
    with torch.no_grad():
        for head in (m.semantic_head, m.ins_center, m.ins_xy):
            head.head[1].weight.mul_(2e4 if head is m.semantic_head else 1e3)
        x = torch.from_numpy(real_crop[:1, None].astype(np.float32) / 255)
        sem = m((x - 0.5) / 0.25)["sem_logits"]  # roughly the normalised input
        m.semantic_head.head[1].bias.sub_(sem.median())  # about half the pixels foreground
    return m


@pytest.mark.realdata
def test_dask_volume_streams_through_stack_and_ortho_inference(real_crop, tiny_model, tmp_path):
    kw = dict(progress=False, min_size=0, min_extent=0, batch_size=2, cache_mb=0.001)
    ref = enb.segment_stack(tiny_model, real_crop, **kw)
    assert len(np.unique(ref)) > 3, "the check needs some labels"
    src = Counting(real_crop)
    got = enb.segment_stack(tiny_model, da.from_array(src, chunks=real_crop.shape), **kw)
    np.testing.assert_array_equal(got, ref)
    assert max(src.sizes) < real_crop.size  # read in blocks of slices, never whole
    src = Counting(real_crop)
    dz = da.from_array(src, chunks=real_crop.shape)
    ortho = enb.segment_ortho(tiny_model, dz, out=tmp_path / "o.zarr", **kw)
    np.testing.assert_array_equal(ortho[...], enb.segment_ortho(tiny_model, real_crop, **kw))
    assert max(src.sizes) < real_crop.size


@pytest.mark.realdata
def test_ome_zarr_input_gives_ome_zarr_labels_with_its_voxel_sizes(real_crop, tiny_model, tmp_path):
    tifffile.imwrite(tmp_path / "crop.tif", real_crop, compression="zlib")
    img = enb.convert_to_ome_zarr(
        tmp_path / "crop.tif",
        tmp_path / "img.ome.zarr",
        chunks=(2, 32, 32),
        voxel_size=(50, 4.6, 4.6),
        unit="nm",
        progress=False,
    )
    out = tmp_path / "seg.ome.zarr"
    labels = enb.segment_stack(tiny_model, img, out=out, progress=False, min_size=0, min_extent=0)
    np.testing.assert_array_equal(
        labels[...], enb.segment_stack(tiny_model, real_crop, progress=False, min_size=0, min_extent=0)
    )
    node = _ome_read(out)
    assert "Label" in {type(s).__name__ for s in node.specs}
    assert _scales(node)[0] == pytest.approx([50, 4.6, 4.6]) and node.metadata["axes"][0]["unit"] == "nanometer"


# ------------------------------------------------------------------------------------------- convert


@pytest.mark.realdata
def test_convert_cli_on_real_tiff(real_crop, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ["convert"])
    src = tmp_path / "crop.tif"
    tifffile.imwrite(src, real_crop, compression="zlib", photometric="minisblack")
    out = tmp_path / "crop.ome.zarr"
    rc = cli.main(
        [
            "convert",
            str(src),
            str(out),
            "--chunks",
            "2",
            "32",
            "32",
            "--levels",
            "3",
            "--voxel-size",
            "50",
            "4.6",
            "4.6",
            "--unit",
            "nm",
        ]
    )
    stdout, err = capsys.readouterr()
    assert rc == 0 and "3 levels" in stdout and "pyramid" in err  # progress bars on stderr
    node = _ome_read(out)
    assert [tuple(d.shape) for d in node.data] == [(4, 48, 48), (4, 24, 24), (4, 12, 12)]
    assert _scales(node)[1] == pytest.approx([50, 9.2, 9.2])
    np.testing.assert_array_equal(np.asarray(node.data[0]), real_crop)
    mean = real_crop[:, :2, :2].astype(float).mean(axis=(1, 2))
    np.testing.assert_array_equal(np.asarray(node.data[1])[:, 0, 0], np.rint(mean).astype(np.uint8))
    assert zarr.open_array(str(out / "0")).chunks == (2, 32, 32)
    (tmp_path / "bad.tif").write_text("not a tiff")
    rc = cli.main(["convert", str(tmp_path / "bad.tif"), str(tmp_path / "bad.ome.zarr")])
    err = capsys.readouterr().err.strip()
    assert (
        rc == 2 and err.startswith("empanada-nb convert: error:") and "not a readable TIFF" in err and "\n" not in err
    )
    rc = cli.main(["convert", str(src), str(out)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def test_segment_cli_writes_ome_zarr_labels_with_the_tiff_voxel_size(tmp_path, capsys, monkeypatch, rng):
    monkeypatch.setattr(cli, "COMMANDS", ["segment"])
    torch.manual_seed(0)
    model = enb.save_model(enb.build_model("PanopticDeepLab", "resnet18"), tmp_path / "m.pth")
    vol = rng.integers(0, 255, (3, 32, 32), dtype=np.uint8)
    meta = {"spacing": 0.05, "unit": "micron"}
    tifffile.imwrite(tmp_path / "v.tif", vol, imagej=True, resolution=(200, 200), metadata=meta)
    rc = cli.main(["segment", str(model), str(tmp_path / "v.tif"), "--out", str(tmp_path / "s.ome.zarr"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    p = open_pyramid(tmp_path / "s.ome.zarr")
    assert p.voxel_size == pytest.approx((0.05, 0.005, 0.005)) and p.unit == "micrometer"
    assert p.shape == (3, 32, 32) and np.dtype(p.dtype).kind in "iu"


def _convert_child(src: str, out: str) -> None:
    """Body of the killed process: a slow convert (one-slice chunks)."""
    enb.convert_to_ome_zarr(src, out, chunks=(1, 16, 16), progress=False)


def test_sigkill_during_convert_leaves_no_half_dataset(tmp_path, rng):
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, rng.integers(0, 255, (64, 256, 256), dtype=np.uint8), compression="zlib")
    out = tmp_path / "big.ome.zarr"
    # the fault catalogue's forkserver (torch and empanada_nb preloaded): the child starts at once
    p = context().Process(target=_convert_child, args=(str(src), str(out)))
    p.start()
    t0 = time.time()

    def written():  # chunks already in the temporary store
        return [t for t in tmp_path.glob(".big.ome.zarr.~enb-*.tmp") if any((t / "0").glob("*"))]

    while not written() and p.is_alive() and time.time() - t0 < 120:
        time.sleep(0.02)
    assert p.is_alive(), f"convert ended before the kill (exit {p.exitcode})"
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert not out.exists(), "a killed convert left a dataset under the final name"
    assert written(), "the kill should leave the temporary (removed by the next write)"
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, rng.integers(0, 255, (2, 32, 32), dtype=np.uint8))
    enb.convert_to_ome_zarr(small, out, progress=False)  # the next write in the folder cleans up
    assert not list(tmp_path.glob(".big.ome.zarr.~enb-*")) and open_volume(out).shape == (2, 32, 32)
