"""The second-moment form of the reconstruction loss equals the loss through the op on every position."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixq.backends.torch import reconstruction_loss as rl
from mixq.backends.torch.adaround import layer_forward
from mixq.core.graph import OpKind
from mixq.core.rounding import LayerSpec

CASES = {
    "conv": (LayerSpec(OpKind.CONV, padding=(1,)), (6, 4, 3, 3), (8, 4, 9, 9)),
    "conv-strided-dilated": (LayerSpec(OpKind.CONV, stride=(2, 1), padding=(2,), dilation=(2,)), (5, 4, 3, 3),
                             (8, 4, 10, 9)),
    "grouped": (LayerSpec(OpKind.CONV, padding=(1,), groups=2), (6, 2, 3, 3), (8, 4, 7, 7)),
    "depthwise": (LayerSpec(OpKind.DEPTHWISE_CONV, stride=(2,), padding=(1,), groups=4), (4, 1, 3, 3), (8, 4, 9, 9)),
    "conv1d": (LayerSpec(OpKind.CONV, padding=(1,)), (6, 4, 3), (8, 4, 20)),
    "linear": (LayerSpec(OpKind.LINEAR), (6, 5), (40, 3, 5)),
    "matmul": (LayerSpec(OpKind.MATMUL), (5, 6), (40, 3, 5)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_second_moment_loss_equals_mse_over_all_positions(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    layer, weight_shape, input_shape = CASES[case]
    rng = np.random.default_rng(0)
    weight = rng.normal(size=weight_shape).astype(np.float32)
    inputs = rng.normal(size=input_shape).astype(np.float32)
    other = torch.as_tensor(weight + rng.normal(size=weight_shape).astype(np.float32) * 0.1)
    # Small chunks: the moment is accumulated over several chunks, as on large feature maps.
    monkeypatch.setattr(rl, "CHUNK_BYTES", 4 * int(np.prod(input_shape[1:])) * 9 * 3)
    loss = rl.objective(layer, weight, inputs, None, 4, np.random.default_rng(0), layer_forward)
    x = torch.as_tensor(inputs)
    expected = torch.nn.functional.mse_loss(layer_forward(layer, x, other), layer_forward(layer, x, torch.as_tensor(weight)))
    assert rl.second_moment(layer, inputs, weight_shape) is not None
    np.testing.assert_allclose(float(loss(other)), float(expected), rtol=1e-4)


def test_batches_through_the_op_when_the_patch_is_longer_than_a_batch() -> None:
    # A Linear with 64 inputs seen on 4-sample batches: d^2 per output beats 4 rows, so batches it is.
    layer = LayerSpec(OpKind.LINEAR)
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(3, 64)).astype(np.float32)
    inputs = rng.normal(size=(8, 64)).astype(np.float32)
    calls: list[int] = []

    def forward(spec: LayerSpec, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return layer_forward(spec, x, w)

    loss = rl.objective(layer, weight, inputs, None, 4, np.random.default_rng(0), forward)
    loss(torch.as_tensor(weight))
    assert calls == [8, 4]  # the float targets once, then one batch of 4


def test_second_moment_gradient_equals_autograd_through_the_op() -> None:
    layer, weight_shape, input_shape = CASES["grouped"]
    rng = np.random.default_rng(2)
    weight = rng.normal(size=weight_shape).astype(np.float32)
    inputs = rng.normal(size=input_shape).astype(np.float32)
    start = weight + rng.normal(size=weight_shape).astype(np.float32) * 0.1
    candidate = torch.tensor(start, requires_grad=True)
    rl.objective(layer, weight, inputs, None, 4, np.random.default_rng(0), layer_forward)(candidate).backward()
    through_op = torch.tensor(start, requires_grad=True)
    x = torch.as_tensor(inputs)
    torch.nn.functional.mse_loss(layer_forward(layer, x, through_op), layer_forward(layer, x, torch.as_tensor(weight))).backward()
    np.testing.assert_allclose(candidate.grad.numpy(), through_op.grad.numpy(), rtol=1e-3, atol=1e-7)
