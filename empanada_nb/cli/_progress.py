"""A tqdm progress bar fed by training events (the same events the widgets plot)."""

from __future__ import annotations

from collections.abc import Callable


def progress_callback(total: int) -> Callable[[dict], None]:
    from tqdm.auto import tqdm

    bars = []  # created at the first event, so that argument errors print no empty bar

    def on_event(e: dict) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="it", desc="training", dynamic_ncols=True))
        bar = bars[0]
        if e["type"] in ("step", "budget"):
            bar.total = e["iterations"]  # a time budget fixes the count after the first steps
        if e["type"] == "step":
            bar.n = e["iteration"]
            bar.set_postfix(loss=f"{e['loss']:.3f}", lr=f"{e['lr']:.1e}", refresh=False)
            bar.refresh()
        elif e["type"] == "validation":
            bar.write(
                f"iteration {e['iteration']}: validation IoU {e.get('iou', float('nan')):.3f} "
                f"PQ {e.get('pq', float('nan')):.3f} F1 {e.get('f1', float('nan')):.3f}"
            )
        elif e["type"] == "calibration":
            bar.write(calibration_line(e))
        elif e["type"] == "end":
            bar.close()

    return on_event


def calibration_line(e: dict) -> str:
    """One line on the foreground threshold fitted at the end of a run (a ``calibration`` event)."""
    where = f"on {e['images']} {e['source']}"
    if e.get("applied"):
        return (
            f"foreground threshold {e['threshold']:.2f} {where} (IoU {e['iou_at_0.5']:.3f} at 0.5 -> "
            f"{e['iou']:.3f}), folded into the model"
        )
    return f"foreground threshold 0.5 kept {where} (IoU {e['iou_at_0.5']:.3f}; no threshold did better)"


def print_summary(handle) -> None:
    from ..training.distributed import env_rank

    if env_rank() != 0:  # under torchrun rank 0 speaks for the run
        return
    s = handle.summary()
    end = handle.events("end")[-1] if handle.events("end") else {}
    print(
        f"loss {s.get('loss_start', float('nan')):.3f} -> {s.get('loss_end', float('nan')):.3f} "
        f"over {s.get('iterations', 0)} iterations" + (" (stopped early)" if end.get("stopped") else "")
    )
    m = handle.final_metrics
    if m:
        print("validation: " + ", ".join(f"{k} {m[k]:.3f}" for k in ("iou", "pq", "sq", "rq", "f1") if k in m))
    print(f"model saved to {handle.out} (card: {handle.out.with_suffix('.yaml')})")
