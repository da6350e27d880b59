"""A wall-clock training budget: how many iterations fit, and a OneCycle schedule fitted to them.

``train(..., max_minutes=15)`` measures the step time on the first steps after a warm-up step (the
first step pays for allocations and lazy initialisation), then fixes the iteration count to what fits
the rest of the budget, keeping time for the validations, checkpoints and the final save that the run
will make. The LR schedule is refitted to that count, so the cycle ends when the budget does. Where
steps, a validation or a checkpoint turn out slower than expected, the count is refitted (fewer
iterations when 2 or more would not fit, or near the end; more only when they are worth 2 % of the
budget, so noise in the step time does not keep moving the schedule), and a hard stop keeps the run
inside the budget whatever happens.
"""

from __future__ import annotations

import time
import warnings

import torch

#: steps timed (after the warm-up step) before the iteration count is fixed
MEASURE_STEPS = 3
#: a refit that adds iterations happens when they are worth more than this fraction of the budget
#: (one that removes them always happens: the deadline comes first)
REFIT_TOLERANCE = 0.02
#: iterations the provisional schedule spans until the count is fixed (its warm-up barely moves in a few steps)
PROVISIONAL_ITERATIONS = 1000


def fit_one_cycle(sched: torch.optim.lr_scheduler.OneCycleLR, total_steps: int) -> None:
    """Make a running OneCycleLR span ``total_steps`` (its phases recomputed; the steps taken are kept).

    Parameters
    ----------
    sched : torch.optim.lr_scheduler.OneCycleLR
        The scheduler; its ``last_epoch`` stays.
    total_steps : int
        The new length of the cycle, at least the steps already taken.

    Returns
    -------
    None

    Examples
    --------
    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100)
    >>> fit_one_cycle(sched, 10)
    >>> for _ in range(9):
    ...     opt.step(); sched.step()
    >>> opt.param_groups[0]["lr"] == 0.1 / 25 / 1e4  # the 10th and last step runs at the final LR
    True
    """
    # the phases come from a scheduler built the same way on a throwaway optimizer, so their
    # definition stays torch's own (OneCycleLR has no public way to change its length)
    group = sched.optimizer.param_groups[0]
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=group["initial_lr"])
    ref = torch.optim.lr_scheduler.OneCycleLR(
        dummy,
        max_lr=group["max_lr"],
        total_steps=int(total_steps),
        pct_start=_pct_start(sched),
        anneal_strategy="cos",
        div_factor=group["max_lr"] / group["initial_lr"],
        final_div_factor=group["initial_lr"] / group["min_lr"],
        three_phase=len(sched._schedule_phases) == 3,
    )
    sched.total_steps, sched._schedule_phases = ref.total_steps, ref._schedule_phases
    # the LR of the next step under the refitted cycle
    if sched.last_epoch <= sched.total_steps:
        with warnings.catch_warnings():  # get_lr outside step() warns that it is not get_last_lr()
            warnings.simplefilter("ignore")
            lrs = sched.get_lr()
        for g, lr in zip(sched.optimizer.param_groups, lrs):
            g["lr"] = lr
        sched._last_lr = lrs


def _pct_start(sched) -> float:
    return (float(sched._schedule_phases[0]["end_step"]) + 1) / sched.total_steps


class TimeBudget:
    """Fits the iteration count of a run to a wall-clock budget.

    Parameters
    ----------
    minutes : float
        The budget, counted from ``started`` (a ``time.monotonic()`` value; default now).
    started : float, optional
        When the run started (loading data and building the model count against the budget).

    Examples
    --------
    >>> b = TimeBudget(1.0, started=0.0)
    >>> b.deadline
    60.0
    """

    def __init__(self, minutes: float, started: float | None = None):
        self.seconds = float(minutes) * 60
        self.started = time.monotonic() if started is None else float(started)
        self.deadline = self.started + self.seconds
        self.step_times: list[float] = []  # seconds per step, the warm-up step excluded
        self.overheads = {"validation": [], "checkpoint": []}  # seconds each
        self.fixed: int | None = None  # the fitted iteration count, once known
        self.first_s: float | None = None  # the warm-up step, the estimate until others are timed

    # ------------------------------------------------------------------ measurements
    def step(self, seconds: float, iteration: int, first: bool) -> None:
        """Record a step's duration (``first``: the run's first step, a warm-up not counted)."""
        if first:
            self.first_s = float(seconds)
        else:
            self.step_times.append(float(seconds))

    def overhead(self, kind: str, seconds: float) -> None:
        """Record a validation's or a checkpoint's duration."""
        self.overheads[kind].append(float(seconds))

    @property
    def step_s(self) -> float | None:
        """The step time: the median of the last ``MEASURE_STEPS * 3`` steps timed (None before any).

        Before a step other than the warm-up one is timed, the warm-up step's time (an overestimate).
        """
        if not self.step_times:
            return self.first_s
        recent = sorted(self.step_times[-MEASURE_STEPS * 3 :])
        return recent[len(recent) // 2]

    def ready(self) -> bool:
        """Enough steps are timed to fix the count (or the budget is nearly spent)."""
        return len(self.step_times) >= MEASURE_STEPS or self.remaining() < 0.2 * self.seconds

    def remaining(self, now: float | None = None) -> float:
        return self.deadline - (time.monotonic() if now is None else now)

    # ------------------------------------------------------------------ the fit
    def fit(
        self,
        done: int,
        val_every,
        checkpoint_every,
        val_s: float,
        checkpoint_s: float,
        now: float | None = None,
        end_s: float = 0.0,
    ) -> int:
        """The iteration count that ends the run (last validation and save included) at the deadline.

        ``val_every`` / ``checkpoint_every``: callables of the total count giving the interval (or
        None for no validation); ``val_s`` / ``checkpoint_s``: the expected cost of one; ``end_s``:
        work after the last step besides the saves (the threshold fit).
        """
        step = self.step_s or 1.0
        left = self.remaining(now)
        total = done + max(0, int(left / step))
        for _ in range(4):  # the intervals depend on the total (iterations // 5 by default)
            n_val = _events_after(done, total, val_every(total)) if val_every is not None else 0
            n_ckpt = _events_after(done, total, checkpoint_every(total), last=False)
            spare = left - n_val * val_s - n_ckpt * checkpoint_s - self.save_estimate(checkpoint_s) - end_s
            total = done + max(0, int(spare / step))
        return total  # == done: the budget is spent, the run ends at this iteration

    def save_estimate(self, checkpoint_s: float) -> float:
        """Time kept for the end: the final checkpoint and the model save (about two checkpoints)."""
        return 2.0 * checkpoint_s

    def past_deadline(self, now: float | None = None, margin: float = 0.0) -> bool:
        """True when another step (plus ``margin`` seconds) would overrun the budget."""
        return self.remaining(now) < (self.step_s or 0.0) + margin


def _events_after(done: int, total: int, every: int, last: bool = True) -> int:
    """How many iterations in (done, total] are multiples of ``every`` (plus the last one if asked)."""
    n = total // every - done // every
    if last and total % every:
        n += 1
    if not last and total % every == 0:
        n -= 1  # no periodic checkpoint at the last iteration (the final one is counted in the save)
    return max(0, n)


def estimate_validation_s(val_pixels: int, step_s: float, batch_pixels: int) -> float:
    """A first guess of one validation's cost before any ran: its pixels at the training step's rate.

    A training step (forward + backward over ``batch_pixels``) costs about three forwards, and
    postprocessing and padding cost about the same again, so one pixel of validation is priced like
    one pixel of training. Replaced by the measured time after the first validation.
    """
    return float(val_pixels) / max(1, batch_pixels) * step_s
