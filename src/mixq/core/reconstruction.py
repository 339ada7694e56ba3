"""Block reconstruction (BRECQ, Li et al. 2021, "BRECQ: Pushing the Limit of Post-Training Quantization by
Block Reconstruction") with QDrop's random activation dropping (Wei et al. 2022) as an option, framework-free:
its settings and the rule that cuts a model into blocks.

After the search has picked a plan, BRECQ learns, block after block, AdaRound's up-or-down rounding of every
integer weight in the block so that the *quantized* block, fed the quantized model's own input, reproduces the
*float* block's output on the float input (label-free). A block is larger than a layer because a layer-wise
objective ignores how the errors of consecutive layers interact, and smaller than the network because the
whole-network objective overfits a small calibration set (the paper's Fisher-information argument). The
optimisation runs in a backend (torch: :mod:`mixq.backends.torch.brecq`).

The blocks (:func:`form_blocks`): the graph is cut where it narrows to a single live tensor (no skip
connection open), which makes every residual block, inverted residual or transformer layer one indivisible
*unit*; units are merged in graph order while a block holds at most ``max_groups`` groups whose weights are
reconstructed (a unit larger than that stays whole: cutting it would cut a skip connection). Between two
blocks, segments without such groups (activations, pooling, float layers) are split where the tensor is
largest: after the activation, before pooling.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

from mixq.core.graph import GroupId
from mixq.core.rounding import AdaRoundConfig
from mixq.errors import ConfigError

#: QDrop's drop probability (the paper's default): what ``--qdrop`` means when it is on without a value.
QDROP_PROBABILITY = 0.5
#: Adam steps per block by default (see :class:`BrecqConfig`).
BRECQ_ITERATIONS = 500


@dataclass(frozen=True)
class BrecqConfig:
    """BRECQ's settings.

    Attributes:
        iterations: Adam steps per block. The paper runs 20k on a GPU; on a CPU a block step costs a
            forward and backward pass of the whole block on ``batch_size`` samples, so 500 (AdaRound's
            default here) keeps a small model's reconstruction at seconds and already recovers most of
            the gain (the rounding starts at the float weights' fractional parts, not at random).
        batch_size: calibration samples per step (whole samples, as AdaRound's steps take them).
        reg_weight: lambda of AdaRound's regulariser ``sum(1 - |2 h(V) - 1|^beta)`` over the block's weights
            (the paper's 0.01; the reconstruction term is the squared error summed over channels and
            averaged over samples and positions, as in the paper's code, so that lambda keeps its meaning).
        beta_start, beta_end, warmup: the regulariser's schedule, exactly AdaRound's
            (:meth:`mixq.core.rounding.AdaRoundConfig.beta`): off for the first ``warmup`` fraction of the
            steps, then ``beta`` annealed linearly from 20 to 2.
        lr: Adam's learning rate on V. The paper's 1e-3 suits 20k steps; with 500 steps 1e-2 lets a
            rounding flip.
        qdrop: QDrop's probability that an activation quantizer inside the block passes its float input
            through instead of quantizing it, per element and step (0: plain BRECQ; the paper uses 0.5,
            :data:`QDROP_PROBABILITY`). Training the rounding with activation noise only partly present makes
            it flatter for the activation quantization it meets at inference.
        max_groups: the block size: at most this many reconstructed groups per block, merging the graph's
            units (see :func:`form_blocks`). 3 makes a ResNet basic or bottleneck block, a MobileNetV2
            inverted residual or three layers of a plain chain one block, the granularity the paper found
            best; 1 makes every unit its own block.
        seed: seeds the batch order and QDrop's draws (the search's ``--seed``).
    """

    iterations: int = BRECQ_ITERATIONS
    batch_size: int = 32
    reg_weight: float = 0.01
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    lr: float = 1e-2
    qdrop: float = 0.0
    max_groups: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.max_groups < 1:
            raise ConfigError(f"BRECQ's iterations, batch_size and max_groups must be positive, got "
                              f"{self.iterations}, {self.batch_size} and {self.max_groups}")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"BRECQ's warmup is a fraction in [0, 1), got {self.warmup}")
        if not 0.0 <= self.qdrop < 1.0:
            raise ConfigError(f"--qdrop is a probability in [0, 1) (QDrop's paper uses {QDROP_PROBABILITY}), "
                              f"got {self.qdrop}")
        if self.reg_weight < 0 or self.lr <= 0 or self.beta_start <= 0 or self.beta_end <= 0:
            raise ConfigError("BRECQ's reg_weight must be >= 0, its lr and betas > 0, got "
                              f"{self.reg_weight}, {self.lr}, {self.beta_start}, {self.beta_end}")

    @classmethod
    def from_search(cls, search: Any) -> BrecqConfig:
        """Defaults seeded by the search's ``seed``, so one seed decides the whole run."""
        return cls(seed=int(getattr(search, "seed", 0)))

    def rounding(self) -> AdaRoundConfig:
        """The same rounding settings as AdaRound's, whose schedule (:meth:`AdaRoundConfig.beta`) BRECQ uses."""
        return AdaRoundConfig(iterations=self.iterations, batch_size=self.batch_size, reg_weight=self.reg_weight,
                              beta_start=self.beta_start, beta_end=self.beta_end, warmup=self.warmup, lr=self.lr)

    def key(self) -> dict[str, Any]:
        """The settings as JSON-able values (for reports and the tuned quantizers' details)."""
        return asdict(self)


def form_blocks(segments: Sequence[Collection[GroupId]], reconstructed: Collection[GroupId], max_groups: int,
                sizes: Sequence[int] | None = None) -> list[range]:
    """Consecutive segments merged into blocks, as ranges of segment indices covering every segment.

    Args:
        segments: per segment of the graph between two narrow points (in graph order), the groups whose ops
            lie in it. A group whose ops lie in several segments (a module called twice) joins them and all
            segments between them into one unit: a group is reconstructed in one block.
        reconstructed: the groups whose weights are learned; only they count towards ``max_groups``.
        max_groups: at most this many reconstructed groups per block, unless one unit alone holds more.
        sizes: per segment, the elements per sample of the tensor that leaves it (where a cut after it
            would take a block's output); None: all equal.

    Units holding reconstructed groups are merged greedily in order while a block holds at most
    ``max_groups`` of them. Units without any (an activation, pooling, a float layer) lie between two blocks;
    the cut between those goes after the segment whose output is largest, the latest of equals: a block's
    output is then taken after its activation (what the next layer reads; a ReLU's zeros are not
    reconstructed) but before pooling (pooled features would leave the block's weights far fewer values to
    match). Segments before the first block open it, those after the last end it. Every block holds at least
    one reconstructed group, except the single block of a model without any.

    >>> form_blocks([["a"], ["b", "c"], [], ["d"]], {"a", "b", "c", "d"}, 2)
    [range(0, 1), range(1, 3), range(3, 4)]
    >>> form_blocks([["a"], ["b", "c"], [], ["d"]], {"a", "b", "c", "d"}, 2, sizes=[8, 8, 2, 1])
    [range(0, 1), range(1, 2), range(2, 4)]
    >>> form_blocks([["a"], ["b"], ["a"], ["c"]], {"a", "b", "c"}, 3)
    [range(0, 4)]
    """
    if max_groups < 1:
        raise ConfigError(f"a block holds at least one group, got max_groups={max_groups}")
    if sizes is not None and len(sizes) != len(segments):
        raise ConfigError(f"form_blocks takes one size per segment, got {len(sizes)} for {len(segments)}")
    last: dict[GroupId, int] = {}
    for index, groups in enumerate(segments):
        for group in groups:
            last[group] = index
    units: list[range] = []
    start, end = 0, 0  # the open unit is segments[start:end + 1]
    for index, groups in enumerate(segments):
        end = max([end, index, *(last[g] for g in groups)])
        if index == end:
            units.append(range(start, end + 1))
            start = end = index + 1
    counted = set(reconstructed)

    def count(span: range) -> int:
        return len({g for i in span for g in segments[i] if g in counted})

    cores: list[range] = []  # each block from its first to its last unit with reconstructed groups
    for unit in units:
        if count(unit) == 0:
            continue
        if cores and count(range(cores[-1].start, unit.stop)) <= max_groups:
            cores[-1] = range(cores[-1].start, unit.stop)
        else:
            cores.append(unit)
    if not cores:
        return [range(len(segments))] if segments else []
    size = list(sizes) if sizes is not None else [0] * len(segments)
    cuts = [0]
    for before, after in pairwise(cores):
        gap = range(before.stop - 1, after.start)  # a cut after one of these segments
        cuts.append(max(gap, key=lambda i: (size[i], i)) + 1)
    cuts.append(len(segments))
    return [range(a, b) for a, b in pairwise(cuts)]


__all__ = ["BRECQ_ITERATIONS", "QDROP_PROBABILITY", "BrecqConfig", "form_blocks"]
