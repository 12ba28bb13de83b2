"""Charts that stay readable at 100+ layers: columns of at most 40 named bars, grouped past 160 layers."""

import numpy as np
from PIL import Image

from edgekit.plots import LAYERS_PER_COLUMN, group_layers, layer_chart


def test_a_120_layer_chart_is_a_few_columns_not_a_strip(tmp_path):
    labels = [f"{i} block_{i // 3}_conv (CONV_2D)" for i in range(120)]
    values = [float((i * 37) % 101) for i in range(120)]
    path = layer_chart(labels, values, tmp_path / "layers.png", xlabel="k instructions", title="120 layers")
    width, height = Image.open(path).size
    assert width < 2000 and height < 1400, (width, height)  # 3 columns of 40 bars, each bar ~24 px tall
    assert height / LAYERS_PER_COLUMN > 15  # room for a legible 7-pt name per bar
    grey = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert grey.std() > 20


def test_past_160_layers_consecutive_layers_are_grouped_and_nothing_is_lost():
    labels = [f"{i} l{i} (ADD)" for i in range(400)]
    values = list(range(400))
    grouped, sums = group_layers(labels, values)
    assert len(grouped) <= 160
    assert sum(sums) == sum(values)
    assert grouped[0] == "0 l0 (ADD) .. 2 (3 layers)" and grouped[1] == "3 l3 (ADD) .. 5 (3 layers)"
    assert group_layers(labels[:100], values[:100]) == (labels[:100], values[:100])
