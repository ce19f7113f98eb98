"""Every mistake a user can type is one sentence naming the key, exit status 1, no traceback.

Each case goes through the real path: Hydra composes ``conf/train.yaml`` with the override, and
``train`` runs under the CLI's error reporting, which must stop before any training step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aelightning.cli.reporting import run_reporting_errors
from aelightning.cli.train import train
from aelightning.data.idx import IDX_FILES, write_idx
from aelightning.data.mnist import load_mnist_sample

#: (id, overrides, text the one-line message must contain: the key as the user types it)
CASES = [
    ("latent_dim<1", ["net.latent_dim=0"], "net.latent_dim"),
    ("conv_latent_dim<1", ["net=conv", "net.latent_dim=-1"], "net.latent_dim"),
    ("noise_std<0", ["noise=gaussian", "noise.std=-0.5"], "noise.std"),
    ("noise_std_nan", ["noise=gaussian", "noise.std=nan"], "noise.std"),
    ("probability>1", ["noise=masking", "noise.p=1.5"], "noise.p"),
    ("probability<0", ["noise=salt_pepper", "noise.p=-0.1"], "noise.p"),
    ("zero_hidden_width", ["net.hidden_dims=[64,0]"], "net.hidden_dims"),
    ("empty_conv_channels", ["net=conv", "net.channels=[]"], "net.channels"),
    ("image_size_conv", ["net=conv", "net.channels=[16,32,64]"], "net.channels"),
    ("image_size_vgg", ["net=vgg16", "net.pad_input=false"], "net.pad_input"),
    ("unknown_activation", ["net.hidden_activation=relux"], "net.hidden_activation"),
    ("unknown_output_activation", ["net.output_activation=softmax"], "net.output_activation"),
    ("unknown_loss", ["model.recon_loss=l1"], "model.recon_loss"),
    (
        "unknown_optimizer",
        ["model.optimizer._target_=torch.optim.Adamm"],
        "model.optimizer._target_='torch.optim.Adamm'",
    ),
    ("batch_size<1", ["data.batch_size=0"], "data.batch_size"),
    (
        "mistyped_optimizer_argument",
        ["+model.optimizer.betaz=[0.9,0.99]"],
        "model.optimizer: Adam got an unexpected keyword argument 'betaz'",
    ),
    (
        "mistyped_aae_optimizer_argument",
        ["model=aae", "+model.d_optimizer.momentun=0.9"],
        "model.d_optimizer: ",
    ),
    ("lr=0", ["model.optimizer.lr=0"], "model.optimizer.lr"),
    ("lr<0", ["model.optimizer.lr=-0.001"], "model.optimizer.lr"),
    ("val_size_leaves_no_training", ["data.val_size=60000"], "data.val_size"),
    ("missing_data_dir", ["data.source=idx", "data.data_dir=/nonexistent/mnist"], "data.data_dir"),
    ("missing_ckpt_path", ["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path"),
    ("resume_without_checkpoint", ["resume=true"], "resume=true"),
    (
        "bad_mid_epoch_interval",
        ["callbacks.resume_checkpoint.every_n_train_steps=-1"],
        "callbacks.resume_checkpoint.every_n_train_steps",
    ),
    (
        "bad_guard_interval",
        ["callbacks.divergence_guard.check_every_n_steps=0"],
        "callbacks.divergence_guard.check_every_n_steps",
    ),
]

#: the image-folder data module has no data.source; its cases compose without the MNIST tiny set
ANIME_CASES = [
    (
        "fractions_leave_no_training",
        ["data.val_fraction=0.5", "data.test_fraction=0.5"],
        "data.val_fraction",
    ),
    ("fraction>=1", ["data.val_fraction=1.0"], "data.val_fraction"),
    ("missing_image_folder", ["data.root=/nonexistent/anime"], "data.root"),
]


def _assert_reported(cfg, capsys, expected: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_reporting_errors(lambda: train(cfg))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_mistake_is_one_sentence_naming_the_key(make_cfg, capsys, overrides, expected):
    _assert_reported(make_cfg(*overrides), capsys, expected)


@pytest.mark.parametrize(
    ("overrides", "expected"), [c[1:] for c in ANIME_CASES], ids=[c[0] for c in ANIME_CASES]
)
def test_image_folder_mistake_is_one_sentence_naming_the_key(
    make_cfg, capsys, tmp_path: Path, overrides, expected
):
    (tmp_path / "faces").mkdir()
    base = ["data=anime", f"data.root={tmp_path / 'faces'}", "trainer.accelerator=cpu"]
    _assert_reported(make_cfg(*base, *overrides, tiny=False), capsys, expected)


# ----------------------------------------------------------------------------- bad data files
def _write_mnist_raw(data_dir: Path, train_labels_cut: int = 0) -> Path:
    """The real bundled sample as the four MNIST IDX files under ``data_dir/MNIST/raw``."""
    images, labels = load_mnist_sample()
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_labels = labels[:4000] if not train_labels_cut else labels[: 4000 - train_labels_cut]
    for key, tensor in (
        ("train_images", images[:4000, 0]),
        ("train_labels", train_labels.to(torch.uint8)),
        ("test_images", images[4000:, 0]),
        ("test_labels", labels[4000:].to(torch.uint8)),
    ):
        write_idx(raw / IDX_FILES[key], tensor)
    return raw


def _damage_magic(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0:4] = b"\x1f\x00\x08\x03"
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_damage_magic, "train-images-idx3-ubyte"),
        (_truncate, "train-images-idx3-ubyte"),
        ("labels", "train-labels-idx1-ubyte"),
    ],
    ids=["wrong_magic", "header_counts_disagree_with_bytes", "labels_count_differs"],
)
def test_bad_idx_file_is_named(make_cfg, capsys, tmp_path: Path, damage, expected):
    data_dir = tmp_path / "mnist"
    raw = _write_mnist_raw(data_dir, train_labels_cut=3 if damage == "labels" else 0)
    if callable(damage):
        damage(raw / IDX_FILES["train_images"])
    cfg = make_cfg("data.source=idx", f"data.data_dir={data_dir}", "data.val_size=500")
    message = _assert_reported(cfg, capsys, expected)
    if damage == "labels":
        assert "4000 images" in message and "3997 labels" in message
