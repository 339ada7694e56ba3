"""Runtimes: where an exported file runs as given and is timed (``mixq eval FILE --runtime NAME``).

Built in: ``onnxruntime`` (the default; ONNX Runtime's CPU execution provider) and ``openvino`` (the
OpenVINO CPU plugin, which reads QDQ ONNX files; ``pip install openvino``). Both live in the ONNX backend
and are registered as lazy ``"module:attr"`` strings, so importing this package imports no framework.
Third parties add theirs under the ``mixq.runtimes`` entry-point group; entries satisfy
:class:`mixq.runtimes.base.Runtime`.
"""

from __future__ import annotations

from mixq.registry import Registry
from mixq.runtimes.base import DEFAULT_RUNTIME, BatchRunner, Runtime

#: Runtimes by name, the default first.
RUNTIMES: Registry[Runtime] = Registry("runtime", "mixq.runtimes")

RUNTIMES.add("onnxruntime", "mixq.backends.onnx.runtimes:OnnxRuntime",
             help="ONNX Runtime, CPU execution provider (the default; kernels: --hardware onnxruntime-cpu)")
RUNTIMES.add("openvino", "mixq.backends.onnx.openvino_runtime:OpenVinoRuntime",
             help="OpenVINO, CPU plugin, on the QDQ ONNX file (pip install openvino; kernels: --hardware "
                  "openvino-cpu)")


def get_runtime(name: str = DEFAULT_RUNTIME) -> Runtime:
    """The runtime registered as ``name`` (a did-you-mean ConfigError for an unknown name)."""
    return RUNTIMES.create(name)


__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "BatchRunner", "Runtime", "get_runtime"]
