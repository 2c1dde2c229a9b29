"""``vggnets train``: train or fine-tune a VGG on an ImageFolder tree, on one device or under ``torchrun``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from .common import (
    add_quiet_option,
    add_runtime_options,
    add_subcommand,
    provenance,
    require_at_least,
    resolve_weights_option,
    show_progress,
)

#: What a run writes into its folder (tensorboard/ aside): the checkpoints, which only --resume continues, and the
#: files made from them again at every epoch.
CHECKPOINTS = ("last.pth", "best.pth")
RUN_FILES = ("metrics.csv", "curves.png", "classes.txt")

HELP = "train or fine-tune a model on an ImageFolder tree (paper or torchvision recipe, resumable, torchrun)"
DESCRIPTION = """\
Train a VGG on DATA, an ImageFolder tree with train/ and val/ subfolders (one folder of images per class),
or one such tree split at random with --val-split. Recipes (arXiv 1409.1556, 3.1, and torchvision's):

  paper        SGD 0.9, weight decay 5e-4 on weights only, lr 1e-2 divided by 10 when validation accuracy
               stops improving (at most 3 times), rescale to S=256 + random 224 crop, flip, PCA colour noise,
               mean subtraction only, 74 epochs, init N(0, 0.01)
  torchvision  SGD 0.9, weight decay 1e-4, lr 1e-2 (use --lr 0.1 for _bn) x0.1 every 30 epochs,
               RandomResizedCrop 224 + flip, ImageNet mean/std, 90 epochs

--set KEY=VALUE changes any recipe field (crop, scale=S or SMIN,SMAX, resize, hflip, pca_std, mean, std,
momentum, weight_decay, patience, max_drops, step_size, lr_factor, schedule, ...). Fine-tuning: --weights
gives the pretrained layers, a new head is made for the classes of DATA, and published weights bring their
own preprocessing (mean/std, crop, resize); --freeze features trains the classifier only.

OUTPUT (default runs/MODEL) receives, each epoch: last.pth (everything --resume needs), best.pth (the
state_dict of the best validation accuracy: vggnets.MODEL(weights=path) and torchvision load it),
metrics.csv, curves.png (with matplotlib), tensorboard/ (with tensorboard), and classes.txt; last.pth
records what produced it (vggnets version, options). OUTPUT is checked before any data is read: an OUTPUT
that already holds a run (last.pth or best.pth) is only continued with --resume, never overwritten, not
even with --force; --force lets a new run replace the other files of a run folder that holds no
checkpoint (metrics.csv, curves.png, classes.txt, e.g. left after its checkpoints were moved away).

Distributed: torchrun --nproc-per-node=K -m vggnets train ... runs K processes (DistributedDataParallel,
nccl on GPUs, gloo on CPUs); --batch-size is the global batch, split over the K processes; only rank 0
writes. Unreadable images are skipped with a warning naming each file once. Exit code 2: nothing was
trained because of a problem with the options, data or checkpoint (files already written are kept)."""
EPILOG = """\
examples:
  vggnets train data/flowers --model vgg16 --weights DEFAULT --freeze features --epochs 5 --lr 1e-3
  vggnets train data/digits --model vgg11_bn --width 0.125 --set crop=32 resize=32 scale=32,36 hflip=false
  vggnets train data/digits --output runs/digits --resume            continue a stopped run
  torchrun --nproc-per-node=4 -m vggnets train imagenet --model vgg16_bn --recipe torchvision --lr 0.1 --sync-bn"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "train", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("data", metavar="DATA", help="ImageFolder tree with train/ and val/ (or use --val-split)")
    _add_model_arguments(p)
    _add_training_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    p.add_argument("--output", default=None, metavar="DIR", help="run folder (default: runs/MODEL)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last.pth")
    p.add_argument(
        "--force",
        action="store_true",
        help="let a new run replace metrics.csv, curves.png and classes.txt in --output (never checkpoints)",
    )
    add_runtime_options(p, batch_size=256, workers=2, batch_help="global batch size, split over processes")
    add_quiet_option(p)
    p.set_defaults(run=run)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model and its initialisation: --model, --num-classes, --weights, --init-from, --freeze, --width, ..."""
    from ..core.configs import MODELS

    p.add_argument(
        "--model", default="vgg11", choices=list(MODELS), metavar="NAME", help="model name (default: vgg11)"
    )
    p.add_argument(
        "--num-classes", type=int, default=None, help="number of classes (default: the class folders of DATA)"
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="W",
        help="start from weights: DEFAULT, a member such as IMAGENET1K_V1, or a state_dict path "
        "(default: none, random initialisation)",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT",
        help="copy the first four convolutions and the FC layers of a trained net A (paper 3.1)",
    )
    p.add_argument("--freeze", choices=["features"], default=None, help="do not train these layers")
    p.add_argument("--width", type=float, default=None, help="channel multiplier (default 1; 0.125 = 1/8)")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout of fc6 and fc7 (default 0.5)")
    p.add_argument(
        "--init",
        default=None,
        choices=["torchvision", "paper", "glorot", "pytorch"],
        help="initialisation of new layers (default: the recipe's)",
    )


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The recipe and how it runs: --recipe, --set, --epochs, --lr, --accumulate, --val-split, --amp, ..."""
    from ..training import RECIPES

    p.add_argument(
        "--recipe", default="paper", choices=list(RECIPES), help="training recipe (default: paper)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="change recipe fields, e.g. crop=32 scale=32,36 hflip=false pca_std=0",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs in total (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None, help="initial learning rate (default: the recipe's)")
    p.add_argument(
        "--accumulate", type=int, default=1, help="batches per optimiser step (gradient accumulation)"
    )
    p.add_argument(
        "--val-split",
        type=float,
        default=None,
        metavar="F",
        help="validate on this seeded random fraction of DATA (or DATA/train)",
    )
    p.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="mixed precision (default: fp32)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--sync-bn", action="store_true", help="synchronise BatchNorm over torchrun processes (GPU)"
    )


def run(args: argparse.Namespace) -> int:
    """Check everything that can be checked before the first write, then fit."""
    from ..errors import VggnetsError
    from ..models.weights import WeightsEnum
    from ..training import distributed_process
    from .common import check_runtime_options

    _check_options(args)
    device = check_runtime_options(args)
    recipe = _recipe(args)
    output = Path(args.output or f"runs/{args.model}").expanduser()
    previous = _check_output(output, args.resume, args.force)

    weights = resolve_weights_option(args.model, args.weights) if args.weights else None
    if isinstance(weights, WeightsEnum):
        recipe = _weights_preprocessing(recipe, weights, args.overrides)
    if args.sync_bn and not args.model.endswith("_bn"):
        raise VggnetsError(
            f"--sync-bn synchronises BatchNorm layers, and {args.model} has none; leave it out."
        )

    with distributed_process(device) as (dist, device):
        if args.sync_bn and dist.world_size > 1 and device.type != "cuda":
            raise VggnetsError(
                "--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on the CPU); leave it out."
            )
        loaders = _loaders(args, recipe, dist)
        classes = loaders[0].classes
        num_classes = args.num_classes or len(classes)
        if num_classes != len(classes):
            raise VggnetsError(
                f"--num-classes {args.num_classes} disagrees with the {len(classes)} class folders of "
                f"{args.data} ({_preview(classes)}); leave --num-classes out or fix the folders."
            )
        if len(classes) == 1 and dist.is_main:
            _warn(
                f"{args.data} has a single class ({classes[0]}): every prediction is right whatever the model "
                "learns, so the loss goes to 0 and the accuracy to 1.0 without meaning anything. Add a folder of "
                "images for each other class."
            )
        if previous is not None:
            _check_resumable(previous, output, args.model, classes)
        model = _model(args, weights, num_classes, recipe.init, device, dist)
        _fit(args, model, loaders, recipe, output, dist, resume=previous is not None)
    return 0


def _loaders(args: argparse.Namespace, recipe, dist) -> tuple:
    """This process's train and validation loaders."""
    from ..errors import VggnetsError
    from ..training import make_loaders

    try:
        return make_loaders(
            args.data,
            recipe,
            batch_size=args.batch_size,
            workers=args.workers,
            val_split=args.val_split,
            seed=args.seed,
            rank=dist.rank,
            world_size=dist.world_size,
        )
    except ValueError as exc:  # the batch does not split over the processes
        raise VggnetsError(f"{exc}; pick a --batch-size that is a multiple of the process count.") from exc


def _model(args: argparse.Namespace, weights, num_classes: int, init: str, device, dist):
    """The model as the options describe it, on its device, wrapped for the process group and torch.compile."""
    import torch

    from ..models.builders import build
    from ..training import freeze, init_from_a, wrap_model

    torch.manual_seed(args.seed)  # the same initial weights on every process
    model = build(
        args.model,
        weights=weights,
        num_classes=num_classes,
        dropout=args.dropout,
        init_weights=args.init or init,
        width=args.width,
        progress=show_progress(args),
    )
    if args.init_from:
        init_from_a(model, args.init_from)
    freeze(model, args.freeze)
    model = wrap_model(model, device, dist, sync_bn=args.sync_bn, compile=args.compile)
    torch.manual_seed(args.seed + dist.rank)  # independent augmentation on each process
    return model


def _fit(
    args: argparse.Namespace, model, loaders: tuple, recipe, output: Path, dist, *, resume: bool
) -> None:
    """Train, with learning curves and classes.txt from rank 0, and name the best epoch at the end."""
    from ..training import fit, unwrap
    from ..training.curves import RunReport

    classes = loaders[0].classes
    report = None
    if dist.is_main:
        report = RunReport(output, title=f"{args.model} on {Path(args.data).name}", info=_note, warn=_warn)
        if not resume:
            _note(f"training {args.model} on {len(classes)} classes; writing to {output}")
    history = fit(
        model,
        *loaders,
        recipe,
        epochs=args.epochs,
        output_dir=output,
        resume=resume,
        lr=args.lr,
        accumulate=args.accumulate,
        amp=args.amp,
        channels_last=args.channels_last,
        log=print if dist.is_main else None,
        progress=show_progress(args),
        extra=_extra(args, classes, unwrap(model)),
        on_epoch=_on_epoch(output, classes, report),
    )
    if report is not None:
        report.close()
    if dist.is_main and history:
        best = max(history, key=lambda row: row["val_acc"])
        _note(
            f"best val top-1 {best['val_acc']:.4f} (top-5 {best['val_top5']:.4f}) at epoch {best['epoch']}; "
            f"weights in {output / 'best.pth'}"
        )


def _note(message: str) -> None:
    print(f"vggnets train: {message}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    print(f"vggnets train: warning: {message}", file=sys.stderr, flush=True)


def _preview(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _check_options(args: argparse.Namespace) -> None:
    from ..errors import VggnetsError

    require_at_least(args.epochs, 1, "--epochs")
    require_at_least(args.accumulate, 1, "--accumulate")
    require_at_least(args.num_classes, 1, "--num-classes")
    if args.val_split is not None and not 0 < args.val_split < 1:
        raise VggnetsError(
            f"--val-split must be a fraction between 0 and 1, such as 0.1, got {args.val_split}."
        )
    if args.width is not None and not args.width > 0:
        raise VggnetsError(f"--width must be positive, such as 0.125 or 1, got {args.width}.")
    if not 0 <= args.dropout <= 1:
        raise VggnetsError(f"--dropout must be between 0 and 1, got {args.dropout}.")
    if args.lr is not None and not args.lr > 0:
        raise VggnetsError(f"--lr must be positive, got {args.lr}.")
    if args.weights and args.init_from:
        raise VggnetsError("--weights and --init-from both initialise the model; pass one of them.")


def _recipe(args: argparse.Namespace):
    """The named recipe with the --set overrides (parsed by the type of each field's current value)."""
    from ..errors import VggnetsError
    from ..training import Recipe, get_recipe

    recipe = get_recipe(args.recipe)
    fields = [f.name for f in dataclasses.fields(Recipe) if f.name != "name"]
    changes: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise VggnetsError(f"--set takes KEY=VALUE with KEY one of {', '.join(fields)}; got {item!r}.")
        current = getattr(recipe, key)
        try:
            changes[key] = _parse_like(current, text.strip(), key)
        except ValueError as exc:
            raise VggnetsError(f"--set {item}: {exc}.") from None
    return dataclasses.replace(recipe, **changes)


def _parse_like(current: Any, text: str, key: str) -> Any:
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError("expected true or false")
        return text.lower() in ("true", "1", "yes")
    if isinstance(current, int | float):
        value = type(current)(text)
        if value < 0:
            raise ValueError("expected a value of at least 0")
        return value
    if isinstance(current, tuple):
        values = tuple(type(current[0])(v) for v in text.split(","))
        if key == "scale" and len(values) == 1:
            values = values * 2
        if len(values) != len(current):
            raise ValueError(f"expected {len(current)} comma-separated values")
        return values
    allowed = {"schedule": ("plateau", "step"), "init": ("torchvision", "paper", "glorot", "pytorch")}[key]
    if text not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}")
    return text


def _weights_preprocessing(recipe, weights, overrides: list[str]):
    """Published weights bring their preprocessing: mean/std, crop and resize (unless --set says otherwise)."""
    t = weights.transforms()
    given = {item.partition("=")[0].strip().replace("-", "_") for item in overrides}
    preset = {
        "mean": tuple(t.mean),
        "std": tuple(t.std),
        "crop": t.crop_size[0],
        "resize": t.resize_size[0],
    }
    return dataclasses.replace(recipe, **{k: v for k, v in preset.items() if k not in given})


def _check_output(output: Path, resume: bool, force: bool) -> dict | None:
    """Before any data is read: refuse to overwrite a run, check that the folder takes the run's files; with
    --resume, the run's last.pth (None: start a new run)."""
    from ..errors import VggnetsError
    from ..io.output import check_output
    from ..training import load_checkpoint

    if output.exists() and not output.is_dir():
        raise VggnetsError(f"--output {output} is a file; give the folder of the run.")
    checkpoints = [name for name in CHECKPOINTS if (output / name).exists()]
    others = [name for name in RUN_FILES if (output / name).exists()]
    continuing = resume and (output / "last.pth").exists()
    if checkpoints and not continuing:
        hint = "pass --resume to continue it" if not resume else "there is no last.pth to resume from"
        raise VggnetsError(
            f"{output} already holds a training run ({', '.join(checkpoints + others)}); {hint}, or choose another "
            "--output (--force never replaces checkpoints). Nothing was overwritten."
        )
    if others and not (continuing or force):
        raise VggnetsError(
            f"{output} already holds {', '.join(others)} from an earlier run but no checkpoint; pass --force to "
            "replace them with a new run's, or choose another --output. Nothing was overwritten."
        )
    files = [output / name for name in CHECKPOINTS + RUN_FILES]  # the folder must take them
    check_output(files[0], overwrite=True, sidecars=files[1:], option="--output")
    if not continuing:
        if resume:
            _note(f"--resume: no run in {output} yet; starting a new one")
        return None
    return load_checkpoint(output / "last.pth")


def _check_resumable(state: dict, output: Path, model: str, classes: list[str]) -> None:
    from ..errors import ArchitectureMismatchError, DatasetError

    extra = state.get("extra") or {}
    if extra.get("model", model) != model:
        raise ArchitectureMismatchError(
            f"{output / 'last.pth'} is a run of {extra['model']}, not {model}; resume it with --model "
            f"{extra['model']}, or choose another --output for a new run. Nothing was overwritten."
        )
    if extra.get("classes", classes) != classes:
        raise DatasetError(
            f"{output / 'last.pth'} was trained on other classes ({_preview(extra['classes'])}) than the folders "
            f"of this DATA ({_preview(classes)}); resume with the same data. Nothing was overwritten."
        )


def _extra(args: argparse.Namespace, classes: list[str], model) -> dict[str, Any]:
    """What last.pth records about the run beside its state: the model, its classes, what produced it."""
    return {
        "produced_by": provenance(args),
        "model": args.model,
        "width": model.features[0].out_channels / 64,
        "num_classes": len(classes),
        "classes": list(classes),
        "recipe": args.recipe,
        "args": {
            k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | list | None)
        },
    }


def _on_epoch(output: Path, classes: list[str], report):
    from ..io.output import write_text

    def on_epoch(history: list[dict]) -> None:
        if len(history) == 1 or not (output / "classes.txt").exists():
            write_text(output / "classes.txt", "".join(f"{c}\n" for c in classes), overwrite=True)
        if report is not None:
            report(history)

    return on_epoch
