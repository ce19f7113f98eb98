"""The config tree printed at the start of a run: groups chosen, changed values highlighted."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from aelightning.cli.config_tree import print_config_tree


def _tree(make_cfg, *overrides: str) -> tuple[str, str]:
    cfg = make_cfg(*overrides)
    path = cfg.paths.output_dir + "/config_tree.txt"
    screen = Console(file=io.StringIO(), width=120, force_terminal=True)
    print_config_tree(cfg, path=path, console=screen)
    return screen.file.getvalue(), open(path).read()  # type: ignore[attr-defined]


def test_tree_names_the_groups_and_marks_what_the_command_line_changed(make_cfg):
    screen, text = _tree(
        make_cfg, "net=conv", "net.latent_dim=8", "noise=gaussian", "noise.std=0.1"
    )
    lines = text.splitlines()
    assert any("net (conv)" in line for line in lines)
    assert any("noise (gaussian)" in line for line in lines)
    assert any("model (ae)" in line for line in lines)
    assert any(line.endswith("latent_dim: 8 (default: 20)") for line in lines)
    assert any(line.endswith("std: 0.1 (default: 0.5)") for line in lines)
    # values the chosen options give themselves are not marked
    assert any(line.endswith("channels: [32, 64]") for line in lines)
    assert any(line.endswith("hidden_activation: relu") for line in lines)
    assert not any(line[4:].startswith("hydra") for line in lines)  # no hydra branch
    assert "\x1b[1;33m" in screen  # highlighted (bold yellow) on a terminal
    assert "\x1b[" not in text  # the file is plain text


def test_values_an_experiment_sets_are_marked_against_its_groups(make_cfg):
    _, text = _tree(make_cfg, "experiment=mnist_vae")
    lines = text.splitlines()
    assert any("model (vae)" in line for line in lines)
    assert any(line.endswith("latent_dim: 10 (default: 20)") for line in lines)
    assert any(line.endswith("batch_size: 32 (default: 128)") for line in lines)
    assert any(line.endswith("recon_loss: mse (default: bce)") for line in lines)
    # the VAE's own setting (model=vae needs an unconstrained code) is the group's, not marked
    assert any(line.endswith("bottleneck_activation: none") for line in lines)


@pytest.mark.parametrize("shown", [True, False])
def test_print_config_false_keeps_the_file_and_prints_nothing(make_cfg, capsys, shown):
    from aelightning.cli.train import train

    cfg = make_cfg(f"print_config={shown}", "test=false", "trainer.max_steps=1", "logger=none")
    train(cfg)
    assert ("task_name: train" in capsys.readouterr().out) is shown
    assert "net (mlp)" in Path(cfg.paths.output_dir, "config_tree.txt").read_text()
