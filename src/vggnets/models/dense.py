"""The fully-convolutional view of a VGG network, for the paper's dense evaluation (arXiv 1409.1556, section 3.2).

At test time the paper turns fc6 into a 7x7 convolution and fc7 and fc8 into 1x1 convolutions, and runs the whole,
uncropped image: the result is a map of class scores, one for every 7x7 window of the last feature map (stride 32
pixels in the image). :class:`FullyConvolutionalVGG` does this with the wrapped model's own parameters: the
convolution kernels are views of the ``nn.Linear`` weights taken at every forward call, so no copy is made, a later
weight update is seen, and ``.to(device)`` moves both at once.

The adaptive average pool of :class:`~vggnets.models.VGG` is *not* used: at 224x224 it is the identity, and on a larger
input it would resample the feature map to 7x7 instead of sliding fc6 over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from ..core.configs import POOL_SIZE

if TYPE_CHECKING:
    from ..core.vgg import VGG

__all__ = ["MIN_DENSE_SIZE", "STRIDE", "FullyConvolutionalVGG", "fully_convolutional", "score_map_size"]

#: Layers of the head that the dense view can stop at (the paper's names), in forward order.
HEAD_LAYERS = ("fc6", "relu6", "fc7", "relu7", "fc8")

#: Total stride of the feature extractor: five 2x2 max-pools.
STRIDE = 32
#: Smallest input side: fc6 (as a 7x7 convolution) needs a 7x7 feature map, i.e. 7 x 32 pixels.
MIN_DENSE_SIZE = POOL_SIZE * STRIDE


def score_map_size(height: int, width: int) -> tuple[int, int]:
    """Size of the class score map for an input of ``height`` x ``width`` pixels: ``floor(side / 32) - 6`` each."""
    return height // STRIDE - POOL_SIZE + 1, width // STRIDE - POOL_SIZE + 1


class FullyConvolutionalVGG(nn.Module):
    """fc6 as a 7x7 conv, fc7/fc8 as 1x1 convs, SHARING the wrapped model's parameters (views, no copy).

    The model is registered as the submodule ``model``: ``.to()``, ``.eval()``, ``.parameters()`` and ``state_dict()``
    are the model's own (the state_dict keys gain a ``model.`` prefix). ReLU follows fc6 and fc7; dropout follows each
    ReLU with the probability and the training flag of the model's own ``nn.Dropout`` modules, so it is the identity
    when the model is in eval mode (whether ``.eval()`` was called on the model or on this wrapper).
    """

    def __init__(self, model: VGG) -> None:
        super().__init__()
        classifier = getattr(model, "classifier", None)
        if (
            not hasattr(model, "features")
            or not isinstance(classifier, nn.Sequential)
            or len(classifier) != 7
            or not all(isinstance(classifier[i], nn.Linear) for i in (0, 3, 6))
            or not all(isinstance(classifier[i], nn.Dropout) for i in (2, 5))
        ):
            raise TypeError(
                "fully_convolutional needs a VGG model (features + classifier of Linear, ReLU, Dropout, Linear, ReLU, "
                f"Dropout, Linear), got {type(model).__name__}"
            )
        fc6 = classifier[0]
        if fc6.in_features % (POOL_SIZE * POOL_SIZE):
            raise ValueError(
                f"fc6 has {fc6.in_features} inputs, not a multiple of {POOL_SIZE}x{POOL_SIZE}: it cannot be viewed "
                "as a 7x7 convolution"
            )
        self.model = model

    @property
    def in_channels(self) -> int:
        """Channels of the last feature map (512 for the paper's networks, fewer for width-reduced ones)."""
        return self.model.classifier[0].in_features // (POOL_SIZE * POOL_SIZE)

    def conv_weights(self) -> list[tuple[Tensor, Tensor | None]]:
        """(weight, bias) of fc6, fc7, fc8 shaped as convolutions: (out, C, 7, 7), (out, in, 1, 1), (K, in, 1, 1).

        The weights are views of the Linear layers' weights (same storage), taken now.
        """
        fcs = [self.model.classifier[i] for i in (0, 3, 6)]
        shapes = [(self.in_channels, POOL_SIZE, POOL_SIZE), (-1, 1, 1), (-1, 1, 1)]
        # reshape() is a view for the (always contiguous) weights that nn.Linear creates; it copies only if a caller
        # replaced a weight by a non-contiguous tensor.
        return [(fc.weight.reshape(fc.out_features, *shape), fc.bias) for fc, shape in zip(fcs, shapes)]

    def forward(self, x: Tensor, *, until: str = "fc8") -> Tensor:
        """Class score map (logits) of shape (N, K, floor(H/32) - 6, floor(W/32) - 6) for normalised images (N, 3, H, W).

        H and W must be at least 224: fc6, viewed as a 7x7 convolution, needs a feature map of at least 7x7.
        ``until`` stops early and returns that layer's map instead: ``fc6``, ``relu6``, ``fc7``, ``relu7`` (the paper's
        Appendix B image descriptor, before spatial averaging) or ``fc8``.
        """
        if until not in HEAD_LAYERS:
            raise ValueError(f"until must be one of {', '.join(HEAD_LAYERS)}, got {until!r}")
        if x.dim() != 4:
            raise ValueError(
                f"FullyConvolutionalVGG expects a batch of images shaped (N, C, H, W), got {tuple(x.shape)}; add a "
                "batch dimension with x.unsqueeze(0)"
            )
        if x.shape[-2] < MIN_DENSE_SIZE or x.shape[-1] < MIN_DENSE_SIZE:
            raise ValueError(
                f"dense evaluation needs images of at least {MIN_DENSE_SIZE}x{MIN_DENSE_SIZE} pixels (fc6, as a "
                f"{POOL_SIZE}x{POOL_SIZE} convolution, needs a {POOL_SIZE}x{POOL_SIZE} feature map after five 2x2 "
                f"poolings), got {x.shape[-2]}x{x.shape[-1]}; resize the images so that the smaller side is >= "
                f"{MIN_DENSE_SIZE}"
            )
        classifier = self.model.classifier
        (w6, b6), (w7, b7), (w8, b8) = self.conv_weights()
        x = F.conv2d(self.model.features(x), w6, b6)
        if until == "fc6":
            return x
        x = F.relu(x, inplace=True)
        if until == "relu6":
            return x
        x = F.conv2d(F.dropout(x, classifier[2].p, classifier[2].training, inplace=False), w7, b7)
        if until == "fc7":
            return x
        x = F.relu(x, inplace=True)
        if until == "relu7":
            return x
        return F.conv2d(F.dropout(x, classifier[5].p, classifier[5].training, inplace=False), w8, b8)


def fully_convolutional(model: VGG) -> FullyConvolutionalVGG:
    """The fully-convolutional view of a VGG model (shares its parameters; see :class:`FullyConvolutionalVGG`)."""
    return FullyConvolutionalVGG(model)
