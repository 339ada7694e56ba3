"""What ``mixq export`` wrote, as the CLI prints it and ``--json`` dumps it: plain data, no framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ExportReport:
    """What was written and how it compares with the simulation and the float model."""

    path: Path
    file_bytes: int
    float_file_bytes: int
    opset: int
    precision_counts: dict[str, int]
    weight_storage: dict[str, int] = field(default_factory=dict)  # weight tensors per storage type
    notes: list[str] = field(default_factory=list)
    check: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    fused: dict[str, int] = field(default_factory=dict)
    output_quantizers: int = 0  # new quantizers at integer groups' outputs (see build_qdq; simulated on ONNX)
    #: the file in another runtime (``--runtime``): its outputs against ONNX Runtime's on the check samples
    runtime_check: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "file_bytes": self.file_bytes, "float_file_bytes": self.float_file_bytes,
                "output_quantizers": self.output_quantizers,
                "opset": self.opset, "precision_counts": self.precision_counts,
                "weight_storage": self.weight_storage, "notes": self.notes, "check": self.check,
                "latency": self.latency, "fused": self.fused, "runtime_check": self.runtime_check}
