"""The layers' input moments of the torch backend (bias correction, the output range): the mean patch counts
the padding zeros as the op sees them, and a torch model's export carries the corrected biases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from torch import nn

from mixq.backends.torch import testing as models
from mixq.backends.torch.backend import TorchBackend
from mixq.backends.torch.moments import module_spec
from mixq.backends.torch.reconstruction_loss import first_moment, second_moment
from mixq.core.assignment import uniform
from mixq.core.graph import OpKind
from mixq.core.precision import Precision, QuantScheme
from mixq.core.rounding import LayerSpec
from mixq.export import export


def test_the_mean_patch_includes_the_padding_zeros_per_group() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4, 5, 5)) + 2.0).astype(np.float32)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False)
    spec, _ = module_spec(conv)
    assert spec is not None and spec.groups == 2 and spec.kind is OpKind.CONV
    mean = first_moment(spec, x, tuple(conv.weight.shape))
    assert mean is not None and mean.shape == (2, 2 * 9)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.stack([padded[:, :, i:i + 5, j:j + 5].mean(axis=(0, 2, 3)) for i in range(3) for j in range(3)],
                        axis=1)  # (channels, kernel positions)
    np.testing.assert_allclose(mean.reshape(4, 9), expected, rtol=1e-6)
    gram = second_moment(spec, x, tuple(conv.weight.shape))
    assert gram is not None and gram[0].shape == (2, 18, 18)
    # the output shift predicted from the mean is the measured mean output difference
    delta = rng.standard_normal(conv.weight.shape).astype(np.float32) * 0.1
    with torch.no_grad():
        diff = nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(delta), padding=1, groups=2)
    predicted = np.einsum("god,gd->go", delta.reshape(2, 2, 18).astype(np.float64), mean).reshape(-1)
    np.testing.assert_allclose(diff.double().mean(dim=(0, 2, 3)).numpy(), predicted, rtol=1e-4, atol=1e-6)


def test_ops_without_a_patch_view_are_left_out() -> None:
    assert module_spec(nn.Conv2d(2, 2, 3, padding="same"))[0] is None
    assert module_spec(nn.ConvTranspose2d(2, 2, 3))[0] is None
    assert module_spec(nn.Linear(3, 2))[0] == LayerSpec(OpKind.LINEAR)


def test_the_torch_simulation_corrects_biases_and_its_export_agrees(tmp_path: Path) -> None:
    module = models.DepthwiseNet().eval()
    data = models.random_images(32)
    w4a8 = Precision.parse("w4a8")
    scheme = QuantScheme(bias_correction=True)
    traced = TorchBackend().trace(module, data[:1], (w4a8,))
    sim = traced.prepare(data, scheme)
    plain = traced.prepare(data, QuantScheme())
    assignment = uniform(traced.graph, w4a8)
    assert not np.allclose(sim.run(data, assignment), plain.run(data, assignment))
    assert sim.quantizers.bias("head.fc.weight", w4a8) is not None  # a Linear without a bias gets one
    assert sim.quantizers.bias("conv1.weight", Precision.parse("fp16")) is None
    report = export(module, w4a8, data, tmp_path / "q.onnx", num_samples=32, scheme=scheme, check_samples=16)
    assert report.check["sqnr_vs_simulation_db"] > 35.0, report.check


def test_a_tuning_step_trains_against_the_bias_the_tuned_plan_gets() -> None:
    # learned_bias (what distillation and BRECQ use while learning, differentiable in the weight) is the
    # formula bias() applies to the tuned integers afterwards: for the calibrated weight they agree.
    module = models.DepthwiseNet().eval()
    data = models.random_images(32)
    w4a8 = Precision.parse("w4a8")
    traced = TorchBackend().trace(module, data[:1], (w4a8,))
    sim = traced.prepare(data, QuantScheme(bias_correction=True))
    checked = 0
    for key in ("conv1.weight", "head.fc.weight"):
        weight = sim.quantizers.weight(key, w4a8).clone().requires_grad_(True)
        learned = sim.quantizers.learned_bias(key, w4a8, weight)
        assert learned is not None and learned.requires_grad
        np.testing.assert_allclose(learned.detach().numpy(), sim.quantizers.bias(key, w4a8).numpy(), rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked == 2
    assert traced.prepare(data, QuantScheme()).quantizers.learned_bias("conv1.weight", w4a8, weight) is None
