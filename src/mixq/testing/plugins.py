"""A third-party plug-in package on disk, as ``pip install`` leaves it, for tests of entry points.

``install_plugin(tmp_path, "toy-mixq-solver", {"toy_mixq_solver": CODE}, {"mixq.solvers": {"toy":
"toy_mixq_solver:ToySolver"}})`` writes the modules and a ``*.dist-info`` with METADATA and
entry_points.txt; put the folder on ``sys.path`` (or PYTHONPATH) and importlib.metadata finds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: A curve solver that puts every group at one precision (``pick``, a setting): its plan is known.
TOY_SOLVER = '''
from dataclasses import dataclass

from mixq.core.assignment import Assignment
from mixq.core.precision import Precision
from mixq.solvers.base import ParetoCurve


@dataclass(frozen=True)
class ToyConfig:
    pick: str = "w4a8"


class ToySolver:
    """Every group at one precision (a toy plug-in)."""

    name = "toy"
    config_class = ToyConfig

    def __init__(self, config=None):
        self.config = config or ToyConfig()

    def _point(self, problem):
        precision = Precision.parse(self.config.pick)
        return problem.point(Assignment({group.id: precision for group in problem.graph}))

    def curve(self, problem, budgets=()):
        return ParetoCurve((self._point(problem),), problem.primary)

    def solve(self, problem, budgets):
        return self._point(problem)
'''


def install_plugin(root: Path, distribution: str, modules: Mapping[str, str],
                   entry_points: Mapping[str, Mapping[str, str]], version: str = "0.1") -> Path:
    """Write ``modules`` (name -> source) and the distribution's metadata under ``root``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    lines = []
    for group, points in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in points.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return root
