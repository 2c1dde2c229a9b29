"""The engine's graph: batch norm folding is exact, uint8 input with in-graph normalisation equals the float pipeline,
the uint8 crop matches the weights' preset, and the input settings follow the weights unless given."""

from __future__ import annotations

import torch
from test_inference_engine import MEAN, SIZE, STD, photos, reference, tiny, tiny_bn

import vggnets
from vggnets.inference.calibration import sample_images_dir
from vggnets.inference.graph import (
    CropUint8,
    NormalizedInput,
    fold_batchnorm,
    input_spec,
    num_classes,
    prepare,
)


def test_fold_batchnorm_is_exact_and_leaves_the_model_alone():
    model = tiny_bn()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)
    # indices are kept (BN -> Identity), so feature-layer names still line up
    assert len(folded.features) == len(model.features)


def test_uint8_input_with_in_graph_normalisation_equals_the_float_pipeline():
    wrapped = NormalizedInput(tiny(), MEAN, STD).eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(photos()), reference(tiny(), photos()), atol=1e-5, rtol=1e-5)


def test_prepare_folds_casts_and_goes_channels_last():
    wrapped = prepare(tiny_bn(), MEAN, STD, torch.bfloat16, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in wrapped.modules())
    conv = wrapped.model.features[0]
    assert conv.weight.dtype == torch.bfloat16
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = wrapped(photos())
    assert out.dtype == torch.float32 and out.shape == (len(photos()), num_classes(tiny_bn()))


def test_uint8_crop_matches_the_weights_preset_within_one_grey_level():
    from vggnets.core.transforms import ImageClassification
    from vggnets.io.images import read_image

    image = read_image(sample_images_dir() / "chelsea_cat.png")
    crop = CropUint8(256, 224)(image)
    assert crop.dtype == torch.uint8 and crop.shape == (3, 224, 224)
    preset = ImageClassification(crop_size=224, resize_size=256)(image)
    ours = (crop.float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert (ours - preset).abs().max().item() <= 1.01 / 255 / min(STD)


def test_input_spec_takes_what_is_given_then_the_weights_then_imagenet():
    assert input_spec() == input_spec(None, image_size=224, resize_size=256, mean=MEAN, std=STD)
    assert input_spec(image_size=64).resize_size == round(64 * 256 / 224)
    weights = vggnets.VGG16_Weights.IMAGENET1K_FEATURES  # Caffe statistics: not ImageNet's
    preset = weights.transforms()
    spec = input_spec(weights, image_size=32)
    assert spec.image_size == 32 and spec.resize_size == preset.resize_size[0]
    assert spec.mean == tuple(preset.mean) != MEAN and spec.std == tuple(preset.std)
    assert input_spec(weights, mean=(0.5,) * 3).mean == (0.5,) * 3
    assert input_spec("a state_dict file without a preset").mean == MEAN
