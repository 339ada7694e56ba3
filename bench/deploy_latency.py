"""Issue #12's figures: the fastest file within a quality target, judged as files in ONNX Runtime and OpenVINO.

Per model (EfficientNet-Lite0 and ResNet20, both as ONNX files exported with torch.onnx.export, opset 17) and
runtime (``onnxruntime``, ``openvino``), every file is run in the runtime, batch 1, 2 threads, all files
timed interleaved in one run (rotating order, median of rounds), and scored on test images no search saw:

- float: the ONNX file as exported;
- ORT int8: ``quant_pre_process`` + ``quantize_static`` (QDQ, per-channel, U8S8), ORT's recommended recipe;
- mixq uniform W8A8: ``mixq export MODEL --uniform w8a8``;
- mixq at ``agreement>=0.995`` and at ``drop<=0.5`` (labels): ``mixq search --candidates w8a8,fp32 --cost
  latency --runtime R`` (the deployed-graph latency model; the judge exports the best plans and returns the
  fastest file meeting the target on the dev images), the returned plan exported with ``mixq export``.

Data: Lite0 — the 500 ImageNet sample images; the first 128 are the dev set (the first 64 of them calibrate),
the other 372 are the test set. ResNet20 — CIFAR-10 test images 0-999 dev (first 64 calibrate), 1000-5999 test.

``--steps accuracy`` also measures the latency model itself: predicted vs measured wall time of >= 20 random
w8a8/fp32 plans per model and runtime, each exported and timed; median and worst relative error.

Usage: python bench/deploy_latency.py [--threads 2] [--models lite0,resnet20] [--runtimes onnxruntime,openvino]
       [--steps files,accuracy] [--plans 20] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import table1  # noqa: E402  (the CLI runner)

SHARED = table1.SHARED
LITE0_PREPROCESS = "resize=256 crop=224 interpolation=bicubic mean=0.498,0.498,0.498 std=0.502,0.502,0.502"
CALIBRATION = 64
TARGETS = {"agreement>=0.995": ("agreement>=0.995",), "drop<=0.5": ("drop<=0.5",)}


# -- models and data ---------------------------------------------------------------------------------
def _export(model, shape: tuple[int, ...], path: Path) -> Path:
    import torch

    if not path.exists():
        torch.onnx.export(model.eval(), torch.randn(1, *shape), str(path), input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def lite0(out: Path) -> tuple[Path, Path, Path]:
    """The ONNX file, the dev .npz (128 images, labels) and the test .npz (372 images)."""
    from mixq.backends.torch.zoo.efficientnet_lite import efficientnet_lite0
    from mixq.data.loading import load_data
    from mixq.data.preprocess import Preprocess

    onnx_path = _export(efficientnet_lite0()[0], (3, 224, 224), out / "lite0.onnx")
    dev, test = out / "lite0-dev.npz", out / "lite0-test.npz"
    if not test.exists():
        data = load_data(SHARED / "imagenet-samples", Preprocess.parse(LITE0_PREPROCESS))
        x, y = data.load(0, len(data)).astype(np.float32), np.asarray(data.labels)
        np.savez(dev, x=x[:128], y=y[:128])
        np.savez(test, x=x[128:], y=y[128:])
    return onnx_path, dev, test


def resnet20(out: Path) -> tuple[Path, Path, Path]:
    import models  # bench/models.py
    from mixq.data.loading import load_data

    model, preprocess = models.resnet20()
    onnx_path = _export(model, (3, 32, 32), out / "resnet20.onnx")
    dev, test = out / "resnet20-dev.npz", out / "resnet20-test.npz"
    if not test.exists():
        data = load_data(SHARED / "cifar10-test.npz", preprocess)
        x, y = data.load(0, 6000).astype(np.float32), np.asarray(data.labels)[:6000]
        np.savez(dev, x=x[:1000], y=y[:1000])
        np.savez(test, x=x[1000:], y=y[1000:])
    return onnx_path, dev, test


MODELS = {"lite0": lite0, "resnet20": resnet20}


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as arrays:
        return arrays["x"], arrays["y"]


# -- the files ---------------------------------------------------------------------------------------
def ort_int8(onnx_path: Path, dev: Path, out: Path) -> Path:
    """ONNX Runtime's own int8: ``quant_pre_process`` (its recommended pre-processing), then QDQ per-channel."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    x, _ = _npz(dev)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": x[i:i + 1]} for i in range(CALIBRATION)])

        def get_next(self):
            return next(self.items, None)

    pre = out / (onnx_path.stem + ".pre.onnx")
    path = out / (onnx_path.stem + ".ort-int8.onnx")
    if not path.exists():
        quant_pre_process(str(onnx_path), str(pre))
        quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return path


def build_files(key: str, runtime: str, out: Path, threads: int) -> dict[str, dict]:
    onnx_path, dev, _ = MODELS[key](out)
    files: dict[str, dict] = {"float": {"path": str(onnx_path)}}
    started = time.perf_counter()
    files["ORT int8 (quant_pre_process + quantize_static)"] = {"path": str(ort_int8(onnx_path, dev, out)),
                                                               "build_s": time.perf_counter() - started}
    uniform = out / f"{key}.mixq-w8a8.onnx"
    _, seconds = table1.mixq("export", str(onnx_path), "--uniform", "w8a8", "--data", str(dev), "-o", str(uniform),
                             threads=threads)
    files["mixq uniform W8A8"] = {"path": str(uniform), "build_s": seconds}
    for label, budget in TARGETS.items():
        run = out / f"{key}-{runtime}-{label.replace('>=', '-ge-').replace('<=', '-le-')}-run"
        shutil.rmtree(run, ignore_errors=True)
        _, search_s = table1.mixq("search", str(onnx_path), "--data", str(dev), "--num-samples", str(CALIBRATION),
                                  "--candidates", "w8a8,fp32", "--cost", "latency", "--runtime", runtime,
                                  "--budget", *budget, "--out", str(run), threads=threads)
        target = run / "model.qdq.onnx"
        _, export_s = table1.mixq("export", str(onnx_path), "--plan", str(run / "plan.json"), "--data", str(dev),
                                  "-o", str(target), threads=threads)
        plan = json.loads((run / "plan.json").read_text())
        verified = json.loads((run / "verified.json").read_text()) if (run / "verified.json").exists() else {}
        files[f"mixq {label}"] = {
            "path": str(target), "search_s": search_s, "export_s": export_s,
            "counts": {p: list(plan["assignment"].values()).count(p) for p in set(plan["assignment"].values())},
            "predicted_latency_ms": plan["costs"].get("latency", {}).get("value"),
            "dev_quality": {k: v for k, v in plan["quality"].items() if k != "file"},
            "dev_file": plan["quality"].get("file"), "judge_note": verified.get("note"),
            "judge_chosen": verified.get("chosen")}
    return files


def run_files(files: dict[str, dict], test: Path, runtime: str, threads: int, rounds: int = 7) -> None:
    """Latency (interleaved, batch 1) and test quality of every file, in ``runtime``."""
    from mixq.core.quality import measure_quality
    from mixq.runtimes import get_runtime
    from mixq.verify import time_interleaved

    from mixq.errors import MixqError

    x, y = _npz(test)
    engine = get_runtime(runtime)
    runners = {}
    for label, row in list(files.items()):
        try:
            runners[label] = engine.run_as_given(row["path"], x[:1], threads)
        except MixqError as exc:  # e.g. OpenVINO cannot compile a file: say so in the table, time the rest
            row["error"] = str(exc).splitlines()[0][:300]
            print(f"{label}: {row['error']}", file=sys.stderr)
    files_run = {label: files[label] for label in runners}
    outputs = {label: np.concatenate([run(x[i:i + 50]) for i in range(0, len(x), 50)])
               for label, run in runners.items()}
    reference = outputs["float"]
    for label, row in files_run.items():
        quality = measure_quality(outputs[label], reference, y)
        row.update(top1=quality.top1, agreement=quality.agreement, sqnr_db=quality.sqnr_db, test_images=len(x))
    measured = time_interleaved(list(runners.values()), x[:8], rounds=rounds, runs=48, warmup=8)
    for (label, row), samples in zip(files_run.items(), measured):
        row.update(latency_ms=float(statistics.median(samples)), latency_rounds_ms=samples)
    float_ms = files["float"]["latency_ms"]
    for row in files_run.values():
        row["x_float"] = row["latency_ms"] / float_ms


def step_files(key: str, runtime: str, out: Path, threads: int, plans: int) -> dict:
    files = build_files(key, runtime, out, threads)
    run_files(files, MODELS[key](out)[2], runtime, threads)
    return files


# -- the latency model's accuracy ---------------------------------------------------------------------
def step_accuracy(key: str, runtime: str, out: Path, threads: int, plans: int) -> dict:
    """Predicted vs measured latency of ``plans`` random w8a8/fp32 plans, each exported as ``mixq export`` writes
    it. The files and the float file are timed interleaved in one run (the machine's speed drifts by up to 2x
    over minutes, and interleaving exposes every file to the same drift); errors are given on milliseconds and
    on the ratio to the float file (the model's predicted ratio against the measured one)."""
    import tempfile

    import onnx

    from mixq.backends.onnx.deployed.model import float_proto, plan_proto, predict
    from mixq.core.precision import Precision, QuantScheme
    from mixq.prepared import prepare
    from mixq.runtimes import get_runtime
    from mixq.verify import time_interleaved

    onnx_path, dev, _ = MODELS[key](out)
    x, _ = _npz(dev)
    prepared = prepare(str(onnx_path), x[:CALIBRATION], ["w8a8", "fp32"], QuantScheme(), CALIBRATION, threads, None)
    started = time.perf_counter()
    if REFIT:  # fitted now, not loaded from the searches' cache: the model judged in the machine state it was made in
        from mixq.backends.onnx.deployed.model import fit_deployed

        model = fit_deployed(prepared.sim, prepared.calibration, runtime, threads, use_cache=False).model
    else:
        model = prepared.backend.measure_deployed_latency(prepared.sim, prepared.calibration, runtime=runtime,
                                                          threads=threads)
    model_s = time.perf_counter() - started
    rng = np.random.default_rng(1234)
    w8, fp = Precision.parse("w8a8"), Precision.parse("fp32")
    ids = prepared.graph.ids
    random_plans = []
    for _ in range(plans):
        share = rng.uniform(0.1, 0.9)  # from mostly float to mostly int8
        random_plans.append({g: (w8 if rng.random() < share else fp) for g in ids})
    engine = get_runtime(runtime)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "float.onnx"]
        onnx.save(float_proto(prepared.sim), str(paths[0]))
        for i, plan in enumerate(random_plans):
            paths.append(Path(tmp) / f"plan-{i}.onnx")
            onnx.save(plan_proto(prepared.sim, plan, prepared.calibration), str(paths[-1]))
        runners = [engine.run_as_given(str(p), x[:1], threads) for p in paths]
        measured = [float(statistics.median(m)) for m in time_interleaved(runners, x[:8], rounds=5, runs=24)]
    float_ms = measured[0]
    pairs = [(predict(model, plan), ms) for plan, ms in zip(random_plans, measured[1:])]
    errors = [abs(p - m) / m for p, m in pairs]
    ratio_errors = [abs(p / model.reference_ms - m / float_ms) / (m / float_ms) for p, m in pairs]
    return {"plans": len(pairs), "model_s": model_s, "probes": model.probes, "coverage": model.coverage(),
            "float_ms": float_ms, "model_reference_ms": model.reference_ms,
            "predicted_measured_ms": pairs, "median_rel_error": float(np.median(errors)),
            "worst_rel_error": float(np.max(errors)), "median_ratio_error": float(np.median(ratio_errors)),
            "worst_ratio_error": float(np.max(ratio_errors)),
            "rank_corr_spearman": _spearman([p for p, _ in pairs], [m for _, m in pairs])}


def _spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


STEPS = {"files": step_files, "accuracy": step_accuracy}
#: ``--refit``: the accuracy step fits its model anew instead of loading the one the searches cached.
REFIT = False


def markdown(results: dict) -> str:
    lines = []
    for name, by_runtime in results.items():
        key, step = name.rsplit(":", 1)
        if step == "accuracy-refit":
            key += " (model fitted right before)"
        for runtime, rows in by_runtime.items():
            if step == "files":
                lines += [f"\n### {key}, {runtime}\n", "| file | latency (ms) | x float | top-1 | agreement | "
                          "plan (w8a8/fp32) | search (s) |", "|---|---|---|---|---|---|---|"]
                for label, row in rows.items():
                    if "error" in row:
                        lines.append(f"| {label} | failed: {row['error'][:120]} | | | | | |")
                        continue
                    counts = row.get("counts")
                    plan = f"{counts.get('w8a8', 0)}/{counts.get('fp32', 0)}" if counts else ""
                    search_s = f"{row['search_s']:.0f}" if "search_s" in row else ""
                    agreement = 1.0 if row["agreement"] is None else row["agreement"]
                    lines.append(f"| {label} | {row['latency_ms']:.2f} | {row['x_float']:.2f} | "
                                 f"{100 * row['top1']:.1f} | {100 * agreement:.1f} | {plan} | {search_s} |")
            else:
                lines.append(f"\n{key}, {runtime}: {rows['plans']} random plans, median relative error "
                             f"{100 * rows['median_rel_error']:.1f} %, worst {100 * rows['worst_rel_error']:.1f} % "
                             f"(as ratios to the float file: median {100 * rows['median_ratio_error']:.1f} %, worst "
                             f"{100 * rows['worst_ratio_error']:.1f} %), Spearman {rows['rank_corr_spearman']:.2f}; "
                             f"model from {rows['probes']} probes in {rows['model_s']:.0f} s (float file "
                             f"{rows['float_ms']:.2f} ms, model's reference {rows['model_reference_ms']:.2f} ms)")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="lite0,resnet20")
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--steps", default="files,accuracy")
    parser.add_argument("--plans", type=int, default=20)
    parser.add_argument("--out", default=str(table1.ROOT / "bench" / "out"))
    parser.add_argument("--refit", action="store_true",
                        help="accuracy: fit the latency model anew right before timing the random plans "
                             "(results under STEP 'accuracy-refit')")
    args = parser.parse_args()
    global REFIT
    REFIT = args.refit
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not SHARED.exists():
        print(f"skipping: {SHARED} not present", file=sys.stderr)
        return 0
    result_path = out / "deploy_latency.json"
    results = json.loads(result_path.read_text()) if result_path.exists() else {}
    for step in args.steps.split(","):
        for key in args.models.split(","):
            for runtime in args.runtimes.split(","):
                started = time.perf_counter()
                rows = STEPS[step](key, runtime, out, args.threads, args.plans)
                name = f"{key}:{step}-refit" if step == "accuracy" and REFIT else f"{key}:{step}"
                results.setdefault(name, {})[runtime] = rows
                result_path.write_text(json.dumps(results, indent=2, default=float) + "\n")
                print(f"{step} {key} {runtime}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    (out / "deploy_latency.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
