"""BRECQ (Li et al. 2021) block reconstruction of a plan's integer weights on a torch model, with QDrop's
random activation dropping (Wei et al. 2022) as an option; the settings and the block rule are
:mod:`mixq.core.reconstruction`'s.

Blocks (:mod:`mixq.backends.torch.blocks`) are reconstructed one after another, BRECQ's sequential setting:

* input: the *quantized* model's input to the block, i.e. every earlier block already runs with its
  reconstructed integers (so a block also corrects the error its input carries);
* target: the *float* model's output of the block on the float input (label-free);
* learned: AdaRound's ``V`` (the rectified sigmoid ``h(V)`` of :mod:`mixq.backends.torch.adaround`) of every
  weight of the block's integer groups, on the grid of its calibrated quantizer (scales, zero-points and
  integer range fixed); activations are fake-quantized at their calibrated parameters inside the block;
* loss: the squared error summed over channels, averaged over samples and positions (the paper's), plus
  AdaRound's regulariser on the schedule of :meth:`mixq.core.rounding.AdaRoundConfig.beta`;
* QDrop (``config.qdrop = p > 0``): during the optimisation each activation quantizer of the block passes its
  float input through instead, elementwise, with probability ``p``.

At the end ``h(V) >= 0.5`` rounds up. Groups at fp16/fp32 are not reconstructed (they run as the plan says).
Only the block's nodes run (a sub-graph of the executor), so a step costs a forward and a backward pass of
one block. Deterministic given ``seed``: the batch order and QDrop's masks come from seeded generators
(the global RNG is untouched), on one torch thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from mixq.backends.base import Progress
from mixq.backends.torch.adaround import GAMMA, PROGRESS_EVERY, ZETA, _broadcast, _one_thread
from mixq.backends.torch.blocks import Block, BlockQuantizers, constants, graph_blocks, run_block
from mixq.backends.torch.executor import Override
from mixq.backends.torch.simulation import TorchSimulation, site_override
from mixq.core.assignment import Assignment
from mixq.core.precision import Precision
from mixq.core.ranges import QuantParams
from mixq.core.reconstruction import BrecqConfig
from mixq.core.tuned import TunedQuantizers, TunedWeight
from mixq.errors import CapabilityError, DataError, internal

#: Samples per forward pass when the targets and the block outputs are computed (memory bound, not a setting).
CHUNK = 32
#: The stage name of ``progress``.
STAGE = "brecq"


class _Rounding:
    """One weight's learnable rounding: ``W~ = s * clip(floor(W / s) + h(V), qmin - z, qmax - z)``, with ``V``
    starting where ``h(V)`` is the float weight's fractional part (AdaRound's start)."""

    def __init__(self, weight: np.ndarray, params: QuantParams, axis: int) -> None:
        self.params, self.axis = params, axis
        self.scale64 = _broadcast(params.scale, weight.ndim, axis)
        self.zero64 = _broadcast(params.zero_point, weight.ndim, axis)
        scaled = weight.astype(np.float64) / self.scale64
        self.floor64 = np.floor(scaled)
        rest = np.clip(scaled - self.floor64, 0.0, 1.0)
        p = (rest - GAMMA) / (ZETA - GAMMA)
        self.v = torch.nn.Parameter(torch.as_tensor(np.log(p / (1.0 - p)).astype(np.float32)))
        shape = weight.shape
        self.floor = torch.as_tensor(self.floor64.astype(np.float32))
        self.scale = torch.as_tensor(np.broadcast_to(self.scale64, shape).astype(np.float32))
        self.lo = torch.as_tensor(np.broadcast_to(params.qmin - self.zero64, shape).astype(np.float32))
        self.hi = torch.as_tensor(np.broadcast_to(params.qmax - self.zero64, shape).astype(np.float32))
        self.np_dtype = weight.dtype
        self.dtype = torch.from_numpy(np.zeros(0, weight.dtype)).dtype

    def h(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def soft(self) -> torch.Tensor:
        """The relaxed weight the optimisation sees."""
        return (self.scale * torch.minimum(torch.maximum(self.floor + self.h(), self.lo), self.hi)).to(self.dtype)

    def regulariser(self, beta: float) -> torch.Tensor:
        return (1.0 - (2.0 * self.h() - 1.0).abs().pow(beta)).sum()

    def integers(self) -> np.ndarray:
        """The rounded integers (int32, the weight's layout): ``h >= 0.5`` rounds up."""
        with torch.no_grad():
            up = (self.h() >= 0.5).numpy()
        q = np.clip(self.floor64 + up + self.zero64, self.params.qmin, self.params.qmax)
        if not np.isfinite(q).all():
            raise DataError("BRECQ met a non-finite weight or scale; check the model's weights")
        return q.astype(np.int32)

    def hard(self) -> torch.Tensor:
        """The rounded weight as :meth:`mixq.core.quantize.WeightQuantizer.weight` dequantizes it (float32
        ``(q - zero) * scale``, then the weight's dtype), so the simulation's tuned weight equals it bit for bit."""
        q = self.integers()
        out = ((q - self.zero64).astype(np.float32) * self.scale64.astype(np.float32)).astype(self.np_dtype)
        return torch.from_numpy(np.ascontiguousarray(out))


@contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """The model's own parameters take no gradient while V is learned (only V does); restored after."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _constant(value: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: value


def reconstruction_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BRECQ's: the squared error summed over channels (dim 1), averaged over samples and positions."""
    error = (out - target).pow(2)
    return error.sum(1).mean() if error.dim() > 1 else error.mean()


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean())


class _Reconstruction:
    """One run of :func:`reconstruct`: the simulation's pieces, the plan, the seeded generators."""

    def __init__(self, sim: TorchSimulation, assignment: Assignment, config: BrecqConfig, seed: int,
                 progress: Progress | None) -> None:
        self.sim, self.config, self.progress = sim, config, progress
        self.executor = sim.executor
        # each group's op sites (the calibrated weight quantizer is read through sim.quantizers)
        self.sites = {g.id: sim.group_sites(g.id) for g in sim.graph}
        self.precisions = {g: p for g, p in assignment.items() if g in self.sites and not p.keeps_float32}
        self.base = constants(self.executor)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.done = 0
        self.total = 0

    def learned(self) -> set[str]:
        """The groups whose weights are reconstructed: integer precisions, with a weight."""
        return {g for g, p in self.precisions.items() if not p.is_float
                and any(site.weight_key is not None for site in self.sites[g])}

    def learned_keys(self, block: Block) -> dict[str, Precision]:
        """The block's weights at integer precisions (a reused module's weight once)."""
        keys: dict[str, Precision] = {}
        for group in block.groups:
            precision = self.precisions.get(group)
            if precision is not None and not precision.is_float:
                keys.update({site.weight_key: precision for site in self.sites[group] if site.weight_key is not None})
        return keys

    def overrides(self, block: Block, quant: BlockQuantizers | None) -> dict[str, Override]:
        """The block's quantized ops (none: the float block)."""
        out: dict[str, Override] = {}
        names = {node.name for node in block.nodes}
        for group in block.groups if quant is not None else ():
            precision = self.precisions.get(group)
            for site in self.sites[group]:
                if precision is not None and quant is not None and site.node in names:
                    out[site.node] = site_override(self.executor, site, precision, quant)
        return out

    def outputs(self, block: Block, x: torch.Tensor, quant: BlockQuantizers | None) -> torch.Tensor:
        """The block's outputs on all of ``x``, in chunks, without gradients."""
        overrides = self.overrides(block, quant)
        parts = []
        with torch.no_grad():
            for start in range(0, len(x), CHUNK):
                index = torch.arange(start, min(start + CHUNK, len(x)))  # a copy: in-place ops keep x intact
                parts.append(run_block(self.executor, block, x[index], self.base, overrides).detach())
        return torch.cat(parts)

    def block(self, block: Block, float_x: torch.Tensor, quant_x: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, dict[tuple[str, int], TunedWeight], dict[str, Any]]:
        """One block: its float outputs (the next target's input), its quantized outputs with the learned
        integers (the next block's input), those integers, and its report."""
        started = time.perf_counter()
        target = self.outputs(block, float_x, None)
        before = after = self.outputs(block, quant_x, BlockQuantizers(self.sim.quantizers))
        keys = self.learned_keys(block)
        tuned: dict[tuple[str, int], TunedWeight] = {}
        if keys:
            quantizers = self.sim.quantizers
            roundings = {key: _Rounding(quantizers.float_weights[key], quantizers.weight_params(key, p.weight_bits),
                                        quantizers.weight_axis(key)) for key, p in keys.items()}
            self.optimise(block, roundings, quant_x, target)
            hard = {key: _constant(r.hard()) for key, r in roundings.items()}
            after = self.outputs(block, quant_x, BlockQuantizers(self.sim.quantizers, hard))
            tuned = {(key, keys[key].weight_bits): TunedWeight(r.integers(), r.params) for key, r in roundings.items()}
        report = {"groups": list(block.groups), "output": "output" if block.output is None else block.output.name,
                  "weights": sorted(keys), "iterations": self.config.iterations if keys else 0,
                  "mse_before": _mse(before, target), "mse_after": _mse(after, target),
                  "seconds": round(time.perf_counter() - started, 3)}
        return target, after, tuned, report

    def optimise(self, block: Block, roundings: Mapping[str, _Rounding], x: torch.Tensor, target: torch.Tensor) -> None:
        """Adam on the block's V: the reconstruction loss plus AdaRound's regulariser on its schedule."""
        config = self.config
        soft: dict[str, Callable[[], torch.Tensor]] = {key: r.soft for key, r in roundings.items()}
        overrides = self.overrides(block, BlockQuantizers(self.sim.quantizers, soft, config.qdrop, self.generator))
        optimiser = torch.optim.Adam([r.v for r in roundings.values()], lr=config.lr)
        schedule = config.rounding()
        count = len(x)
        batch = min(config.batch_size, count)
        order, position = self.rng.permutation(count), 0
        for step in range(config.iterations):
            if position + batch > count:
                order, position = self.rng.permutation(count), 0
            index = torch.as_tensor(order[position:position + batch])
            position += batch
            loss = reconstruction_loss(run_block(self.executor, block, x[index], self.base, overrides), target[index])
            beta = schedule.beta(step)
            if beta is not None and config.reg_weight > 0:
                loss = loss + config.reg_weight * torch.stack([r.regulariser(beta) for r in roundings.values()]).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if self.progress is not None and step % PROGRESS_EVERY == 0:
                self.progress(STAGE, self.done + step, self.total)
        self.done += config.iterations


def reconstruct(sim: TorchSimulation, assignment: Assignment, calibration: np.ndarray,
                config: BrecqConfig | None = None, seed: int = 0,
                progress: Progress | None = None) -> TunedQuantizers:
    """The plan's integer weights reconstructed block by block (BRECQ; QDrop with ``config.qdrop > 0``).

    Args:
        sim: the calibrated simulation of the model (its weight and activation quantizers are kept; it is
            not changed: apply the result with ``WeightQuantizer.tune``).
        assignment: the plan; groups at fp16/fp32 run as it says and are not reconstructed.
        calibration: unlabeled samples (samples first); all of them are reconstructed on. Memory: four
            tensors of a block boundary for every sample.
        config: the settings (default :class:`~mixq.core.reconstruction.BrecqConfig`).
        seed: the batch order and QDrop's masks; the same inputs and seed give the same integers.
        progress: called as ``progress("brecq", step, total)`` over all blocks' steps.

    Returns:
        ``TunedQuantizers("brecq", weights)`` with ``weights[(weight key, bits)]`` the integers (int32, the
        weight's layout, within ``[qmin, qmax]`` and at most one from nearest rounding) on the calibrated
        quantizer's grid. ``details``: the settings, the seed, the samples, the total steps and seconds, and
        per block its groups, output node, weights, steps, mean squared error of its output against the float
        block's on the calibration samples before (the simulation's rounding) and after, and seconds.
    """
    config = config or BrecqConfig()
    if len(calibration) == 0:
        raise DataError("BRECQ needs at least one calibration sample")
    started = time.perf_counter()
    tuned: dict[tuple[str, int], TunedWeight] = {}
    report: list[dict[str, Any]] = []
    with _one_thread(), _frozen(sim.executor.gm):
        run = _Reconstruction(sim, assignment, config, seed, progress)
        blocks = graph_blocks(run.executor, run.sites, calibration[:2], run.learned(), config.max_groups)
        run.total = config.iterations * sum(1 for block in blocks if run.learned_keys(block))
        float_x = quant_x = torch.from_numpy(np.ascontiguousarray(calibration, np.float32))
        for block in blocks:
            float_x, quant_x, learned, facts = run.block(block, float_x, quant_x)
            if set(learned) & set(tuned):
                raise internal(f"BRECQ reconstructed weights {sorted(set(learned) & set(tuned))} in two blocks")
            tuned.update(learned)
            report.append(facts)
    if progress is not None and run.total:
        progress(STAGE, run.total, run.total)
    details = {"config": config.key(), "seed": seed, "samples": len(calibration), "blocks": report,
               "iterations": run.total, "seconds": round(time.perf_counter() - started, 3)}
    return TunedQuantizers("brecq", tuned, {}, details)


class BrecqTuner:
    """Block reconstruction of the plan (``--reconstruct brecq``): the ``brecq`` entry of ``TUNERS``."""

    name = "brecq"

    def __init__(self, settings: BrecqConfig | None = None) -> None:
        self.settings = settings or BrecqConfig()

    def tune(self, sim: object, assignment: Assignment, calibration: np.ndarray,
             progress: Progress | None = None) -> TunedQuantizers:
        sim = getattr(sim, "inner", sim)  # an averaged simulation (a nondeterministic model) tunes its model
        if not isinstance(sim, TorchSimulation):
            raise CapabilityError("BRECQ block reconstruction (--reconstruct brecq) needs a torch model for now, not "
                                  f"a {type(sim).__name__}: load the model as an nn.Module (file.py:factory or "
                                  "package.module:factory), or search without --reconstruct")
        with torch.enable_grad():
            return reconstruct(sim, assignment, calibration, self.settings, self.settings.seed, progress)


__all__ = ["STAGE", "BrecqTuner", "reconstruct", "reconstruction_loss"]
