"""Writing a plan as a QDQ ONNX file, checking it against the simulation and timing it (ONNX backend only)."""
