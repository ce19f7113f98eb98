"""``make reproduce``'s pipeline: real ``ae-train`` + ``ae-evaluate`` processes, a results page,
and the README block it publishes (the README's table is never edited by hand)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aelightning.cli import reproduce
from aelightning.errors import DataError

README = f"""# project

intro
{reproduce.BEGIN}
old table
{reproduce.END}

## after
"""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick pipeline for one experiment (the default AE): train, evaluate, results.md."""
    out = tmp_path_factory.mktemp("reproduce") / "out"
    assert reproduce.main(["--quick", "--only", "seed_ae", "--out", str(out)]) == 0
    return out


def test_quick_run_trains_evaluates_and_writes_the_results_page(quick_run: Path) -> None:
    text = (quick_run / "results.md").read_text()
    assert "quick smoke run" in text and " cores, " in text  # the machine it ran on
    row = next(line for line in text.splitlines() if line.startswith("| MLP AE 784-256-64-20"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = next(line for line in text.splitlines() if line.startswith("| experiment"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    mse = float(cells[columns.index("test MSE")])
    assert 0 < mse < 0.2  # a real reconstruction of real digits, not a placeholder
    assert (quick_run / "runs" / "seed_ae" / "checkpoints" / "last.ckpt").is_file()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (quick_run / link).is_file(), link


def test_a_quick_run_is_never_published(quick_run: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    with pytest.raises(DataError, match="--quick run"):
        reproduce.publish(quick_run, readme, tmp_path / "docs")
    assert readme.read_text() == README


def test_publish_replaces_only_the_marked_block_and_copies_the_figures(
    quick_run: Path, tmp_path: Path
) -> None:
    # a full run's page differs from a quick one's only in the title
    full = tmp_path / "full"
    full.mkdir()
    (full / "eval").symlink_to(quick_run / "eval")
    quick = (quick_run / "results.md").read_text()
    (full / "results.md").write_text(quick.replace(" (quick smoke run", " (", 1))
    readme = tmp_path / "README.md"
    readme.write_text(README)

    copied = reproduce.publish(full, readme, tmp_path / "docs" / "figures" / "reproduce")
    page = readme.read_text()
    assert copied >= 1 and "old table" not in page
    assert page.startswith("# project\n\nintro\n") and page.endswith("\n## after\n")
    assert "| MLP AE 784-256-64-20" in page and "# Reproduced results" not in page
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert links and all(link.startswith("docs/figures/reproduce/") for link in links)
    assert all((tmp_path / link).stat().st_size > 0 for link in links)


def test_publish_needs_the_markers(quick_run: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "results.md").write_text("# Reproduced results\n\ntable\n")
    with pytest.raises(DataError, match="reproduce:begin"):
        reproduce.publish(full, readme, tmp_path / "docs")


def test_publish_before_any_run_says_what_to_do(tmp_path: Path, capsys) -> None:
    assert reproduce.main(["--publish-only", "--out", str(tmp_path / "none")]) == 1
    assert "run `make reproduce` first" in capsys.readouterr().err


@pytest.mark.slow
def test_the_whole_quick_pipeline(tmp_path: Path) -> None:
    """``make reproduce-quick``: every experiment, trained and evaluated (~4 min on 2 CPUs)."""
    out = tmp_path / "out"
    assert reproduce.main(["--quick", "--out", str(out)]) == 0
    text = (out / "results.md").read_text()
    for exp in reproduce.EXPERIMENTS:
        assert f"| {exp.title}" in text, exp.name


def test_seeds_multiply_recipes_not_comparison_variants() -> None:
    recipe = reproduce.Experiment("conv", "Conv", ("experiment=x",))
    variant = reproduce.Experiment("conv_b", "Conv b", ("experiment=x", "a=1"), every_seed=False)
    runs = reproduce.seeded([recipe, variant], [42, 1, 2])
    assert [r.name for r in runs] == ["conv", "conv-seed1", "conv-seed2", "conv_b"]
    assert runs[2].overrides == ("experiment=x", "seed=2")
    assert runs[3].overrides == ("experiment=x", "a=1", "seed=42")
    assert reproduce.seeded([recipe], []) == [recipe]
