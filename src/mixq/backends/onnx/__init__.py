"""ONNX backend: ONNX models (a ``.onnx`` path or an ``onnx.ModelProto``) simulated with ONNX Runtime.

Needs ``onnx`` and ``onnxruntime`` (``pip install "mixq[onnx]"``); imported lazily by the registry.
"""
