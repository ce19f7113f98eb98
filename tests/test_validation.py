"""Every mistake a user can type is one sentence naming the key, exit status 1, no traceback.

Each case goes through the real path: Hydra composes ``conf/train.yaml`` with the override, and
``train`` runs under the CLI's error reporting, which must stop before any training step.
"""

from __future__ import annotations

import zipfile
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
        "model.optimizer.betaz is not an argument of torch.optim.Adam (did you mean "
        "model.optimizer.betas?)",
    ),
    (
        "mistyped_aae_optimizer_argument",
        ["model=aae", "+model.d_optimizer.momentun=0.9"],
        "model.d_optimizer.momentun is not an argument",
    ),
    # keys a target does not take (checked against its signature before anything is built)
    (
        "scheduler_key_left_over",
        ["+model.scheduler.warmup_fraction=0.05"],
        "'~model.scheduler.warmup_fraction'",
    ),
    ("net_key_mistyped", ["+net.hidden_dimz=[32]"], "did you mean net.hidden_dims?"),
    ("noise_key_mistyped", ["noise=gaussian", "+noise.stdd=0.1"], "noise.stdd"),
    (
        "callback_key_mistyped",
        ["+callbacks.model_checkpoint.every_n_epoch=1"],
        "callbacks.model_checkpoint.every_n_epoch",
    ),
    ("trainer_key_mistyped", ["+trainer.max_epoch=3"], "did you mean trainer.max_epochs?"),
    # values of the wrong type for a typed argument
    ("max_epochs_not_a_number", ["trainer.max_epochs=abc"], "trainer.max_epochs='abc'"),
    ("gradient_clip_not_a_number", ["trainer.gradient_clip_val=high"], "int or float or null"),
    ("precision_unknown", ["trainer.precision=bf17"], "trainer.precision='bf17'"),
    ("batch_size_not_a_number", ["data.batch_size=abc"], "data.batch_size='abc'"),
    ("latent_dim_fractional", ["net.latent_dim=2.5"], "net.latent_dim=2.5"),
    ("lr=0", ["model.optimizer.lr=0"], "model.optimizer.lr"),
    ("lr<0", ["model.optimizer.lr=-0.001"], "model.optimizer.lr"),
    ("val_size_leaves_no_training", ["data.val_size=60000"], "data.val_size"),
    ("missing_data_dir", ["data.source=idx", "data.data_dir=/nonexistent/mnist"], "data.data_dir"),
    ("missing_ckpt_path", ["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path"),
    ("resume_without_checkpoint", ["resume=true"], "resume=true"),
    ("resume_unknown_value", ["resume=maybe"], "resume='maybe' must be true, false or auto"),
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
    (
        # the experiment's warm-up fraction is left over for a schedule that does not take it
        "experiment_key_left_over_by_another_schedule",
        ["experiment=anime_vgg13_64", "model/scheduler=none"],
        "model.scheduler.warmup_fraction is not an argument of "
        "aelightning.models.schedulers.no_schedule",
    ),
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


# ------------------------------------------------------------------------ unreadable ckpt_path
def _zip_without_torch_data(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda p: p.write_text("hello, I am notes\n"), "not in torch's file format"),
        (lambda p: p.write_bytes(b""), "not a readable torch checkpoint"),
        (lambda p: p.write_bytes(bytes(range(256)) * 4), "not in torch's file format"),
        (_zip_without_torch_data, "a zip archive without torch's saved data"),
        (lambda p: torch.save(torch.zeros(3), p), "holds a Tensor, not a Lightning checkpoint"),
        (lambda p: torch.save({"weights": torch.zeros(3)}, p), "not a Lightning checkpoint"),
        (lambda p: p.mkdir(), "does not exist"),
    ],
    ids=["text_file", "empty_file", "random_bytes", "zip_archive", "tensor", "plain_dict", "dir"],
)
def test_unreadable_ckpt_path_is_one_sentence(make_cfg, capsys, tmp_path: Path, write, expected):
    path = tmp_path / "given.ckpt"
    write(path)
    message = _assert_reported(make_cfg(f"ckpt_path={path}"), capsys, expected)
    assert str(path) in message
