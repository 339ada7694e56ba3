"""Fake-quant simulation of any assignment on a captured torch model.

Weights are quantized per (weight, bit-width) once and cached; activation ranges come from one
calibration pass and are set per (tensor, bit-width) on first use, then cached. The user's model
is never changed: quantized ops run with swapped-in tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.func import functional_call

from mixq.backends.base import require_finite
from mixq.backends.torch.executor import GraphExecutor, Override, flatten_output
from mixq.backends.torch.moments import TorchMoments
from mixq.backends.torch.trace import OpSite
from mixq.core.assignment import Assignment
from mixq.core.bias_correction import corrected_bias
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision, QuantScheme
from mixq.core.quantize import MAX_SAMPLE, ActivationRanges, CalibrationStats, WeightQuantizer, dynamic_params
from mixq.core.ranges import ActivationStats, QuantParams
from mixq.core.tuned import TunedQuantizers

logger = logging.getLogger(__name__)


class Quantizers:
    """The core's weight quantizer and activation ranges (``mixq.core.quantize``) as torch tensors: weights
    are quantized in numpy once per (weight, precision) and cached as tensors; activations are
    fake-quantized per call on the core's parameters. ``rounder`` is the weight quantizer's (AdaRound's
    integers in place of nearest rounding's, see :mod:`mixq.backends.torch.rounding`)."""

    def __init__(self, weights: Mapping[str, np.ndarray], axes: Mapping[str, int],
                 stats: Mapping[str, ActivationStats], scheme: QuantScheme,
                 rounder: Callable[[str, int, QuantParams], np.ndarray | None] | None = None,
                 moments: TorchMoments | None = None) -> None:
        self.scheme = scheme
        self._core = WeightQuantizer(weights, axes, scheme, rounder, moments=moments)
        self._moments = moments
        self._biases: dict[tuple[str, Precision], torch.Tensor | None] = {}
        self._ranges = ActivationRanges(stats, scheme)
        self._weights: dict[tuple[str, Precision], torch.Tensor] = {}
        self._acts: dict[tuple[str, int], tuple[float, int, int, int]] = {}

    @property
    def float_weights(self) -> Mapping[str, np.ndarray]:
        """The float weights by key (BN folded), as calibration read them."""
        return self._core.weights

    def weight_axis(self, key: str) -> int:
        return self._core.axes[key]

    def weight_params(self, key: str, bits: int) -> QuantParams:
        """Per-channel (along the weight's axis) or per-tensor parameters of a weight."""
        return self._core.params(key, bits)

    def weight_integers(self, key: str, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer weights (int32, the weight's layout) and scale and zero-point broadcastable to them."""
        return self._core.integers(key, bits)

    def act_params(self, tensor: str, bits: int) -> QuantParams:
        return self._ranges.params(tensor, bits)

    def tune(self, tuned: TunedQuantizers) -> None:
        """Learned quantizers from now on; the tensors cached from the calibrated ones are dropped."""
        self._core.tune(tuned.weights)
        self._ranges.tune(tuned.activations)
        self._weights.clear()
        self._acts.clear()
        self._biases.clear()

    def weight(self, key: str, precision: Precision) -> torch.Tensor:
        cached = self._weights.get((key, precision))
        if cached is None:
            cached = torch.from_numpy(np.ascontiguousarray(self._core.weight(key, precision)))
            self._weights[(key, precision)] = cached
        return cached

    def bias(self, key: str, precision: Precision) -> torch.Tensor | None:
        """The bias-corrected bias of a module's weight at ``precision`` (``mixq.core.bias_correction``), or
        None when it keeps its own (no bias correction, a float precision, a layer without input moments)."""
        if (key, precision) not in self._biases:
            shift = self._core.bias_shift(key, precision)
            self._biases[(key, precision)] = None if shift is None or self._moments is None else torch.from_numpy(
                corrected_bias(self._moments.biases.get(key), shift))
        return self._biases[(key, precision)]

    def learned_bias(self, key: str, precision: Precision, weight: torch.Tensor) -> torch.Tensor | None:
        """The bias correction of a weight being learned (distillation, BRECQ), differentiable in ``weight``:
        ``b + (W - weight) E[x]``, the formula :meth:`bias` applies to the learned integers afterwards, so a
        tuning step trains against the bias the tuned plan will have. None as for :meth:`bias`."""
        mean = self._moments.mean(key) if self._moments is not None else None
        if not self.scheme.bias_correction or precision.is_float or mean is None or self._moments is None:
            return None
        axis = self._core.axes[key]
        delta = torch.movedim(torch.from_numpy(np.asarray(self._core.weights[key], np.float32)) - weight, axis, 0)
        mu = torch.from_numpy(np.asarray(mean, np.float32))
        out = delta.shape[0]
        shift = torch.einsum("god,gd->go", delta.reshape(mu.shape[0], out // mu.shape[0], -1), mu).reshape(-1)
        own = self._moments.biases.get(key)
        return shift if own is None else torch.from_numpy(np.asarray(own, np.float32)).reshape(-1) + shift

    def activation(self, tensor: str, x: torch.Tensor, bits: int, is_float: bool) -> torch.Tensor:
        if is_float:
            return x.to(torch.float16).to(x.dtype) if bits == 16 else x
        if self.scheme.act_dynamic:
            return torch.fake_quantize_per_tensor_affine(x, *dynamic_params(float(x.min()), float(x.max()), bits))
        params = self._acts.get((tensor, bits))
        if params is None:
            p = self._ranges.params(tensor, bits)
            params = (float(p.scale), int(p.zero_point), p.qmin, p.qmax)
            self._acts[(tensor, bits)] = params
        return torch.fake_quantize_per_tensor_affine(x, *params)


class SiteQuantizers(Protocol):
    """What an op override asks of its quantizers: the simulation's :class:`Quantizers`, or learnable ones
    (``mixq.backends.torch.finetune``) run through the same overrides."""

    def weight(self, key: str, precision: Precision) -> torch.Tensor: ...

    def activation(self, tensor: str, x: torch.Tensor, bits: int, is_float: bool) -> torch.Tensor: ...

    def bias(self, key: str, precision: Precision) -> torch.Tensor | None:
        """The module's bias at ``precision`` if it differs from its own (bias correction), else None."""
        ...


def site_override(executor: GraphExecutor, site: OpSite, precision: Precision, quant: SiteQuantizers) -> Override:
    """One quantized op at ``precision`` on ``quant``'s tensors: how every simulation runs an op (the
    calibrated quantizers, distillation's learnable ones, BRECQ's soft-rounded block)."""
    op = site.op

    def run(node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        new_args = list(args)
        for position in site.act_args:
            new_args[position] = quant.activation(op.inputs[position], args[position], precision.act_bits,
                                                  precision.is_float)
        if site.weight_key is None:  # activation x activation matmul: operand B takes the weight bits
            new_args[1] = quant.activation(op.inputs[1], args[1], precision.weight_bits, precision.is_float)
            return executor.call(node, tuple(new_args), kwargs)
        weight = quant.weight(site.weight_key, precision)
        if site.weight_arg is None:
            module = executor.modules[str(node.target)]
            bias = quant.bias(site.weight_key, precision)
            swapped = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
            return functional_call(module, swapped, tuple(new_args), kwargs)
        new_args[site.weight_arg] = weight
        return executor.call(node, tuple(new_args), kwargs)

    return run


class TorchSimulation:
    """Implements the ``Simulation`` protocol for a captured torch model."""

    def __init__(self, executor: GraphExecutor, graph: QuantGraph, sites: list[OpSite],
                 quantizers: Quantizers, bytes_per_sample: int) -> None:
        self.executor = executor
        self.graph = graph
        self.quantizers = quantizers
        self._sites = {site.op.name: site for site in sites}
        self._group_sites = {g.id: [self._sites[op.name] for op in g.ops] for g in graph}
        self._affected = {
            g.id: executor.descendants(site.node for site in self._group_sites[g.id]) for g in graph
        }
        self._bytes_per_sample = bytes_per_sample

    def cache_bytes_per_sample(self) -> int:
        return self._bytes_per_sample

    # -- overrides ---------------------------------------------------------------------------
    def _override(self, site: OpSite, precision: Precision, quantizers: SiteQuantizers | None = None) -> Override:
        return site_override(self.executor, site, precision, quantizers if quantizers is not None else self.quantizers)

    def _overrides(self, precisions: dict[GroupId, Precision],
                   quantizers: SiteQuantizers | None = None) -> dict[str, Override]:
        out: dict[str, Override] = {}
        for group, precision in precisions.items():
            if precision.keeps_float32:
                continue
            for site in self._group_sites[group]:
                out[site.node] = self._override(site, precision, quantizers)
        return out

    def overrides(self, assignment: Assignment, quantizers: SiteQuantizers | None = None) -> dict[str, Override]:
        """The executor's op overrides computing ``assignment`` with ``quantizers`` (default: the simulation's)."""
        return self._overrides(dict(assignment.items()), quantizers)

    def group_sites(self, group: GroupId) -> list[OpSite]:
        return list(self._group_sites[group])

    def tune(self, tuned: TunedQuantizers) -> None:
        """Learned quantizers for every later run (``QuantizedModule``s already made included)."""
        self.quantizers.tune(tuned)

    # -- Simulation protocol -----------------------------------------------------------------
    @torch.inference_mode()
    def run(self, inputs: np.ndarray, assignment: Assignment | None = None) -> np.ndarray:
        overrides = self._overrides(dict(assignment.items())) if assignment is not None else {}
        output, _ = self.executor.run(torch.from_numpy(np.ascontiguousarray(inputs)), overrides)
        return require_finite(flatten_output(output).numpy())

    @torch.inference_mode()
    def isolate(self, inputs: np.ndarray) -> IsolatedTorchRuns:
        output, cache = self.executor.run(torch.from_numpy(np.ascontiguousarray(inputs)), keep=True)
        reference = require_finite(flatten_output(output).numpy())
        return IsolatedTorchRuns(self, cache, reference)

    def module(self, assignment: Assignment) -> nn.Module:
        """A module computing the quantized model (for the user's own evaluation loops)."""
        return QuantizedModule(self, assignment)

    @torch.inference_mode()
    def probe(self, inputs: np.ndarray, assignment: Assignment | None = None) -> dict[GroupId, np.ndarray]:
        """Every group's op outputs under ``assignment``, as ``(batch, features)`` per group."""
        owner = {site.node: group for group, sites in self._group_sites.items() for site in sites}
        parts: dict[GroupId, list[torch.Tensor]] = {}

        def observe(name: str, value: torch.Tensor) -> None:
            parts.setdefault(owner[name], []).append(value.reshape(value.shape[0], -1).float())

        overrides = self._overrides(dict(assignment.items())) if assignment is not None else {}
        self.executor.run(torch.from_numpy(np.ascontiguousarray(inputs)), overrides, observe=(owner, observe))
        return {group: torch.cat(values, dim=1).numpy() for group, values in parts.items()}


class IsolatedTorchRuns:
    """Phase 1 for one batch: the float run is cached; a group's run recomputes only its descendants."""

    def __init__(self, sim: TorchSimulation, cache: dict[fx.Node, Any], reference: np.ndarray) -> None:
        self._sim = sim
        self._cache = cache
        self.reference = reference

    @torch.inference_mode()
    def run(self, group: GroupId, precision: Precision) -> np.ndarray:
        sim = self._sim
        if precision.keeps_float32:
            return self.reference
        nodes = sim._affected[group]
        if not any(node.op == "output" for node in nodes):
            return self.reference  # the group does not reach the output (dead branch)
        output, _ = sim.executor.run(torch.empty(0), sim._overrides({group: precision}), nodes=nodes,
                                     base=self._cache)
        return flatten_output(output).numpy()


    @torch.inference_mode()
    def local(self, group: GroupId, precision: Precision) -> np.ndarray:
        """The group's own outputs with only it quantized, on the cached float inputs."""
        sim = self._sim
        sites = sim._group_sites[group]
        nodes = [sim.executor.by_name[site.node] for site in sites]
        _, env = sim.executor.run(torch.empty(0), sim._overrides({group: precision}), nodes=nodes, base=self._cache,
                                  keep=True)
        return torch.cat([env[node].reshape(env[node].shape[0], -1).float() for node in nodes], dim=1).numpy()

    def float_outputs(self, group: GroupId) -> np.ndarray:
        """The group's float outputs, from the cache."""
        sim = self._sim
        nodes = [sim.executor.by_name[site.node] for site in sim._group_sites[group]]
        return torch.cat([self._cache[node].reshape(self._cache[node].shape[0], -1).float() for node in nodes],
                         dim=1).numpy()


class QuantizedModule(nn.Module):
    """``forward`` runs the captured graph with the assignment's fake quantizers."""

    def __init__(self, sim: TorchSimulation, assignment: Assignment) -> None:
        super().__init__()
        self._sim = sim
        self._overrides = sim._overrides(dict(assignment.items()))
        self.assignment = assignment

    def forward(self, x: torch.Tensor) -> Any:
        output, _ = self._sim.executor.run(x, self._overrides)
        return output


def collect_stats(executor: GraphExecutor, tensors: set[str], batches: Callable[[], Any],
                  max_sample: int = MAX_SAMPLE, seed: int = 0) -> dict[str, ActivationStats]:
    """One float pass, sampled by the core's :class:`CalibrationStats` (as the ONNX backend samples)."""
    stats = CalibrationStats(tensors, max_sample, seed)

    def observe(name: str, value: torch.Tensor) -> None:
        stats.observe(name, value.detach().reshape(-1).float().cpu().numpy())

    with torch.inference_mode():
        for batch in batches():
            executor.run(torch.from_numpy(np.ascontiguousarray(batch)), observe=(tensors, observe))
    return stats.result()
