"""Learning curves of a training run: a PNG (matplotlib) and TensorBoard scalars, both optional.

:class:`RunReport` is called with the metric history after every epoch (``fit(..., on_epoch=report)``). It rewrites
``curves.png`` (loss; top-1 and top-5 accuracy per epoch) and logs the newest rows to ``tensorboard/``. A missing
matplotlib gives one warning and no PNG; a missing tensorboard gives one info line and no event files; training goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..io.output import atomic_write

Row = dict[str, float]

#: TensorBoard tag of each metric column.
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "top1/train",
    "val_acc": "top1/val",
    "val_top5": "top5/val",
    "lr": "lr",
    "images_per_s": "images_per_s",
}


def plot_curves(history: Sequence[Row], path: str | Path, title: str | None = None) -> Path:
    """Write loss (train, val) and accuracy (train top-1, val top-1, val top-5) per epoch as a PNG, atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        loss_ax.plot(epochs, [row[key] for row in history], marker="o", label=label)
    for key, label in (("train_acc", "train top-1"), ("val_acc", "val top-1"), ("val_top5", "val top-5")):
        acc_ax.plot(epochs, [100 * row[key] for row in history], marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100), overwrite=True)


class RunReport:
    """Per-epoch learning curves for ``output_dir``: ``curves.png`` and ``tensorboard/`` event files.

    ``info`` and ``warn`` receive the one-line notices about missing packages. Call :meth:`close` at the end.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        title: str | None = None,
        png: bool = True,
        tensorboard: bool = True,
        info: Callable[[str], None] = print,
        warn: Callable[[str], None] = print,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.title = title
        self.png = png and _available("matplotlib", warn, "no curves.png: matplotlib is not installed")
        self.tensorboard = tensorboard and _available(
            "tensorboard", info, "no TensorBoard logs: tensorboard is not installed"
        )
        self.writer: Any = None
        self.logged_epoch = 0

    def __call__(self, history: Sequence[Row]) -> None:
        if not history:
            return
        if self.tensorboard:
            self._log_scalars(history)
        if self.png:
            plot_curves(history, self.output_dir / "curves.png", self.title)

    def _log_scalars(self, history: Sequence[Row]) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            first_new = int(history[-1]["epoch"])
            # purge_step drops events a killed run logged after its last checkpoint, so a resumed run has no duplicates
            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=first_new)
            self.logged_epoch = first_new - 1
        for row in history:
            epoch = int(row["epoch"])
            if epoch <= self.logged_epoch:
                continue
            for key, tag in SCALARS.items():
                if row.get(key) is not None:
                    self.writer.add_scalar(tag, row[key], epoch)
            self.logged_epoch = epoch
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _available(module: str, notify: Callable[[str], None], message: str) -> bool:
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules (tests) raises ValueError
        found = False
    if not found:
        notify(message)
    return found
