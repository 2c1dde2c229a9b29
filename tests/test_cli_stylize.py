"""``vggnets stylize``: files written (and never overwritten without --force), JSON history, frames, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vggnets
from vggnets.cli import main
from vggnets.features.style import StyleTransfer

PHOTOS = Path(vggnets.__file__).parent / "assets" / "images"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not wait on a busy sibling core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A width-1/8 random vgg19, two small photos as content/style and a second style, a corrupt image."""
    folder = tmp_path_factory.mktemp("stylize_inputs")
    torch.manual_seed(19)
    torch.save(vggnets.vgg19(width=0.125).state_dict(), folder / "vgg19_small.pth")
    torch.manual_seed(11)
    torch.save(vggnets.vgg11(width=0.125).state_dict(), folder / "vgg11_small.pth")
    out = {"weights": folder / "vgg19_small.pth", "vgg11": folder / "vgg11_small.pth"}
    for key, name in (
        ("content", "chelsea_cat.png"),
        ("style", "rocket_launch.jpg"),
        ("style2", "coffee_cup.jpg"),
    ):
        with Image.open(PHOTOS / name) as im:
            im = im.convert("RGB")
            im.thumbnail((64, 64))
            im.save(folder / f"{key}.png")
        out[key] = folder / f"{key}.png"
    (folder / "broken.png").write_bytes((folder / "content.png").read_bytes()[:100])
    out["broken"] = folder / "broken.png"
    return out


def stylize(files, *args: str, styles: tuple[str, ...] = ("style",)) -> list[str]:
    images = [str(files["content"]), *(str(files[s]) for s in styles)]
    return ["stylize", *images, "--weights", str(files["weights"]), "-q", *args]


def test_writes_the_image_and_prints_the_history(files, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(
        [*stylize(files, "--size", "48", "--steps", "4", "--content-weight", "1e4", "-o", str(out), "--json")]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    with Image.open(out) as im:
        assert im.size == (48, 32) and im.mode == "RGB"
        pixels = torch.from_numpy(np.array(im)).float()
    with Image.open(files["content"]) as im:
        content = torch.from_numpy(np.array(im.resize((48, 32), Image.BILINEAR))).float()
    assert (pixels - content).abs().mean() > 3  # the output differs from the content
    doc = json.loads(captured.out)
    assert doc["output"] == str(out) and doc["size"] == [32, 48] and doc["precision"] == "fp32"
    assert [r["step"] for r in doc["history"]] == [1, 2, 3, 4]
    assert set(doc["history"][0]) == {"step", "total", "content", "style", "tv", "seconds"}
    assert doc["history"][0]["content"] == 0.0  # starts from the content
    assert doc["settings"]["style_layers"] == ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_frames_blend_and_options(files, tmp_path, capsys):
    out = tmp_path / "blend.jpg"
    code = main(
        [
            *stylize(files, styles=("style", "style2")),
            *(
                "--style-blend",
                "0.7,0.3",
                "--size",
                "40",
                "--steps",
                "4",
                "--save-every",
                "2",
                "--preserve-color",
            ),
            *("--optimizer", "adam", "--init", "noise", "--seed", "3", "--pool", "avg", "--tv-weight", "10"),
            *("-o", str(out)),
        ]
    )
    assert code == 0, capsys.readouterr().err
    frames = [tmp_path / "blend_0002.jpg", tmp_path / "blend_0004.jpg"]
    assert all(p.is_file() for p in frames) and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blend.jpg", "blend_0002.jpg", "blend_0004.jpg"]
    with Image.open(frames[0]) as a, Image.open(frames[1]) as b:
        assert a.size == b.size == (40, 27)
        assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_existing_output_is_kept_without_force(files, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    code = main([*stylize(files, "--size", "32", "--steps", "1", "-o", str(out))])
    err = capsys.readouterr().err
    assert code == 2 and "already exists; pass --force" in err and err.count("\n") == 1
    assert out.read_bytes() == b"precious"
    # an existing frame is refused before any work, too
    out.unlink()
    (tmp_path / "out_0001.png").write_bytes(b"frame")
    assert main([*stylize(files, "--size", "32", "--steps", "1", "--save-every", "1", "-o", str(out))]) == 2
    assert "out_0001.png already exists" in capsys.readouterr().err and not out.exists()
    out.write_bytes(b"precious")
    assert (
        main(
            [*stylize(files, "--size", "32", "--steps", "1", "--save-every", "1", "--force", "-o", str(out))]
        )
        == 0
    )
    with Image.open(out) as im, Image.open(tmp_path / "out_0001.png") as frame:
        assert im.size == frame.size == (32, 22)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be at least 1"),
        (["--size", "8"], "--size must be at least 16"),
        (["--style-weight", "-1"], "--style-weight must be a finite number >= 0"),
        (["--content-weight", "nan"], "--content-weight must be a finite number >= 0"),
        (["--lr", "0"], "--lr must be a finite number > 0"),
        (["--save-every", "0"], "--save-every must be at least 1"),
        (["--style-blend", "0.5,0.5"], "--style-blend has 2 weights for 1 style images"),
        (["--style-blend", "x"], "--style-blend must be comma-separated numbers"),
        (["--style-blend", "0"], "must not all be 0"),
        (["--style-layers", ","], "--style-layers needs at least one layer"),
        (["--style-layers", "conv6_1"], "unknown layer 'conv6_1'"),
        (["--style-layer-weights", "1,2"], "style_layer_weights has 2 values for 5 layers"),
        (["--content-layers", "relu4_9"], "Did you mean"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device"),
    ],
)
def test_bad_options_are_one_paragraph_errors(files, tmp_path, capsys, args, message):
    out = tmp_path / "out.png"
    assert main([*stylize(files, "--steps", "1", "--size", "32", "-o", str(out)), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("vggnets stylize: error:") and err.count("\n") == 1
    assert "Traceback" not in err and not out.exists()


def test_bad_files_are_one_paragraph_errors(files, tmp_path, capsys):
    out = tmp_path / "out.png"

    def fails(argv: list[str], message: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("vggnets stylize: error:") and "Traceback" not in err
        assert not out.exists()

    base = ["--steps", "1", "--size", "32", "-q"]
    missing = str(tmp_path / "missing.jpg")
    fails(
        ["stylize", missing, str(files["style"]), "--weights", str(files["weights"]), *base, "-o", str(out)],
        missing,
    )
    fails(
        [
            "stylize",
            str(files["content"]),
            str(files["broken"]),
            "--weights",
            str(files["weights"]),
            *base,
            "-o",
            str(out),
        ],
        "broken.png",
    )
    fails([*stylize(files, *base, "--weights", str(files["vgg11"])), "-o", str(out)], "vgg11_small.pth")
    fails([*stylize(files, *base, "--weights", str(tmp_path / "none.pth")), "-o", str(out)], "does not exist")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fails([*stylize(files, *base), "-o", str(blocker / "out.png")], "a-file is a file, not a folder")
    fails([*stylize(files, *base), "-o", str(tmp_path / "out.gif")], "--output must end in")
    (tmp_path / "folder.png").mkdir()
    fails([*stylize(files, *base), "-o", str(tmp_path / "folder.png")], "it is a directory")
    fails([*stylize(files, *base), "-o", str(tmp_path)], "--output must end in")


def test_unwritable_folder_is_refused_before_any_work(files, unwritable_folder, capsys, monkeypatch):
    monkeypatch.setattr(StyleTransfer, "run", lambda *a, **k: pytest.fail("the optimisation ran"))
    out = unwritable_folder / "out.png"
    assert main([*stylize(files, "--steps", "1", "--size", "32"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and "checked before any work" in err and err.count("\n") == 1


def test_missing_folder_is_created_and_the_png_says_what_made_it(files, tmp_path, capsys):
    out = tmp_path / "new" / "folder" / "out.png"
    assert (
        main([*stylize(files, "--steps", "2", "--size", "32", "--style-weight", "1e5"), "-o", str(out)]) == 0
    )
    with Image.open(out) as im:
        made = json.loads(im.text["vggnets"])
    assert made["command"] == "stylize" and made["options"]["style_weight"] == 1e5
    assert made["weights"] == str(files["weights"]) and made["losses"]["last"]["step"] == 2


def test_a_full_disk_at_the_end_is_one_line_and_leaves_nothing(files, tmp_path, capsys, monkeypatch):
    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    out = tmp_path / "out" / "out.png"
    assert main([*stylize(files, "--steps", "1", "--size", "32"), "-o", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"cannot write {out}: no space left on device" in last
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name == "out"]


def test_help_has_examples(capsys):
    assert main(["stylize", "--help"]) == 0
    text = capsys.readouterr().out
    assert "vggnets stylize photo.jpg starry_night.jpg -o photo_starry.png" in text
    for option in ("--style-blend", "--preserve-color", "--save-every", "--json", "--pool", "--precision"):
        assert option in text


def test_progress_bar_shows_the_losses(files, tmp_path, capsys, monkeypatch):
    import vggnets.cli.stylize as command

    monkeypatch.setattr(command, "show_progress", lambda args: True)
    out = tmp_path / "out.png"
    argv = [a for a in stylize(files, "--size", "32", "--steps", "2", "-o", str(out)) if a != "-q"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "stylize: 100%" in err and "2/2" in err
    assert "total=" in err and "content=" in err and "style=" in err and "tv=" in err
    assert f"wrote {out} (32x22, 2 steps, loss " in err
