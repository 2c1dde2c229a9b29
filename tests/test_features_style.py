"""Neural style transfer (vggnets.features.style): the losses are the tutorial's, and optimising them does what it should."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vggnets
from vggnets.features import style as S
from vggnets.features.losses import gram_matrix
from vggnets.io.images import read_image

PHOTOS = Path(vggnets.__file__).parent / "assets" / "images"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not wait on a busy sibling core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-1/8 vgg19 with seeded random weights."""
    path = tmp_path_factory.mktemp("style") / "vgg19_small.pth"
    torch.manual_seed(19)
    torch.save(vggnets.vgg19(width=0.125).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def transfer(weights_file: Path) -> S.StyleTransfer:
    return S.StyleTransfer(weights=weights_file)


def small(name: str, size: int = 48) -> torch.Tensor:
    """A bundled photo, float in [0, 1], its long side ``size`` pixels."""
    image = read_image(PHOTOS / name).float().div(255)
    h, w = image.shape[-2:]
    shape = (round(h * size / max(h, w)), round(w * size / max(h, w)))
    return F.interpolate(image[None], size=shape, mode="bilinear", antialias=True)[0].clamp(0, 1)


@pytest.fixture(scope="module")
def cat() -> torch.Tensor:
    return small("chelsea_cat.png")


@pytest.fixture(scope="module")
def rocket() -> torch.Tensor:
    return small("rocket_launch.jpg")


@pytest.fixture(scope="module")
def coffee() -> torch.Tensor:
    return small("coffee_cup.jpg")


def ycbcr(image: torch.Tensor) -> torch.Tensor:
    m = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    return torch.einsum("ij,jhw->ihw", m, image)


def test_first_loss_is_the_tutorial_recipe_computed_by_hand(weights_file, cat, rocket):
    """Step 1's losses equal a direct computation over model.features (no extractor, Gram written out)."""
    history = []
    S.stylize(
        cat,
        rocket,
        weights=weights_file,
        size=None,
        steps=1,
        tv_weight=0.5,
        callback=lambda r, _: history.append(r),
    )
    model = vggnets.vgg19(weights=weights_file).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    conv_index = {"conv1_1": 0, "conv2_1": 5, "conv3_1": 10, "conv4_1": 19, "conv4_2": 21, "conv5_1": 28}

    def maps(image):
        x, out = (image[None] - mean) / std, {}
        with torch.no_grad():
            for i, module in enumerate(model.features[:29]):
                x = module(x.clone())
                for name, j in conv_index.items():
                    if i == j:
                        out[name] = x.clone()
        return out

    def gram(f):
        flat = f.reshape(f.shape[1], -1)
        return flat @ flat.T / f.numel()

    input_maps, style_maps = maps(cat), maps(rocket)
    style = sum(
        F.mse_loss(gram(input_maps[n]), gram(style_maps[n]))
        for n in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    )
    tv = (cat[:, 1:] - cat[:, :-1]).pow(2).mean() + (cat[:, :, 1:] - cat[:, :, :-1]).pow(2).mean()
    assert history[0].content == 0.0  # initialised from the content
    assert history[0].style == pytest.approx(1e6 * style.item(), rel=1e-4)
    assert history[0].tv == pytest.approx(0.5 * tv.item(), rel=1e-5)
    assert history[0].total == pytest.approx(history[0].style + history[0].tv, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_both_optimisers_lower_the_style_loss_and_keep_the_content(transfer, cat, rocket, optimizer):
    steps = 25 if optimizer == "lbfgs" else 40
    # content weight 1e4 balances the two terms for this small random network (the defaults suit pretrained VGG19)
    result = transfer.run(cat, rocket, size=48, steps=steps, optimizer=optimizer, content_weight=1e4)
    first, last = result.history[0], result.history[-1]
    assert [r.step for r in result.history] == list(range(1, steps + 1))
    assert last.total < 0.1 * first.total
    assert last.style < 0.1 * first.style
    image = result.image
    assert image.shape == cat.shape and image.dtype == torch.float32 and image.device.type == "cpu"
    assert image.min() >= 0 and image.max() <= 1
    assert (image - cat).abs().mean() > 0.05  # the output is not the content

    def content_distance(x):  # unweighted conv4_2 error against the content image
        return F.mse_loss(
            transfer.features(x[None])["conv4_2"], transfer.features(cat[None])["conv4_2"]
        ).item()

    # the content term keeps the content: closer to the cat than the style image is, and than without the term
    style_only = transfer.run(cat, rocket, size=48, steps=steps, optimizer=optimizer, content_weight=0)
    assert content_distance(image) < 0.5 * content_distance(rocket)
    assert content_distance(image) < 0.5 * content_distance(style_only.image)


def test_noise_init_recovers_content_and_is_seeded(transfer, cat, rocket):
    run = lambda seed: transfer.run(cat, rocket, size=48, steps=15, init="noise", seed=seed)  # noqa: E731
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)
    assert a.history[0].content > 0
    assert a.history[-1].content < 0.5 * a.history[0].content
    assert a.history[-1].total < 0.2 * a.history[0].total


def test_styles_blend_by_weights(transfer, cat, rocket, coffee):
    only_rocket = transfer.run(cat, rocket, size=48, steps=6)
    weighted = transfer.run(cat, [rocket, coffee], size=48, steps=6, style_blend=[1, 0])
    assert torch.allclose(only_rocket.image, weighted.image, atol=1e-5)

    # the blended target is the weighted mean of the Gram matrices
    device_styles = [rocket, coffee]
    _, grams = transfer.targets(cat, device_styles, [0.25, 0.75])
    _, g_rocket = transfer.targets(cat, [rocket], [1.0])
    _, g_coffee = transfer.targets(cat, [coffee], [1.0])
    for name in transfer.style_layers:
        assert torch.allclose(
            grams[name], 0.25 * g_rocket[name] + 0.75 * g_coffee[name], rtol=1e-5, atol=1e-8
        )

    # and the result leans to the heavier style
    def distance(image, grams_of):
        maps = transfer.features(image[None])
        return sum(F.mse_loss(gram_matrix(maps[n]), grams_of[n]).item() for n in transfer.style_layers)

    mostly_rocket = transfer.run(
        cat, [rocket, coffee], size=48, steps=25, style_blend=[9, 1], init="noise", seed=0
    )
    mostly_coffee = transfer.run(
        cat, [rocket, coffee], size=48, steps=25, style_blend=[1, 9], init="noise", seed=0
    )
    assert distance(mostly_rocket.image, g_rocket) < distance(mostly_coffee.image, g_rocket)
    assert distance(mostly_coffee.image, g_coffee) < distance(mostly_rocket.image, g_coffee)


def test_preserve_color_keeps_the_content_chroma(transfer, cat, rocket):
    plain = transfer.run(cat, rocket, size=48, steps=10)
    kept = transfer.run(cat, rocket, size=48, steps=10, preserve_color=True)
    chroma = lambda image: ycbcr(image)[1:]  # noqa: E731
    assert (chroma(plain.image) - chroma(cat)).abs().mean() > 0.01  # the style did change the colours
    assert (chroma(kept.image) - chroma(cat)).abs().mean() < 0.2 * (
        chroma(plain.image) - chroma(cat)
    ).abs().mean()
    unclipped = ((kept.image > 0.001) & (kept.image < 0.999)).all(0)
    assert (chroma(kept.image) - chroma(cat))[:, unclipped].abs().max() < 1e-4
    # the luminance is the stylised result's
    assert (ycbcr(kept.image)[0] - ycbcr(plain.image)[0])[unclipped].abs().max() < 1e-4


def test_luminance_transfer_of_grey_on_colour():
    colour = 0.4 + 0.2 * torch.rand(3, 8, 8)  # mild colours: nothing is clipped
    grey = torch.full((3, 8, 8), 0.5)
    out = S.luminance_transfer(grey, colour)
    assert torch.allclose(ycbcr(out)[0], torch.full((8, 8), 0.5), atol=1e-5)
    assert torch.allclose(ycbcr(out)[1:], ycbcr(colour)[1:], atol=1e-5)
    with pytest.raises(ValueError, match="images of one shape"):
        S.luminance_transfer(grey, colour[:, :4])


def test_average_pooling_leaves_the_model_alone(weights_file, cat, rocket):
    model = vggnets.vgg19(weights=weights_file)
    avg = S.StyleTransfer(model, pool="avg")
    assert not any(isinstance(m, nn.MaxPool2d) for m in avg.extractor.model.features)
    assert sum(isinstance(m, nn.AvgPool2d) for m in avg.extractor.model.features) == 5
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5  # the caller's model is unchanged
    assert avg.extractor.model.features[0] is model.features[0]  # parameters shared, not copied
    a = avg.run(cat, rocket, size=48, steps=3)
    b = S.StyleTransfer(model, pool="max").run(cat, rocket, size=48, steps=3)
    assert a.history[0].style != b.history[0].style


def test_callback_sees_every_step_and_size_is_the_long_side(transfer, cat, rocket):
    big = read_image(PHOTOS / "chelsea_cat.png")  # 451 x 300 (W x H)
    seen = []
    result = transfer.run(
        big, rocket, size=40, steps=3, callback=lambda r, im: seen.append((r.step, im.shape))
    )
    assert result.image.shape == (3, 27, 40)
    assert seen == [(1, (3, 27, 40)), (2, (3, 27, 40)), (3, (3, 27, 40))]
    assert all(r.seconds > 0 for r in result.history)
    assert set(result.history[0].to_dict()) == {"step", "total", "content", "style", "tv", "seconds"}
    assert result.to_uint8().dtype == torch.uint8


def test_custom_layers_and_style_size(weights_file, cat, rocket):
    transfer = S.StyleTransfer(
        weights=weights_file,
        content_layers=["relu2_2"],
        style_layers=["relu1_1", "relu2_1"],
        style_layer_weights=[1, 2],
    )
    assert transfer.min_size == 2
    result = transfer.run(cat, rocket, size=48, style_size=64, steps=20)
    assert result.history[-1].style < result.history[0].style


def test_bf16_autocast_is_close_to_float32(weights_file, cat, rocket):
    assert S.StyleTransfer(weights=weights_file).precision == "fp32"  # auto is fp32 off CUDA
    fp32 = S.StyleTransfer(weights=weights_file, precision="fp32").run(cat, rocket, size=48, steps=1)
    bf16 = S.StyleTransfer(weights=weights_file, precision="bf16").run(cat, rocket, size=48, steps=1)
    assert bf16.history[0].style == pytest.approx(fp32.history[0].style, rel=0.1)


def test_argument_errors(transfer, weights_file, cat, rocket):
    with pytest.raises(ValueError, match="unknown layer 'conv4_9'.*Did you mean"):
        S.StyleTransfer(weights=weights_file, content_layers=["conv4_9"])
    with pytest.raises(ValueError, match="pool must be one of max, avg"):
        S.StyleTransfer(weights=weights_file, pool="min")
    with pytest.raises(ValueError, match="precision"):
        S.StyleTransfer(weights=weights_file, precision="fp8")
    with pytest.raises(ValueError, match="at least one style layer"):
        S.StyleTransfer(weights=weights_file, style_layers=[])
    bad = [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"optimizer": "sgd"}, "optimizer must be one of lbfgs, adam"),
        ({"init": "style"}, "init must be one of content, noise"),
        ({"size": 0}, "size must be a positive number"),
        ({"size": 12}, "need at least 16 pixels on the short side"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"style_weight": float("nan")}, "style_weight must be a finite number >= 0"),
        ({"content_weight": -1}, "content_weight must be a finite number >= 0"),
        ({"style_blend": [1, 2]}, "style_blend has 2 weights for 1 style images"),
        ({"style_blend": [0]}, "must not all be 0"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            transfer.run(cat, rocket, **{"size": 48, **kwargs})
    with pytest.raises(ValueError, match=r"RGB image shaped \(3, H, W\)"):
        transfer.run(cat[:1], rocket, size=48)
    with pytest.raises(ValueError, match="NaN"):
        transfer.run(cat, torch.full_like(rocket, float("nan")), size=48)
    with pytest.raises(ValueError, match="at least one style image"):
        transfer.run(cat, [], size=48)
    with pytest.raises(vggnets.ImageError):
        transfer.run(Path("/nonexistent/content.png"), rocket, size=48)
    with pytest.raises(vggnets.WeightsError):
        S.StyleTransfer(weights=Path("/nonexistent/weights.pth"))


def test_exposed_at_the_top_level():
    assert vggnets.stylize is S.stylize


def test_stylize_refuses_an_unknown_keyword_before_building_the_model(monkeypatch, cat, rocket):
    monkeypatch.setattr(S, "StyleTransfer", lambda *a, **k: pytest.fail("the model was built"))
    with pytest.raises(TypeError, match=r"stylize\(\) got an unexpected keyword argument 'stpes'"):
        S.stylize(cat, rocket, stpes=3)


def test_a_loss_that_stops_being_finite_stops_the_run(transfer, cat, rocket):
    seen = []
    with pytest.raises(vggnets.errors.VggnetsError, match="the loss became inf at step 1"):
        transfer.run(
            cat, rocket, size=None, steps=2, style_weight=1e308, callback=lambda r, _: seen.append(r)
        )
    assert seen == []  # no callback for a step whose loss is not finite
