"""Issue #12 (item 5): NNCF's accuracy-controlled int8 as a baseline beside mixq's mixed W8A8/FP32 plans.

EfficientNet-Lite0 (the ONNX file bench/onnx_deploy.py exports) read with OpenVINO, quantized by
``nncf.quantize_with_accuracy_control`` with the same data mixq searches with: calibration = the first 64
sample images, validation = the other 436, preprocessed by mixq's own loader (onnx_deploy.PREPROCESS).
The validation metric is label-free, as mixq's ``agreement`` budget: top-1 agreement with the float model's
predictions, max drop 1 % absolute (agreement >= 0.99 on the validation images). The result is then timed
in OpenVINO (CPU, batch 1, median of interleaved rounds) beside the float model, and its top-1 (labels) and
agreement are measured on the 436 held-out images.

Usage: python bench/nncf_baseline.py [--threads 2] [--out bench/out/nncf.json] [--data DIR] [--model F.onnx]
       [--precision P] [--compare FILE.qdq.onnx ...] [--reuse]

Both models are measured in f32 (what NNCF's accuracy control checks: it validates in f32) and in the CPU
plugin's default precision (bf16 for float layers on CPUs with AVX512-BF16/AMX), or ``--precision``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onnx_deploy  # the Lite0 export, its preprocessing and data
import table1

CALIBRATION = onnx_deploy.CALIBRATION
BATCH = 50


def load(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """The sample images as mixq's loader reads them (onnx_deploy.PREPROCESS), and their labels."""
    from mixq.data.loading import load_data
    from mixq.data.preprocess import Preprocess

    loaded = load_data(data, Preprocess.parse(onnx_deploy.PREPROCESS))
    return loaded.load(0, len(loaded)).astype(np.float32), np.asarray(loaded.labels)


def config(threads: int, precision: str | None) -> dict[str, Any]:
    settings: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    if precision:
        settings["INFERENCE_PRECISION_HINT"] = precision
    return settings


def predict(compiled: Any, images: np.ndarray) -> np.ndarray:
    """Logits of ``images`` in batches (the model keeps the export's dynamic batch)."""
    request = compiled.create_infer_request()
    output = compiled.outputs[0]
    return np.concatenate([np.array(request.infer({0: images[i:i + BATCH]})[output])
                           for i in range(0, len(images), BATCH)])


def latency(compiled: dict[str, Any], image: np.ndarray, rounds: int = 5, runs: int = 100) -> dict[str, dict]:
    """Batch-1 median milliseconds per model, interleaved rounds (two shared cores drift)."""
    requests = {label: model.create_infer_request() for label, model in compiled.items()}
    times: dict[str, list[float]] = {label: [] for label in requests}
    for request in requests.values():
        for _ in range(10):
            request.infer({0: image})
    for _ in range(rounds):
        for label, request in requests.items():
            measured = []
            for _ in range(runs):
                started = time.perf_counter()
                request.infer({0: image})
                measured.append((time.perf_counter() - started) * 1e3)
            times[label].append(statistics.median(measured))
    return {label: {"latency_ms": float(np.median(t)), "latency_spread_ms": [min(t), max(t)]}
            for label, t in times.items()}


def fake_quantize_count(model: Any) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(table1.ROOT / "bench" / "out" / "nncf.json"))
    parser.add_argument("--data", default=str(onnx_deploy.DATA))
    parser.add_argument("--model", default=None, help="Lite0 ONNX file (default: exported next to --out)")
    parser.add_argument("--precision", default=None,
                        help="also measure at this INFERENCE_PRECISION_HINT (default: the CPU plugin's own)")
    parser.add_argument("--compare", action="append", default=[],
                        help="a QDQ ONNX file (e.g. a mixq export) measured beside, under the same conditions")
    parser.add_argument("--reuse", action="store_true", help="re-measure the model an earlier run saved (OUT.xml)")
    args = parser.parse_args()

    import nncf
    import openvino as ov

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model_path = Path(args.model) if args.model else onnx_deploy.lite0_onnx(out.parent)
    images, labels = load(Path(args.data))
    calibration, held_out, held_labels = images[:CALIBRATION], images[CALIBRATION:], labels[CALIBRATION:]
    core = ov.Core()
    float_model = core.read_model(str(model_path))
    # The reference is the float model in f32: NNCF validates in f32 too (its engine pins the precision), so
    # the float model agrees with itself and max_drop=0.01 means agreement >= 0.99, as mixq's budget.
    reference = predict(core.compile_model(float_model, "CPU", config(args.threads, "f32")), held_out).argmax(1)

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        """Top-1 agreement with the float model (per image, so NNCF can rank layers by it)."""
        items = list(items)
        batch = np.concatenate([image for image, _ in items])
        agree = [float(a == b) for a, b in zip(predict(compiled, batch).argmax(1), [r for _, r in items])]
        return float(np.mean(agree)), agree

    xml = out.with_suffix(".xml")
    started = time.perf_counter()
    if args.reuse and xml.exists():  # re-measure an earlier run's model without quantizing again
        quantized, quantize_s = core.read_model(str(xml)), json.loads(out.read_text())["quantize_s"]
    else:
        quantized = nncf.quantize_with_accuracy_control(
            float_model,
            nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))]),
            nncf.Dataset([(held_out[i:i + 1], int(reference[i])) for i in range(len(held_out))]),
            validation_fn=validate, max_drop=0.01, drop_type=nncf.DropType.ABSOLUTE, subset_size=CALIBRATION)
        quantize_s = time.perf_counter() - started
        ov.save_model(quantized, str(xml))

    # Measured in f32 (what NNCF's accuracy control checked) and in the CPU plugin's default precision (what a
    # plain deployment runs: bf16 for the float layers on CPUs with AVX512-BF16/AMX).
    hint = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
    default = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    models = {"float": float_model, "NNCF accuracy control (int8, max drop 1 %)": quantized}
    models |= {f"file {path}": core.read_model(path) for path in args.compare}
    rows: dict[str, dict] = {}
    compiled: dict[str, Any] = {}
    for precision in dict.fromkeys(["f32", args.precision]):
        for name, model in models.items():
            label = f"{name}, {precision or default}"
            compiled[label] = core.compile_model(model, "CPU", config(args.threads, precision))
            predicted = predict(compiled[label], held_out).argmax(1)
            rows[label] = {"top1": float(np.mean(predicted == held_labels)),
                           "agreement": float(np.mean(predicted == reference)),
                           "precision": precision or default}
    for label, row in latency(compiled, images[:1], rounds=5).items():
        rows[label].update(row)
    result = {"nncf": nncf.__version__, "openvino": ov.get_version(), "threads": args.threads,
              "metric": "top-1 agreement with the float model's predictions (f32, label-free), max_drop=0.01 absolute",
              "calibration_images": CALIBRATION, "held_out_images": len(held_out), "model": str(model_path),
              "quantized_model": str(xml), "fake_quantize_ops": fake_quantize_count(quantized),
              "quantize_s": round(quantize_s, 1), "rows": rows}
    out.write_text(json.dumps(result, indent=2))
    print(f"| model, precision | top-1 (436 held out) | agreement | latency ms (OpenVINO, {args.threads} threads) |")
    print("|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['top1']:.4f} | {row['agreement']:.4f} | {row['latency_ms']:.2f} |")
    print(f"NNCF quantize_with_accuracy_control: {quantize_s:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
