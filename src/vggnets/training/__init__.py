"""Training and fine-tuning (``vggnets train``), single process or under torchrun: the public API of its modules.

recipes.py       Recipe, RECIPES: the paper's and torchvision's hyper-parameters and augmentation as data
optimisation.py  SGD with weight decay by parameter group, PlateauDecay and StepLR schedules
augmentation.py  training augmentation and validation preprocessing of a recipe, PCALighting
data.py          ImageFolder trees with unreadable images skipped, the train/val split, samplers, make_loaders
epochs.py        train_one_epoch and evaluate_epoch: AMP, gradient accumulation, progress bar
loop.py          fit: the epochs of a run, resume, last.pth / best.pth / metrics.csv
checkpoints.py   atomic save_checkpoint, safe load_checkpoint, state_dict comparison, RNG states
distributed.py   torchrun: process group, SyncBN / DDP / torch.compile wrapping and unwrap, summed metrics
surgery.py       init_from_a (the paper's init of deeper nets from net A), freeze, conv_names
curves.py        learning curves (PNG) and TensorBoard logs
"""

from ..core.transforms import IMAGENET_MEAN, IMAGENET_STD
from .augmentation import PCA_EIGVAL, PCA_EIGVEC, PCALighting, eval_transforms, train_transforms
from .checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state, state_dict_mismatch
from .data import SkipUnreadable, StridedSampler, collate_readable, image_folder, make_loaders
from .distributed import (
    Distributed,
    current_process,
    distributed_process,
    gather_over_processes,
    init_distributed,
    is_distributed,
    sum_over_processes,
    unwrap,
    wrap_model,
)
from .epochs import Amp, evaluate_epoch, train_one_epoch
from .loop import METRIC_FIELDS, fit, write_metrics
from .optimisation import (
    PlateauDecay,
    Scheduler,
    make_optimizer,
    make_scheduler,
    parameter_groups,
    step_scheduler,
)
from .recipes import PAPER_MEAN, PAPER_STD, RECIPES, Recipe, get_recipe
from .surgery import A_CONVS, FC_LAYERS, conv_names, freeze, init_from_a

__all__ = [
    "A_CONVS",
    "FC_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "METRIC_FIELDS",
    "PAPER_MEAN",
    "PAPER_STD",
    "PCA_EIGVAL",
    "PCA_EIGVEC",
    "RECIPES",
    "Amp",
    "Distributed",
    "PCALighting",
    "PlateauDecay",
    "Recipe",
    "Scheduler",
    "SkipUnreadable",
    "StridedSampler",
    "collate_readable",
    "conv_names",
    "current_process",
    "distributed_process",
    "eval_transforms",
    "evaluate_epoch",
    "fit",
    "freeze",
    "gather_over_processes",
    "get_recipe",
    "image_folder",
    "init_distributed",
    "init_from_a",
    "is_distributed",
    "load_checkpoint",
    "make_loaders",
    "make_optimizer",
    "make_scheduler",
    "parameter_groups",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "state_dict_mismatch",
    "step_scheduler",
    "sum_over_processes",
    "train_one_epoch",
    "train_transforms",
    "unwrap",
    "wrap_model",
    "write_metrics",
]
