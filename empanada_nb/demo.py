"""The demo: generate synthetic EM-like data (or take a real dataset), train a small model, report.

This is the main job of ``empanada-nb demo`` and of the README's first command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._atomic import PathLike, atomic_dir
from .data.synthetic import make_synthetic_dataset
from .training import TrainConfig, TrainingHandle, train


def demo_config(iterations: int = 150) -> TrainConfig:
    """A small PanopticDeepLab (ResNet-18) that learns the synthetic data in a few CPU minutes.

    Parameters
    ----------
    iterations : int
        Training iterations (validation runs three times, one checkpoint at the end).

    Returns
    -------
    TrainConfig

    Examples
    --------
    >>> from empanada_nb.demo import demo_config
    >>> cfg = demo_config(150)
    >>> cfg.encoder, cfg.patch_size, cfg.val_every
    ('resnet18', 128, 50)
    """
    return TrainConfig(
        architecture="PanopticDeepLab",
        encoder="resnet18",
        iterations=iterations,
        batch_size=8,
        patch_size=128,
        lr=3e-3,
        val_interval=max(1, iterations // 3),
        checkpoint_interval=iterations,
    )


def run_demo(
    data: PathLike | None = None,
    *,
    iterations: int = 150,
    out: PathLike = "demo_out/demo_model.pth",
    val_data: PathLike | None = None,
    callbacks: Sequence = (),
    overwrite: bool = True,
    **overrides,
) -> TrainingHandle:
    """Train a small model on ``data`` (default: a synthetic dataset written next to ``out``) and validate.

    The settings are ``demo_config(iterations)`` (PanopticDeepLab with ResNet-18, patches of 128,
    batch 8) with ``overrides`` applied. With no ``val_data``, synthetic data gets its own synthetic
    validation set, and a real dataset holds out a fifth of its images.

    Parameters
    ----------
    data : str or os.PathLike, optional
        A dataset in the training layout; default 16 synthetic 256x256 images (and 4 for
        validation) written to ``<out folder>/demo_data``.
    iterations : int
        Training iterations.
    out : str or os.PathLike
        The model file to write.
    val_data : str or os.PathLike, optional
        A validation dataset.
    callbacks : sequence of callable
        Each gets every training event.
    overwrite : bool
        Replace an existing ``out``.
    **overrides
        ``TrainConfig`` fields applied over the demo's.

    Returns
    -------
    TrainingHandle
        The finished run; ``handle.final_metrics`` holds the last validation scores.

    Examples
    --------
    The full demo (a few CPU minutes):

    >>> run = enb.run_demo()  # doctest: +SKIP

    A tiny run on a dataset of three 64x64 images (one held out for validation):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> tmp = tempfile.TemporaryDirectory()
    >>> data = enb.make_synthetic_dataset(Path(tmp.name) / "data", n_images=3, size=64)
    >>> run = enb.run_demo(
    ...     data, iterations=2, out=Path(tmp.name) / "demo.pth", patch_size=64, batch_size=2, min_bn_batch=2
    ... )
    >>> sorted(k for k in run.final_metrics if k in ("iou", "pq", "f1"))
    ['f1', 'iou', 'pq']
    >>> tmp.cleanup()
    """
    out = Path(out)
    cfg = demo_config(iterations).replace(**overrides) if overrides else demo_config(iterations)
    if data is None:
        root = out.parent / "demo_data"
        with atomic_dir(root, overwrite=True) as tmp:  # appears whole or not at all; replaces only ours
            make_synthetic_dataset(tmp / "train", n_images=16, size=256, groups=2, seed=0)
            make_synthetic_dataset(tmp / "val", n_images=4, size=256, groups=1, seed=99)
        data, val_data = root / "train", root / "val"
    elif val_data is None:
        cfg = cfg.replace(val_fraction=0.2)
    return train(data, config=cfg, val_dir=val_data, out=out, callbacks=list(callbacks), overwrite=overwrite)
