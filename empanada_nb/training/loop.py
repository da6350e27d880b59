"""The one training loop behind train() and finetune().

Iterations, not epochs, drive training (item i of the dataset is the batch of iteration i),
so tiny datasets work (sampled with replacement) and a resumed run sees the same batches it
would have seen. AdamW without decay on biases and norm layers, OneCycle LR, mixed precision
on CUDA, channels_last on every device, atomic checkpoints, and a model that is always saved at the end,
whether the run finished, was stopped, was interrupted with Ctrl-C or died of an error.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn as nn

from .._atomic import PathLike, check_writable, claim
from .._device import resolve_device
from ..data.augment import AugmentConfig
from ..data.dataset import PanopticDataset
from ..losses import PanopticLoss
from ..model_io import ModelCard, card_for, load_model, save_model
from ..models import build_model, check_patch_size, load_encoder_weights, resolve_pretrained, set_finetunable
from .budget import PROVISIONAL_ITERATIONS, REFIT_TOLERANCE, TimeBudget, estimate_validation_s, fit_one_cycle
from .calibrate import CALIBRATION_IMAGES, calibrate_foreground, semantic_predictor, spread
from .checkpoint import checkpoint_path, load_checkpoint, restore_rng, save_checkpoint
from .checks import check_classes, warn_unannotated
from .config import TrainConfig
from .distributed import EventsLog, env_rank, events_path, launched, setup
from .handle import TrainingHandle
from .lineage import HashJob, compact, weights_sha256
from .loader import batch_loader, resolve_workers
from .object_size import instance_areas, min_area_from_objects
from .prior import class_prior, init_semantic_prior
from .rules import batch_size_warning, check_finetune_classes, pairs_of, patch_size_warning
from .validate import load_validation_set, validate

Dirs = Union[PathLike, Sequence[PathLike]]  # one dataset folder or several (empanada's additional_train_dirs)
CLASS_FIELDS = ("num_classes", "class_names", "thing_list")
Callback = Callable[[dict], None]


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device:
        return resolve_device(cfg.device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; biases, norm layers and other 1-D parameters get no weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )


def set_train_mode(model: nn.Module, freeze_all_bn: bool) -> None:
    """Train mode, but BatchNorm layers of frozen parts (or all, for small batches) keep their statistics.

    So do the BatchNorm layers that stand for a fused conv's bias in models loaded from empanada's
    quantizable files (``card.fixed_bn``): their identity statistics are part of the loaded function.
    """
    model.train()
    card = getattr(model, "card", None)
    fixed = set(getattr(card, "fixed_bn", None) or getattr(model, "fixed_bn", None) or ())
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            frozen = not any(p.requires_grad for p in m.parameters(recurse=False))
            if freeze_all_bn or frozen or name in fixed:
                m.eval()


#: settings a resumed run may change; the others define the run and must stay as they were
RESUMABLE = (
    "iterations",
    "device",
    "num_workers",
    "val_interval",
    "checkpoint_interval",
    "amp",
    "channels_last",
    "calibrate",
)


def _check_out(out: Path, overwrite: bool, resume) -> None:
    """The overwrite rule for a run's outputs, an interrupted run's checkpoint, and a writable folder."""
    check_writable(out.parent)
    ckpt = checkpoint_path(out)
    if resume:
        claim(out, True)  # replaced at the end of the resumed run, if it is ours
        return
    if ckpt.exists() and not overwrite:
        try:
            st = load_checkpoint(ckpt)
            done, total = int(st["iteration"]), int(st["config"]["iterations"])
        except (ValueError, KeyError):
            done, total = 0, 0
        if done < total:  # an unfinished run: never start over silently on top of it
            raise FileExistsError(
                f"{ckpt} holds an unfinished run (iteration {done} of {total}); resume it with resume=True "
                "(CLI: --resume) or start afresh, replacing it, with overwrite=True (CLI: --overwrite)"
            )
    for p in (out, out.with_suffix(".yaml"), ckpt):
        claim(p, overwrite, hint="choose another out= path or pass overwrite=True (CLI: --overwrite)")


def explicit_settings(config: TrainConfig | None, overrides: dict) -> dict:
    """The settings a caller asked for: ``overrides`` and the fields of ``config`` that differ from the defaults."""
    out = {}
    if config is not None:
        default = TrainConfig().to_dict()
        out = {k: v for k, v in config.to_dict().items() if v != default[k]}
    out.update(overrides)
    return out


def resume_config(state: dict, requested: dict) -> TrainConfig:
    """The checkpoint's config with the changes a resumed run may make; a ValueError for the others."""
    saved = TrainConfig.from_dict(state["config"])
    changes, refused = {}, []
    for k, v in requested.items():
        old = getattr(saved, k)
        if v == old:
            continue
        if k in RESUMABLE:
            changes[k] = v
        else:
            refused.append(f"{k}={v!r} (the run has {old!r})")
    if refused:
        raise ValueError(
            f"cannot resume with {', '.join(refused)}: only {', '.join(RESUMABLE)} may change when resuming; "
            "drop the other settings, or start afresh with overwrite=True (CLI: --overwrite)"
        )
    if "iterations" in changes and int(changes["iterations"]) <= int(state["iteration"]):
        raise ValueError(
            f"cannot resume with iterations={changes['iterations']}: the checkpoint is at iteration "
            f"{state['iteration']}; ask for more iterations"
        )
    return saved.replace(**changes)


def run_training(
    handle: TrainingHandle,
    model: nn.Module,
    train_dir: Dirs,
    cfg: TrainConfig,
    *,
    val_dir: PathLike | None = None,
    resume: PathLike | None = None,
    is_finetune: bool = False,
    data_norms: bool = False,
    lineage: dict | None = None,
) -> TrainingHandle:
    """Run the loop to completion (or stop/interrupt/error), emitting events on ``handle``.

    ``data_norms``: the model has no pretrained norms, so compute them from the training images
    (per-image mean and std averaged, as empanada-napari's ``train.py`` does). ``lineage``: where
    the model comes from (pretrained weights, parent model), stored on the card with the data.
    """
    ddp, device = setup(_device(cfg))  # under torchrun: this rank's device and the process group
    out = handle.out
    ckpt_file = checkpoint_path(out)
    state = load_checkpoint(resume) if resume else None
    # a time budget fixes the iteration count after the first steps (a resumed run keeps the count it fixed)
    budget = TimeBudget(cfg.max_minutes) if cfg.max_minutes and state is None else None
    if budget is not None and ddp.active:  # each process would fit its own count and the collectives would hang
        raise ValueError("max_minutes does not work under torchrun yet: give iterations instead")
    if budget is not None:  # provisional, until the step time is measured
        cfg = cfg.replace(iterations=max(cfg.iterations, PROVISIONAL_ITERATIONS))
    horizon = 2**62 if budget is not None else cfg.iterations  # the last batch the loader may prepare
    if state is not None:  # cfg is the checkpoint's, with the changes resume_config allowed
        model.load_state_dict(state["model"]["state_dict"])
    set_finetunable(model, cfg.finetunable_layers)
    check_patch_size(cfg.patch_size, model)
    card = card_for(model)
    card.label_divisor = cfg.label_divisor or cfg.output_label_divisor
    if not is_finetune:
        card.class_names, card.thing_list = dict(cfg.class_names), list(cfg.thing_list)
    if cfg.description:
        card.description = cfg.description
    card.config = cfg.to_dict()

    dirs = train_dirs(train_dir, cfg)
    pairs = pairs_of(dirs)
    val_pairs = pairs_of([val_dir]) if val_dir else []
    if not val_pairs and cfg.val_fraction > 0 and len(pairs) > 1:
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(pairs))
        n_val = max(1, int(round(cfg.val_fraction * len(pairs))))
        val_pairs = [pairs[i] for i in order[:n_val]]
        pairs = [pairs[i] for i in sorted(order[n_val:])]
    if len(pairs) < cfg.batch_size:
        warnings.warn(
            f"{len(pairs)} training image(s) for batch size {cfg.batch_size}: images are sampled "
            "with replacement (each batch repeats images under different augmentations)",
            stacklevel=3,
        )
    for advice in (batch_size_warning(cfg.batch_size), patch_size_warning(cfg.patch_size, pairs)):
        if advice:
            warnings.warn(advice, stacklevel=3)
    # Frozen statistics are only meaningful when they come from a trained model; from scratch,
    # noisy batch statistics are the lesser evil.
    freeze_bn = cfg.batch_size < cfg.min_bn_batch and is_finetune
    if freeze_bn:
        warnings.warn(
            f"batch size {cfg.batch_size} < {cfg.min_bn_batch}: the model's trained BatchNorm statistics "
            "stay frozen (scale and shift still train)",
            stacklevel=3,
        )
    dataset = PanopticDataset(
        pairs,
        patch_size=cfg.patch_size,
        batch_size=ddp.local_batch(cfg.batch_size),
        iterations=horizon,
        label_divisor=cfg.label_divisor,
        thing_list=card.thing_list,
        num_classes=model.num_classes,
        connected_components=cfg.connected_components,
        sigma=cfg.heatmap_sigma,
        augment=AugmentConfig(tuple(cfg.scale), cfg.rotate, cfg.flip, cfg.brightness, cfg.contrast),
        gamma=cfg.group_gamma,
        seed=cfg.seed,
        ignore_unlabelled=cfg.ignore_unlabelled,
    )
    if cfg.ignore_unlabelled and not dataset.ignore_unlabelled:  # 0/255 binary masks: validate them alike
        cfg = cfg.replace(ignore_unlabelled=False)
    check_classes(dataset.masks, cfg.label_divisor, model.num_classes, card, is_finetune, ", ".join(dirs))
    warn_unannotated(dataset.masks, [p.mask for p in dataset.pairs])
    if state is None and not is_finetune:  # a fresh semantic head starts at the data's class frequencies
        init_semantic_prior(model, class_prior(dataset.masks, cfg.label_divisor, model.num_classes))
    # the smallest plausible object at this data's pixel size, for inference's min_area (a finetune on too
    # few objects keeps the parent's)
    if cfg.label_divisor is not None or model.num_classes == 1:
        learned = min_area_from_objects(instance_areas(dataset.masks, cfg.label_divisor, card.thing_list))
        card.min_area = learned if learned is not None else card.min_area
    if data_norms and state is None:
        model.norms = dataset.norms()
    card.norms = dict(model.norms)
    if state is None:
        card.lineage = {
            **(lineage or {}),
            "train_dir": str(Path(dirs[0]).resolve()),
            **({"additional_train_dirs": [str(Path(d).resolve()) for d in dirs[1:]]} if len(dirs) > 1 else {}),
            "train_images": len(pairs),
            "val_dir": str(Path(val_dir).resolve()) if val_dir else None,
            "norms_from": "training images" if data_norms else "pretrained weights or parent model",
        }
    # the files' hashes in a thread: the first iteration does not wait for a large dataset
    parent = card.lineage.get("finetuned_from") or card.lineage.get("pretrained")
    todo = ddp.is_main and (state is None or "dataset" not in card.lineage)
    hashes = HashJob(pairs, val_pairs, parent) if todo else None
    val_set = load_validation_set(val_pairs, cfg, card) if val_pairs and ddp.is_main else None  # rank 0 validates

    model.to(device)
    cuda = device.type == "cuda"
    if cfg.channels_last:  # NHWC: oneDNN's CPU convolutions are faster on it too (1.5x a step, see TrainConfig)
        model.to(memory_format=torch.channels_last)
    net = ddp.wrap(model, device)  # DistributedDataParallel under torchrun, else model itself
    criterion = PanopticLoss(cfg.ce_weight, cfg.mse_weight, cfg.l1_weight, cfg.pr_weight, cfg.top_k_percent)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.iterations, pct_start=cfg.pct_start)
    # mixed precision where the device computes it natively: float16 on CUDA (with loss scaling), bfloat16
    # on CPUs with AVX512-BF16/AMX (no scaling: bfloat16 has float32's range); a default-recipe step on a
    # 2-core AVX512-BF16 CPU took 2.1 s instead of 3.1 s (benchmarks/train_step.py)
    amp = cfg.step_precision(device)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and amp.dtype is torch.float16)
    start = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        # the schedule spans this run's iterations (a resumed run may ask for more)
        total, phases = sched.total_steps, sched._schedule_phases
        sched.load_state_dict(state["scheduler"])
        sched.total_steps, sched._schedule_phases = total, phases
        scaler.load_state_dict(state["scaler"])
        start = int(state["iteration"])
        for e in state.get("history", []):
            handle.emit(e)
    else:
        torch.manual_seed(cfg.seed)
    mean = torch.tensor(model.norms["mean"], device=device)
    std = torch.tensor(model.norms["std"], device=device)

    last_good: list = [None]  # the iteration of the last checkpoint written

    def checkpoint(it: int) -> None:
        if not ddp.is_main:
            return
        try:
            _save(it)
        except OSError as e:
            good = f"{ckpt_file} (iteration {last_good[0]})" if last_good[0] is not None else "none was written"
            raise OSError(
                f"could not write the checkpoint {ckpt_file} ({e.strerror or e}); the last good checkpoint is {good}"
            ) from None
        last_good[0] = it

    def take_hashes(wait: bool) -> None:
        if hashes is not None and (wait or hashes.ready()):
            res = hashes.result()
            card.lineage["dataset"] = res["dataset"]
            if "parent" in res:
                card.lineage["parent"] = {**(card.lineage.get("parent") or {}), **res["parent"]}
        card.lineage["settings"] = cfg.to_dict()
        card.lineage["step_precision"] = amp.name  # what `amp` ran on this device: fp32, bf16 or fp16

    def _save(it: int) -> None:
        take_hashes(wait=False)
        save_checkpoint(
            ckpt_file,
            {
                "model": {
                    "format": "empanada_nb-model/1",
                    "card": card.to_dict(),
                    "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                },
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "iteration": it,
                "config": cfg.to_dict(),
                "history": list(handle.history),
            },
        )

    # this process's share of the iterations (all of them outside torchrun)
    loader = batch_loader(
        dataset, ddp.indices(start, horizon), resolve_workers(cfg.num_workers, device), pin_memory=cuda
    )
    if state is not None:
        restore_rng(state)  # after creating the loader iterator, which draws from the global RNG
        last_good[0] = start
    it, stopped, t0, t_last = start, False, time.time(), time.time()
    val_pixels = sum(img.size for img, _ in val_set) if val_set is not None else 0
    state_bytes = 3 * sum(p.numel() * p.element_size() for p in model.parameters())  # weights + AdamW moments

    def iterations():  # cfg.iterations may be refitted to a time budget while the run goes
        i = start
        while i < cfg.iterations:
            yield i
            i += 1

    def fit_budget(it: int) -> None:
        """Fix (or refit) the iteration count and the schedule to the time budget left."""
        nonlocal cfg
        assert budget is not None
        vals, ckpts = budget.overheads["validation"], budget.overheads["checkpoint"]
        val_s = max(vals) if vals else estimate_validation_s(val_pixels, budget.step_s or 1.0, batch_pixels)
        ckpt_s = max(ckpts) if ckpts else state_bytes / 2e8  # ~200 MB/s until one is timed
        # the threshold fit at the end: a forward over its images, priced like validation pixels, and with
        # validation images one more validation (of the calibrated model)
        cal_s = estimate_validation_s(cal_pixels, budget.step_s or 1.0, batch_pixels) if cfg.calibrate else 0.0
        cal_s += val_s if cfg.calibrate and val_set is not None else 0.0
        total = budget.fit(
            it,
            (lambda n: cfg.replace(iterations=n).val_every) if val_set is not None else None,
            lambda n: cfg.replace(iterations=n).checkpoint_every,
            val_s,
            ckpt_s,
            end_s=cal_s,
        )
        total = max(total, it, 1)
        # more iterations only when worth a change of schedule; fewer when 2 or more (one is step-time noise)
        # or near the end, where the deadline comes first
        grown = (total - cfg.iterations) * (budget.step_s or 0.0)
        late = budget.remaining() < 0.1 * budget.seconds
        if budget.fixed is not None and (
            total == cfg.iterations
            or 0 < grown <= REFIT_TOLERANCE * budget.seconds
            or (total == cfg.iterations - 1 and not late)
        ):
            return
        budget.fixed = total
        cfg = cfg.replace(iterations=total)
        fit_one_cycle(sched, total)
        handle.emit(
            {
                "type": "budget",
                "iteration": it,
                "iterations": total,
                "step_s": budget.step_s,
                "max_minutes": cfg.max_minutes,
                "eta": max(0.0, budget.remaining()),
            }
        )

    batch_pixels = cfg.batch_size * cfg.patch_size**2
    cal_source = "validation images" if val_set is not None else "training images"
    cal_pairs = spread(pairs, CALIBRATION_IMAGES) if val_set is None else []
    cal_images = spread(dataset.images, CALIBRATION_IMAGES)  # the same spread as cal_pairs
    cal_pixels = val_pixels if val_set is not None else sum(int(np.prod(a.shape)) for a in cal_images)

    def fit_threshold_at_end(model: nn.Module, it: int) -> None:
        """The foreground threshold fitted on rank 0 and folded into the model; every rank gets the bias."""
        fit = None
        if ddp.is_main and not handle.interrupted:
            try:
                data = val_set if val_set is not None else load_validation_set(cal_pairs, cfg, card)
            except Exception as e:  # unreadable training images were read before: this is not expected
                warnings.warn(f"the foreground threshold could not be fitted ({e}); the model keeps 0.5", stacklevel=4)
                data = None
            fit = calibrate_foreground(model, data, device, cal_source)
        conv = semantic_predictor(model)
        if conv is not None:
            ddp.broadcast(conv.bias.data)  # under torchrun all ranks hold the saved model
        if fit is None:
            return
        card.calibration = {k: fit[k] for k in ("threshold", "iou_at_0.5", "iou", "images", "source", "applied")}
        handle.emit({"type": "calibration", "iteration": it, **card.calibration})
        if fit["applied"] and val_set is not None:  # the run's final metrics are the saved model's
            metrics = validate(model, val_set, cfg, card, device)
            handle.emit({"type": "validation", "iteration": it, "calibrated": True, **metrics})
            card.history_summary = handle.summary()

    t_mark = time.monotonic()  # the end of the previous iteration: a step's time includes waiting for its batch
    # Ctrl-C is taken at the end of an iteration, so that the checkpoint holds exactly `it`
    # optimizer steps; a second Ctrl-C interrupts at once (the checkpoint before it is kept)
    sigint, dirty = [False], False

    def on_sigint(signum, frame):
        if sigint[0]:
            raise KeyboardInterrupt
        sigint[0] = True
        print("empanada_nb: interrupted; finishing this iteration (Ctrl-C again to stop at once)", file=sys.stderr)

    old_handler = None
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            old_handler = signal.signal(signal.SIGINT, on_sigint)
    set_train_mode(model, freeze_bn)
    hard_stop = False  # a second Ctrl-C: the other processes may be inside a collective, so no more of them
    try:
        for it_idx, batch in zip(iterations(), loader):
            if handle.stopping and not ddp.active:  # under torchrun all ranks stop together, below
                stopped = True
                break
            x = (batch["image"].to(device, non_blocking=True) - mean) / std
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            target = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "image"}
            with amp.autocast(device):
                output = net(x)
            loss, terms = criterion(output, target)
            loss_value, terms = ddp.average(loss, terms)  # over all processes: all of them stop on a bad loss
            if not np.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss became {loss_value} at iteration {it_idx + 1}: training diverged (lower lr) or the "
                    f"targets are broken (check the masks); the checkpoint {ckpt_file} holds iteration {it_idx}"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            dirty = True  # from here until `it` is advanced, weights and the iteration count disagree
            scaler.step(opt)
            scaler.update()
            sched.step()
            it = it_idx + 1
            dirty = False
            if budget is not None:
                budget.step(time.monotonic() - t_mark, it, first=it == start + 1)
                if budget.fixed is None and budget.ready():
                    fit_budget(it)
            now = time.time()
            done = it - start
            handle.emit(
                {
                    "type": "step",
                    "iteration": it,
                    "iterations": cfg.iterations,
                    "loss": loss_value,
                    "terms": terms,
                    "lr": opt.param_groups[0]["lr"],
                    "images_per_s": cfg.batch_size / max(now - t_last, 1e-9),
                    "elapsed": now - t0,
                    "eta": max(0.0, budget.remaining()) if budget else (now - t0) / done * (cfg.iterations - it),
                }
            )
            t_last = now
            if val_set is not None and (it % cfg.val_every == 0 or it == cfg.iterations):
                t_val = time.monotonic()
                metrics = validate(model, val_set, cfg, card, device)
                set_train_mode(model, freeze_bn)
                handle.emit({"type": "validation", "iteration": it, **metrics})
                if budget is not None:
                    budget.overhead("validation", time.monotonic() - t_val)
            if it % cfg.checkpoint_every == 0 and it < cfg.iterations:
                t_ckpt = time.monotonic()
                checkpoint(it)
                handle.emit({"type": "checkpoint", "iteration": it, "path": str(ckpt_file)})
                if budget is not None:
                    budget.overhead("checkpoint", time.monotonic() - t_ckpt)
            if budget is not None and budget.fixed is not None and it < cfg.iterations:
                fit_budget(it)  # when steps, validations or checkpoints cost more (or less) than expected
                if budget.past_deadline(margin=budget.save_estimate(max(budget.overheads["checkpoint"] or [0.0]))):
                    warnings.warn(  # a last resort: the fit keeps the run inside the budget
                        f"the time budget of {cfg.max_minutes} minutes ran out at iteration {it} of {cfg.iterations}",
                        stacklevel=3,
                    )
                    break
            if ddp.any(sigint[0] or (handle.stopping and it < cfg.iterations)):
                stopped = True
                break
            t_mark = time.monotonic()
        else:
            stopped = handle.stopping and it < cfg.iterations
    except KeyboardInterrupt:
        stopped = hard_stop = True
        warnings.warn(f"interrupted at iteration {it}: saving the model and a checkpoint to resume from", stacklevel=3)
    except BaseException as e:
        if not dirty:
            checkpoint(it)
        handle.error = e
        raise
    finally:
        model.eval()
        model.to(memory_format=torch.contiguous_format)  # the user's model: plain NCHW for exports and eager use
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    handle.interrupted = sigint[0] or (stopped and not handle.stopping)
    card.history_summary = handle.summary()
    card.config = cfg.to_dict()
    take_hashes(wait=True)  # the model's card names the files that trained it
    if dirty:  # interrupted inside an optimizer step: keep the last consistent checkpoint
        warnings.warn(f"interrupted inside a step: the checkpoint of iteration {last_good[0]} is kept", stacklevel=3)
    else:
        if not hard_stop:
            ddp.sync_buffers(model)  # every rank ends holding the saved model (BatchNorm statistics included)
        checkpoint(it)  # the trained bias: a resumed run continues from it (and fits the threshold again)
        if cfg.calibrate and not hard_stop:
            fit_threshold_at_end(model, it)
    if ddp.is_main:  # the only writer under torchrun
        model.to("cpu")
        try:
            save_model(model, out, card, overwrite=True)  # _launch applied the overwrite rule to out
        except OSError as e:
            raise OSError(
                f"could not save the model to {out} ({e.strerror or e}); the checkpoint {ckpt_file} holds "
                f"iteration {last_good[0]}: resume from it with resume=True once the folder is writable"
            ) from None
        model.to(device)
    if not hard_stop:
        ddp.barrier()  # a next run on any rank (a resume) finds rank 0's files
    handle.emit({"type": "end", "iteration": it, "path": str(out), "stopped": stopped, "checkpoint": str(ckpt_file)})
    return handle


def train_dirs(train_dir: Dirs, cfg: TrainConfig) -> list[str]:
    """The dataset folders of a run: ``train_dir`` (one or a list) and ``cfg.additional_train_dirs``, each once.

    Parameters
    ----------
    train_dir : path or sequence of paths
        The folder(s) given to train() / finetune().
    cfg : TrainConfig
        Its ``additional_train_dirs`` are added.

    Returns
    -------
    list of str

    Examples
    --------
    >>> train_dirs(["a", "b"], TrainConfig(additional_train_dirs=["b", "c"]))
    ['a', 'b', 'c']
    """
    first = [train_dir] if isinstance(train_dir, (str, os.PathLike)) else list(train_dir)
    out: list[str] = []
    for d in first + list(cfg.additional_train_dirs):
        if str(d) not in out:
            out.append(str(d))
    if not out:
        raise ValueError("no training folder given: pass train_dir (a folder or a list of folders)")
    return out


def _as_config(config: TrainConfig | PathLike | None) -> TrainConfig | None:
    if config is None or isinstance(config, TrainConfig):
        return config
    from .empanada_yaml import read_train_config

    return read_train_config(config)[0]  # this library's YAML or empanada's; unused empanada keys warn


def _launch(
    model: nn.Module,
    train_dir: Dirs,
    cfg: TrainConfig,
    out: PathLike,
    val_dir,
    callbacks,
    background: bool,
    resume,
    overwrite: bool,
    is_finetune: bool,
    data_norms: bool = False,
    lineage: dict | None = None,
    requested: dict | None = None,
) -> TrainingHandle:
    out = Path(out)
    if out.suffix not in (".pth", ".pt"):
        out = out.with_suffix(".pth")
    if resume is True:
        resume = checkpoint_path(out)
    _check_out(out, overwrite, resume)
    if resume:
        cfg = resume_config(load_checkpoint(resume), requested or {})
    handle = TrainingHandle(model, out)
    if env_rank() == 0:  # under torchrun only rank 0 reports, and logs the events for a notebook to follow
        for cb in callbacks or []:
            handle.add_callback(cb)
        if launched():
            handle.add_callback(EventsLog(events_path(out)))

    def target():
        try:
            run_training(
                handle,
                model,
                train_dir,
                cfg,
                val_dir=val_dir,
                resume=resume,
                is_finetune=is_finetune,
                data_norms=data_norms,
                lineage=lineage,
            )
        except BaseException as e:  # the handle re-raises it from wait()
            handle.error = e
            if not background:
                raise
        finally:
            handle._done.set()

    if background:
        handle.thread = threading.Thread(target=target, name="empanada_nb-training", daemon=True)
        handle.thread.start()
    else:
        target()
    return handle


def train(
    train_dir: Dirs,
    *,
    config: TrainConfig | PathLike | None = None,
    val_dir: PathLike | None = None,
    out: PathLike = "model.pth",
    callbacks: Sequence[Callback] | None = None,
    background: bool = False,
    resume: PathLike | bool | None = None,
    overwrite: bool = False,
    **overrides,
) -> TrainingHandle:
    """Train a new model on the dataset in ``train_dir``.

    The dataset layout is empanada's (``<name>/images/*.tif`` beside ``<name>/masks/*.tif``, see
    ``find_pairs``). empanada's guides are kept: a batch size below 16 warns that BatchNorm becomes
    unstable, and a patch size larger than the saved patches warns before training. The model is
    saved to ``out`` (with a ``.yaml`` card beside it) at every end:
    finished, stopped, interrupted or failed; checkpoints go to ``<out stem>.checkpoint.pth``.

    Parameters
    ----------
    train_dir : str or os.PathLike, or a sequence of them
        The training dataset folder, or several (``config.additional_train_dirs`` adds more, as
        empanada's ``additional_train_dirs``).
    config : TrainConfig or str or os.PathLike, optional
        All settings; default ``TrainConfig()``. A path is a YAML file in this library's layout or
        empanada's (``custom_training.yaml``; keys that do not map are named in a warning).
    val_dir : str or os.PathLike, optional
        A validation dataset (same layout); else ``config.val_fraction`` of the training pairs, or
        no validation.
    out : str or os.PathLike
        The model file to write.
    callbacks : sequence of callable, optional
        Each gets every event dict (see ``TrainingHandle``).
    background : bool
        Run in a background thread and return at once.
    resume : str or os.PathLike or bool, optional
        A checkpoint to continue from, or True for the one beside ``out``.
    overwrite : bool
        Replace an existing ``out``.
    **overrides
        ``TrainConfig`` fields (``iterations=500, patch_size=256, ...``) applied over ``config``;
        ``max_minutes=15`` trains for a wall-clock budget instead of ``iterations`` (the count and
        the learning-rate schedule are fitted to it after the first steps).

    Returns
    -------
    TrainingHandle
        The run (finished unless ``background=True``); ``handle.model`` is the trained model.

    Raises
    ------
    FileExistsError
        When ``out`` exists and neither ``overwrite`` nor ``resume`` is given.
    ValueError
        When a setting is invalid (e.g. ``patch_size`` not a multiple of the padding factor) or the
        dataset has problems.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> tmp = tempfile.TemporaryDirectory()
    >>> data = enb.make_synthetic_dataset(Path(tmp.name) / "data", n_images=2, size=64)
    >>> run = enb.train(
    ...     data, out=Path(tmp.name) / "mito.pth", encoder="resnet18",
    ...     iterations=2, patch_size=64, batch_size=2, min_bn_batch=2,
    ... )
    >>> run.iteration, (Path(tmp.name) / "mito.pth").is_file(), (Path(tmp.name) / "mito.yaml").is_file()
    (2, True, True)
    >>> labels = enb.segment_image(run.model, enb.synthetic_image(64)[0])
    >>> tmp.cleanup()
    """
    config = _as_config(config)
    cfg = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    check_patch_size(cfg.patch_size, cfg.architecture)
    if resume:
        rpath = checkpoint_path(out) if resume is True else Path(resume)
        st = load_checkpoint(rpath)
        c = ModelCard.from_dict(st["model"]["card"])
        model = build_model(
            c.architecture, c.encoder, num_classes=c.num_classes, pointrend=c.pointrend, **c.arch_kwargs
        )
        model.norms, model.card = dict(c.norms), c
        source = c.lineage.get("pretrained")
    else:
        model, source, cfg = _initial_model(cfg)
    return _launch(
        model,
        train_dir,
        cfg,
        out,
        val_dir,
        callbacks,
        background,
        resume,
        overwrite,
        False,
        data_norms=source is None,
        lineage={"pretrained": source},
        requested=explicit_settings(config, overrides),
    )


def _initial_model(cfg: TrainConfig) -> tuple[nn.Module, str | None, TrainConfig]:
    """The model train() starts from, the pretrained weights it got (None: random init) and the config.

    Follows empanada's training guide: CEM1.5M weights for ResNet-50 by default. Without weights
    (another encoder, offline, or pretrained=None) one warning says so, the norms come from the
    training images, and finetunable layers other than "all" become "all", as empanada-napari's
    ``_train.py`` does, because freezing a random encoder would train the heads on noise features.
    """
    auto = str(cfg.pretrained).strip().lower() == "auto"
    source = resolve_pretrained(cfg.pretrained, cfg.encoder)  # refuses CEM for other encoders before any download
    torch.manual_seed(cfg.seed)  # same seed, same initial weights
    model = build_model(cfg.architecture, cfg.encoder, num_classes=cfg.num_classes, pointrend=cfg.pointrend)
    why = None
    if source:
        try:
            model.norms = load_encoder_weights(model.encoder, source)
            return model, source, cfg
        except ConnectionError as e:
            if not auto:
                raise
            why = f"the CEM1.5M pretrained weights could not be fetched ({e})"
    elif auto:
        why = f"encoder {cfg.encoder} cannot take CEM pretrained weights (CEM publishes ResNet-50 weights only)"
    layers = ""
    if cfg.finetunable_layers != "all":
        layers = (
            f"; finetunable_layers={cfg.finetunable_layers!r} would freeze a random encoder, "
            "so all layers train (as empanada-napari does)"
        )
        cfg = cfg.replace(finetunable_layers="all")
    if why or layers:
        warnings.warn(
            f"{why or 'no pretrained weights (pretrained=None)'}: training starts from random init, "
            f"with norms computed from the training images{layers}",
            stacklevel=3,
        )
    return model, None, cfg


def finetune(
    model: nn.Module | PathLike,
    train_dir: Dirs,
    *,
    layers: str | None = None,
    config: TrainConfig | PathLike | None = None,
    val_dir: PathLike | None = None,
    out: PathLike = "finetuned.pth",
    callbacks: Sequence[Callback] | None = None,
    background: bool = False,
    resume: PathLike | bool | None = None,
    overwrite: bool = False,
    **overrides,
) -> TrainingHandle:
    """Finetune an existing model (an nn.Module, a saved model path or a registered name).

    Classes, thing list and norms come from the model's card; the architecture and encoder are the
    model's. Asking for other classes (``num_classes``, ``class_names`` or ``thing_list`` in
    ``overrides``, or changed from the defaults in ``config``) is an error that says to train a new
    model, as empanada's finetuning guide says. Same handle, files and events as ``train``.

    Parameters
    ----------
    model : torch.nn.Module or str or os.PathLike
        The model, or a path/URL/registered name for ``load_model``.
    train_dir : str or os.PathLike, or a sequence of them
        The training dataset folder, or several.
    layers : {"none", "stage1", "stage2", "stage3", "stage4", "all"}, optional
        Encoder stages that train; default ``"none"`` (or ``config.finetunable_layers`` when a
        config is given).
    config : TrainConfig or str or os.PathLike, optional
        Settings; default ``TrainConfig(iterations=100, finetunable_layers="none")``. A path is a
        YAML file (this library's layout or empanada's ``custom_finetuning.yaml``).
    val_dir : str or os.PathLike, optional
        A validation dataset.
    out : str or os.PathLike
        The model file to write.
    callbacks : sequence of callable, optional
        Each gets every event dict.
    background : bool
        Run in a background thread.
    resume : str or os.PathLike or bool, optional
        A checkpoint to continue from, or True for the one beside ``out``.
    overwrite : bool
        Replace an existing ``out``.
    **overrides
        ``TrainConfig`` fields applied over ``config`` (``max_minutes`` for a time budget).

    Returns
    -------
    TrainingHandle
        The run; ``handle.model`` is the finetuned model.

    Raises
    ------
    FileExistsError
        When ``out`` exists and neither ``overwrite`` nor ``resume`` is given.
    ValueError
        When a setting is invalid, the dataset has problems, or other classes are asked for.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> tmp = tempfile.TemporaryDirectory()
    >>> data = enb.make_synthetic_dataset(Path(tmp.name) / "data", n_images=2, size=64)
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> tuned = enb.finetune(
    ...     model, data, out=Path(tmp.name) / "tuned.pth", layers="stage4",
    ...     iterations=2, patch_size=64, batch_size=2, min_bn_batch=2,
    ... )
    >>> tuned.model.card.finetunable_layers
    'stage4'
    >>> tmp.cleanup()
    """
    parent = str(model) if not isinstance(model, nn.Module) else getattr(model, "source", None)
    if not isinstance(model, nn.Module):
        model = load_model(model)
    config = _as_config(config)
    cfg = config or TrainConfig(iterations=100, finetunable_layers="none")
    card = card_for(model)
    asked = {k: overrides[k] for k in CLASS_FIELDS if k in overrides}
    if config is not None:
        default = TrainConfig()
        for k in CLASS_FIELDS:  # a config's class fields count as asked when changed from the defaults
            if k not in asked and getattr(config, k) != getattr(default, k):
                asked[k] = getattr(config, k)
    check_finetune_classes(card, asked)
    changes = dict(overrides)
    changes.update(
        architecture=model.architecture,
        encoder=card.encoder,
        num_classes=model.num_classes,
        pointrend=card.pointrend,
        class_names=dict(card.class_names),
        thing_list=list(card.thing_list),
    )
    if layers is not None:
        changes["finetunable_layers"] = layers
    elif config is None:
        changes["finetunable_layers"] = "none"
    cfg = cfg.replace(**changes)
    check_patch_size(cfg.patch_size, model)
    lineage = {
        "finetuned_from": parent,
        "parent": {"name": parent or card.description or card.architecture, "weights_sha256": weights_sha256(model)},
        "parent_lineage": compact(card.lineage or {}),
    }
    requested = explicit_settings(config, overrides)
    if layers is not None:
        requested["finetunable_layers"] = layers
    return _launch(
        model,
        train_dir,
        cfg,
        out,
        val_dir,
        callbacks,
        background,
        resume,
        overwrite,
        True,
        lineage=lineage,
        requested=requested,
    )
