"""The shared backbones, the figure helpers and the authoring command."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import itertools

import matplotlib.pyplot as plt
import nbformat
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from metalearn_course import cli
from metalearn_course.data import EpisodeSampler
from metalearn_course.evaluate import Accuracy
from metalearn_course.nets import MLP, Conv4, conv_block
from metalearn_course.plots import CORRECT, PALETTE, STYLE, WRONG, plot_accuracies, show_episode


def test_conv4_embeds_omniglot_to_hidden_vector():
    net = Conv4(hidden=64)
    out = net(torch.rand(7, 1, 28, 28))
    assert out.shape == (7, 64)
    # 4 blocks of conv(3x3) + batch norm: the papers' parameter count for 1 input channel
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == (9 * 1 * 64 + 64 + 128) + 3 * (9 * 64 * 64 + 64 + 128)


def test_conv_block_pools_before_relu_and_is_the_papers_block():
    torch.manual_seed(0)
    block = conv_block(3, 8)
    assert isinstance(block[2], torch.nn.MaxPool2d) and isinstance(block[3], torch.nn.ReLU)
    papers = torch.nn.Sequential(block[0], block[1], block[3], block[2])  # conv, BN, ReLU, pool
    x = torch.randn(4, 3, 12, 12, requires_grad=True)
    ours, theirs = block(x), papers(x)
    assert torch.equal(ours, theirs)  # max and ReLU commute exactly
    g = torch.randn_like(ours)
    for a, b in zip(
        torch.autograd.grad(ours, (x, block[0].weight), g),
        torch.autograd.grad(theirs, (x, block[0].weight), g),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert len(conv_block(3, 8, pool=False)) == 3


def test_conv4_pooled_keeps_the_last_maps_spatial():
    net = Conv4(hidden=8, pooled=2)
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 8 * 7 * 7)
    assert Conv4(hidden=8, pooled=4)(torch.rand(3, 1, 28, 28)).shape == (3, 8)
    with pytest.raises(ValueError, match="pooled"):
        Conv4(pooled=5)


def test_conv4_rejects_flat_input_with_a_clear_message():
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        Conv4()(torch.rand(7, 784))
    with pytest.raises(ValueError, match="blocks=0"):
        Conv4(blocks=0)


def test_mlp_sizes_and_activations():
    net = MLP([1, 40, 40, 1])
    assert net(torch.rand(5, 1)).shape == (5, 1)
    assert sum(isinstance(m, torch.nn.ReLU) for m in net.modules()) == 2
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])


def test_show_episode_marks_wrong_predictions():
    images = torch.randint(0, 255, (6, 20, 28, 28), dtype=torch.uint8)
    episode = EpisodeSampler(images, way=3, shot=2, queries=4, seed=0).sample()
    predicted = episode.query_y.clone()
    predicted[0] = 1  # one wrong answer, in class 0's first query
    fig = show_episode(episode, predicted, queries_per_class=2)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * (2 + 2)
    first_query = fig.axes[2]
    assert first_query.get_xlabel() == "→ 1"
    assert fig.axes[3].get_xlabel() == ""
    # right and wrong differ in line style too, not only in colour
    wrong, right = first_query.spines["left"], fig.axes[3].spines["left"]
    assert to_rgb(wrong.get_edgecolor()) == to_rgb(WRONG)
    assert to_rgb(right.get_edgecolor()) == to_rgb(CORRECT)
    assert wrong.get_linestyle() not in ("-", "solid") and right.get_linestyle() in ("-", "solid")


# Colour-vision deficiency simulated as in Machado, Oliveira and Fernandes 2009 (severity 1),
# a linear map of linear-light sRGB; distances are CIE76 ΔE in CIELAB (about 2.3 is "just
# noticeable"; distinct categories are tens apart).
CVD = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                   [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                     [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                   [0.004733, 0.691367, 0.303900]],
}  # fmt: skip


def seen_as(colour: str, deficiency: str) -> torch.Tensor:
    """CIELAB (D65) of ``colour`` as seen with ``deficiency``."""
    c = torch.tensor(to_rgb(colour), dtype=torch.float64)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    linear = (torch.tensor(CVD[deficiency], dtype=torch.float64) @ linear).clamp(0, 1)
    to_xyz = torch.tensor(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]],
        dtype=torch.float64,
    )
    xyz = to_xyz @ linear / torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
    f = torch.where(xyz > (6 / 29) ** 3, xyz ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def distance(a: str, b: str, deficiency: str) -> float:
    return float(torch.linalg.vector_norm(seen_as(a, deficiency) - seen_as(b, deficiency)))


@pytest.mark.parametrize("deficiency", list(CVD))
def test_palette_stays_distinct_under_colour_blindness(deficiency):
    # The old green/red pair (#1a9850/#d73027) is 19.6 apart for a protanope, and matplotlib's
    # default orange and green 4.6 apart: both fail these bounds.
    assert distance(CORRECT, WRONG, deficiency) > 40
    closest = min(distance(a, b, deficiency) for a, b in itertools.combinations(PALETTE, 2))
    assert closest > 15, closest
    assert distance("#1a9850", "#d73027", "protanopia") < 40  # the check can fail
    assert distance("#ff7f0e", "#2ca02c", "protanopia") < 15


def test_course_style_makes_the_palette_the_colour_cycle():
    with plt.style.context(STYLE):
        fig, ax = plt.subplots()
        lines = [ax.plot([0, 1], [i, i])[0] for i in range(len(PALETTE))]
        assert [to_rgb(line.get_color()) for line in lines] == [to_rgb(c) for c in PALETTE]
        plt.close(fig)
    # and using it changed nothing outside the context
    assert to_rgb(plt.rcParams["axes.prop_cycle"].by_key()["color"][0]) != to_rgb(PALETTE[0])


def test_plot_accuracies_draws_one_bar_per_setting_and_method():
    acc = Accuracy(0.5, 0.01, 600)
    fig = plot_accuracies({"5-way": {"a": acc, "b": acc}, "20-way": {"a": acc}})
    assert len(fig.axes[0].patches) == 4  # 2 methods x 2 settings (a missing one drawn at 0)
    colours = [to_rgb(bar.get_facecolor()) for bar in fig.axes[0].patches]
    assert colours == [to_rgb(PALETTE[0])] * 2 + [to_rgb(PALETTE[1])] * 2  # with or without STYLE


def test_refresh_executes_a_notebook_in_place(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    cli.main(["refresh", str(path)])
    done = nbformat.read(path, as_version=4)
    assert done.cells[0].outputs[0].text == "42\n"
    assert done.cells[0].execution_count == 1
    assert "execution" not in done.cells[0].metadata  # no timestamps: clean diffs


def test_refresh_reports_missing_notebook(tmp_path):
    with pytest.raises(SystemExit, match="no such notebook"):
        cli.main(["refresh", str(tmp_path / "missing.ipynb")])
