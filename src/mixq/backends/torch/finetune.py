"""Label-free distillation of one plan on a torch model (``--finetune-kd STEPS``; settings in
:mod:`mixq.core.finetune`).

The student is the simulation's own quantized graph: the same executor and op overrides
(``TorchSimulation.overrides``), with :class:`LsqQuantizers` in place of the calibrated quantizers. Those learn
a float copy of each integer group's weight (rounded with a straight-through estimator) and the step sizes of
weights (per channel) and static activations with LSQ (Esser et al. 2020: the step's gradient scaled by
``1/sqrt(N * Qp)``). Zero-points stay calibrated; fp16/fp32 groups and dynamic activation ranges stay as
simulated. The result is expressed as :class:`~mixq.core.tuned.TunedQuantizers` (integers
``clamp(round(w / s) + z)`` on the learned grid), so the simulation, ``mixq eval`` and ``mixq export``
compute what was trained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mixq.backends.base import Progress, Simulation
from mixq.backends.torch.executor import flatten_output
from mixq.backends.torch.simulation import Quantizers, TorchSimulation
from mixq.core.assignment import Assignment
from mixq.core.finetune import KdSettings
from mixq.core.precision import Precision
from mixq.core.ranges import QuantParams
from mixq.core.tuned import TunedQuantizers, TunedWeight
from mixq.errors import CapabilityError

#: Smallest learned step size (a step cannot shrink to zero or change sign).
MIN_SCALE = 1e-8
#: Progress stage name.
STAGE = "kd fine-tune"


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding whose gradient is the identity (straight-through estimator)."""
    return (torch.round(x) - x).detach() + x


def _grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` (LSQ's step-size gradient scale)."""
    return (x - x * scale).detach() + x * scale


def _lsq(x: torch.Tensor, step: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int, grad: float) -> torch.Tensor:
    s = _grad_scale(step.clamp_min(MIN_SCALE), grad)
    q = torch.clamp(_round_ste(x / s) + zero, qmin, qmax)
    return (q - zero) * s


class _Weight:
    """A learnable weight at one bit-width: float values, per-channel steps, calibrated zero-points."""

    def __init__(self, values: np.ndarray, axis: int, params: QuantParams) -> None:
        shape = [1] * values.ndim
        per_channel = np.asarray(params.scale).ndim > 0
        if per_channel:
            shape[axis] = -1
        self.axis, self.per_channel, self.params = axis, per_channel, params
        self.values = torch.nn.Parameter(torch.from_numpy(np.array(values, np.float32)))
        self.step = torch.nn.Parameter(torch.from_numpy(np.asarray(params.scale, np.float32).reshape(shape).copy()))
        self.zero = torch.from_numpy(np.asarray(params.zero_point, np.float32).reshape(shape).copy())
        per_step = values.size // (values.shape[axis] if per_channel else 1)
        self.grad = 1.0 / math.sqrt(max(per_step, 1) * max(params.qmax, 1))
        self.dtype = values.dtype

    def forward(self) -> torch.Tensor:
        return _lsq(self.values, self.step, self.zero, self.params.qmin, self.params.qmax, self.grad)

    def tuned(self) -> TunedWeight:
        step = np.maximum(self.step.detach().double().numpy(), MIN_SCALE)
        zero = self.zero.double().numpy()
        integers = np.clip(np.round(self.values.detach().double().numpy() / step) + zero, self.params.qmin,
                           self.params.qmax).astype(np.int32)
        scale = step.reshape(-1) if self.per_channel else step.reshape(())
        return TunedWeight(integers, QuantParams(scale, np.asarray(self.params.zero_point, np.float64),
                                                 self.params.qmin, self.params.qmax))


class _Activation:
    """A learnable static activation step at one bit-width (zero-point calibrated)."""

    def __init__(self, params: QuantParams) -> None:
        self.params = params
        self.step = torch.nn.Parameter(torch.tensor(float(params.scale), dtype=torch.float32))
        self.zero = torch.tensor(float(params.zero_point), dtype=torch.float32)
        self.qp = max(params.qmax - float(params.zero_point), 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = max(x[0].numel() if x.dim() > 1 else x.numel(), 1)
        return _lsq(x, self.step, self.zero, self.params.qmin, self.params.qmax, 1.0 / math.sqrt(features * self.qp))

    def tuned(self) -> QuantParams:
        return QuantParams(np.asarray(max(float(self.step.detach()), MIN_SCALE), np.float64),
                           np.asarray(float(self.params.zero_point), np.float64), self.params.qmin, self.params.qmax)


class LsqQuantizers:
    """Learnable quantizers of the integer groups of one assignment, used through the simulation's overrides
    (``SiteQuantizers``); float precisions and dynamic ranges are delegated to the calibrated quantizers."""

    def __init__(self, sim: TorchSimulation, assignment: Assignment) -> None:
        self.base: Quantizers = sim.quantizers
        self.weights: dict[tuple[str, int], _Weight] = {}
        self.activations: dict[tuple[str, int], _Activation] = {}
        self._fixed: dict[tuple[str, Precision], torch.Tensor] = {}
        dynamic = self.base.scheme.act_dynamic
        for group, precision in assignment.items():
            if precision.is_float:
                continue
            for site in sim.group_sites(group):
                tensors = [(site.op.inputs[i], precision.act_bits) for i in site.act_args]
                if site.weight_key is None:
                    tensors.append((site.op.inputs[1], precision.weight_bits))
                elif (site.weight_key, precision.weight_bits) not in self.weights:
                    key, bits = site.weight_key, precision.weight_bits
                    self.weights[(key, bits)] = _Weight(self.base.float_weights[key], self.base.weight_axis(key),
                                                        self.base.weight_params(key, bits))
                for tensor, bits in tensors if not dynamic else []:
                    if (tensor, bits) not in self.activations:
                        self.activations[(tensor, bits)] = _Activation(self.base.act_params(tensor, bits))

    def bias(self, key: str, precision: Precision) -> torch.Tensor | None:
        """With ``--bias-correction``, the correction of the weight being learned (the tuned plan's bias is
        computed by the same formula from the learned integers); else the module's own bias (None)."""
        return self.base.learned_bias(key, precision, self.weight(key, precision))

    def weight(self, key: str, precision: Precision) -> torch.Tensor:
        learned = self.weights.get((key, precision.weight_bits)) if not precision.is_float else None
        if learned is not None:
            return learned.forward()
        fixed = self._fixed.get((key, precision))
        if fixed is None:  # the simulation caches tensors made under inference mode: autograd cannot save those
            fixed = self._fixed[(key, precision)] = self.base.weight(key, precision).clone()
        return fixed

    def activation(self, tensor: str, x: torch.Tensor, bits: int, is_float: bool) -> torch.Tensor:
        learned = self.activations.get((tensor, bits)) if not is_float else None
        return learned.forward(x) if learned is not None else self.base.activation(tensor, x, bits, is_float)

    def param_groups(self, settings: KdSettings) -> list[dict[str, Any]]:
        """Adam groups with step sizes relative to each tensor's grid (see ``KdSettings``)."""
        groups: list[dict[str, Any]] = []
        for weight in self.weights.values():
            step = float(weight.step.detach().abs().mean())
            groups.append({"params": [weight.values], "lr": settings.weight_lr * step})
            groups.append({"params": [weight.step], "lr": settings.scale_lr * step})
        for act in self.activations.values():
            groups.append({"params": [act.step], "lr": settings.scale_lr * float(act.step.detach().abs())})
        return groups

    def result(self, details: dict[str, Any]) -> TunedQuantizers:
        return TunedQuantizers("kd", {k: w.tuned() for k, w in self.weights.items()},
                               {k: a.tuned() for k, a in self.activations.items()}, details)


def _batches(count: int, size: int, seed: int) -> Iterator[torch.Tensor]:
    """Sample indices, a fresh seeded permutation per epoch."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, size):
            yield order[start:start + size]


def _kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    log_student = F.log_softmax(student / temperature, dim=1)
    log_teacher = F.log_softmax(teacher / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * temperature ** 2


def distill(sim: TorchSimulation, assignment: Assignment, calibration: np.ndarray, settings: KdSettings,
            progress: Progress | None = None) -> TunedQuantizers:
    """Fine-tune ``assignment``'s quantizers against the float model on ``calibration`` (see the module)."""
    quant = LsqQuantizers(sim, assignment)
    executor = sim.executor
    student = sim.overrides(assignment, quant)
    feature_nodes = [site.node for group, p in assignment.items() if not p.is_float for site in sim.group_sites(group)]
    data = torch.from_numpy(np.ascontiguousarray(calibration, np.float32))
    frozen = [p for p in executor.gm.parameters() if p.requires_grad]
    for parameter in frozen:  # only the learnable copies get gradients
        parameter.requires_grad_(False)
    try:
        with torch.no_grad():
            teacher = torch.cat([flatten_output(executor.run(data[i:i + 64])[0]) for i in range(0, len(data), 64)])
        groups = quant.param_groups(settings)
        optimizer = torch.optim.Adam(groups) if groups else None
        started = time.perf_counter()
        deadline = started + settings.minutes * 60 if settings.minutes is not None else math.inf
        losses: list[float] = []
        stopped = "steps"
        batches = _batches(len(data), settings.batch_size, settings.seed)
        for step in range(settings.steps):
            if progress is not None:
                progress(STAGE, step, settings.steps)
            if time.perf_counter() >= deadline:
                stopped = "minutes"
                break
            index = next(batches)
            x = data[index]
            features: dict[str, torch.Tensor] = {}
            observe = (feature_nodes, features.__setitem__) if settings.feature_weight > 0 else None
            output, _ = executor.run(x, student, observe=observe)
            loss = _kl(flatten_output(output), teacher[index], settings.temperature)
            if settings.feature_weight > 0 and features:
                loss = loss + settings.feature_weight * _feature_loss(executor, x, features)
            losses.append(float(loss.detach()))
            if optimizer is None:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if progress is not None:
            progress(STAGE, settings.steps, settings.steps)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    done = len(losses)
    details = {"steps": done, "steps_asked": settings.steps, "stopped_by": stopped,
               "train_seconds": round(time.perf_counter() - started, 3), "loss_first": losses[0] if losses else None,
               "loss_last": losses[-1] if losses else None, "temperature": settings.temperature,
               "feature_weight": settings.feature_weight, "batch_size": settings.batch_size, "seed": settings.seed,
               "learned_weights": len(quant.weights), "learned_activation_steps": len(quant.activations)}
    return quant.result(details)


def _feature_loss(executor: Any, x: torch.Tensor, student: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over the quantized groups' op outputs of the MSE to the float model's, per unit of its energy."""
    teacher: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        executor.run(x, observe=(list(student), teacher.__setitem__))
    terms = [F.mse_loss(student[name].float(), teacher[name].float()) / teacher[name].float().pow(2).mean().clamp_min(1e-12)
             for name in student if name in teacher]
    return torch.stack(terms).mean()


class KdTuner:
    """Label-free distillation of the plan (``--finetune-kd STEPS``): the ``kd`` entry of ``TUNERS``."""

    name = "kd"

    def __init__(self, settings: KdSettings | None = None) -> None:
        self.settings = settings or KdSettings()

    def tune(self, sim: Simulation, assignment: Assignment, calibration: np.ndarray,
             progress: Progress | None = None) -> TunedQuantizers:
        sim = getattr(sim, "inner", sim)  # an averaged simulation (a nondeterministic model) trains on its model
        if not isinstance(sim, TorchSimulation):
            raise CapabilityError("distillation (--finetune-kd) needs a torch model: load the model as an nn.Module "
                                  "(file.py:factory or package.module:factory), or search without --finetune-kd")
        with torch.enable_grad():
            return distill(sim, assignment, calibration, self.settings, progress)


__all__ = ["KdTuner", "LsqQuantizers", "distill"]
