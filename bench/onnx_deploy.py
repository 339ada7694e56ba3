"""Issue #3's figures: EfficientNet-Lite0 exported to ONNX, searched on the ONNX backend, deployed.

Steps (each writes OUT/onnx_<step>.json; run all or some with --steps):
- ``table1``: Table 1 of Pandey et al. on the ONNX backend (bench/table1.py's rows, through the CLI).
- ``ranking``: the torch backend's phase-1 table beside the ONNX backend's: Kendall tau, SQNR differences, and
  how many groups the two searches' plans put at the same precision (torch groups mapped to ONNX nodes).
- ``deploy``: float vs ONNX Runtime's own ``quantize_static`` (QDQ, per-channel, default settings) vs mixq
  exports (uniform W8A8; mixed W8A8/FP32 at a 99 % agreement target), each run for real in ONNX Runtime:
  top-1 on the 500 sample images, agreement with float, file size, latency (median, batch 1).
- ``tuneqn``: TuneQn's decremental walk on the ONNX backend, its fronts and chosen plan, exported and measured.

Usage: python bench/onnx_deploy.py [--threads 2] [--steps table1,ranking,deploy,tuneqn] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import table1  # noqa: E402  (bench/table1.py: the CLI runner and the Table-1 rows)

SHARED = table1.SHARED
DATA = SHARED / "imagenet-samples"
CALIBRATION = 64
#: The TF Lite recipe of mixq.backends.torch.zoo.efficientnet_lite, spelled out: an .onnx file carries no preprocessing.
PREPROCESS = "resize=256 crop=224 interpolation=bicubic mean=0.498,0.498,0.498 std=0.502,0.502,0.502"


def lite0_onnx(out: Path) -> Path:
    """EfficientNet-Lite0 as a user would export it: torch.onnx.export, opset 17, dynamic batch."""
    path = out / "lite0.onnx"
    if not path.exists():
        import torch

        from mixq.backends.torch.zoo.efficientnet_lite import efficientnet_lite0

        model, _ = efficientnet_lite0()
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), str(path), input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def search(model: str, run: Path, threads: int, *extra: str) -> float:
    shutil.rmtree(run, ignore_errors=True)
    pre = ("--preprocess", PREPROCESS) if model.endswith(".onnx") else ()
    _, seconds = table1.mixq("search", model, "--data", str(DATA), "--num-samples", str(CALIBRATION), *pre, *extra,
                             "--out", str(run), threads=threads)
    return seconds


# -- table 1 -----------------------------------------------------------------------------------------
def step_table1(onnx_path: Path, out: Path, threads: int) -> dict:
    table1.MODELS["lite0-onnx"] = {"model": str(onnx_path), "data": DATA, "label": "EfficientNet-Lite0 (ONNX)",
                                   "extra": ["--preprocess", PREPROCESS]}
    return table1.run_model("lite0-onnx", threads, out, CALIBRATION)


# -- ranking -----------------------------------------------------------------------------------------
def step_ranking(onnx_path: Path, out: Path, threads: int) -> dict:
    from scipy.stats import kendalltau


    budget = ("--candidates", "w4a8,w8a8,w8a16", "--budget", "bops<=0.375", "--eval-samples", "64")
    runs = {"torch": out / "rank-torch-run", "onnx": out / "rank-onnx-run"}
    seconds = {"torch": search("efficientnet-lite0", runs["torch"], threads, *budget),
               "onnx": search(str(onnx_path), runs["onnx"], threads, *budget)}
    timings = {k: json.loads((r / "timings.json").read_text()) for k, r in runs.items()}
    mapping = _torch_to_onnx(_data()[0][:1])
    tables = {k: {(row["group"], row["precision"]): row["sqnr_db"]
                  for row in json.loads((r / "sensitivity.json").read_text())} for k, r in runs.items()}
    pairs = [(value, tables["onnx"][(mapping[group], precision)]) for (group, precision), value in tables["torch"].items()]
    torch_values, onnx_values = np.array(pairs).T
    per_candidate = {}
    for precision in ("w4a8", "w8a8", "w8a16"):
        chosen = [(v, tables["onnx"][(mapping[g], p)]) for (g, p), v in tables["torch"].items() if p == precision]
        a, b = np.array(chosen).T
        per_candidate[precision] = {"kendall_tau": float(kendalltau(a, b).statistic),
                                    "max_abs_diff_db": float(np.max(np.abs(a - b))),
                                    "median_abs_diff_db": float(np.median(np.abs(a - b)))}
    plans = {k: json.loads((r / "plan.json").read_text())["assignment"] for k, r in runs.items()}
    same = sum(plans["onnx"][mapping[g]] == p for g, p in plans["torch"].items())
    return {"groups": len(mapping), "kendall_tau_all": float(kendalltau(torch_values, onnx_values).statistic),
            "max_abs_diff_db": float(np.max(np.abs(torch_values - onnx_values))),
            "per_candidate": per_candidate, "plan_same_precision": same, "plan_groups": len(plans["torch"]),
            "search_s": seconds, "phase1_s": {k: t.get("phase1_s") for k, t in timings.items()}}


def _torch_to_onnx(sample: np.ndarray) -> dict[str, str]:
    """Torch group -> ONNX group, by mixq's export mapping (weights and inputs); Lite0 maps one to one."""
    from mixq.backends.torch.export import map_model
    from mixq.backends.torch.zoo.efficientnet_lite import efficientnet_lite0

    groups = map_model(efficientnet_lite0()[0], sample).mapping.groups
    assert all(len(onnx_groups) == 1 for onnx_groups in groups.values()), groups
    return {torch_group: onnx_groups[0] for torch_group, onnx_groups in groups.items()}


# -- deploy ------------------------------------------------------------------------------------------
def _data():
    from mixq.data.loading import load_data
    from mixq.data.preprocess import Preprocess

    data = load_data(DATA, Preprocess.parse(PREPROCESS))
    return data.load(0, len(data)).astype(np.float32), data.labels


def measure(path: Path, images: np.ndarray, labels: np.ndarray, reference: np.ndarray | None,
            threads: int) -> dict:
    """Top-1, agreement with the float model's top-1, size and latency of one ONNX file, in ONNX Runtime."""
    import onnx
    import onnxruntime as ort

    from mixq.backends.onnx.export.checks import fused_ops

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: images[i:i + 50]})[0] for i in range(0, len(images), 50)])
    predicted = logits.argmax(1)
    proto = onnx.load(str(path))
    row = {"top1": float(np.mean(predicted == labels)), "file_bytes": path.stat().st_size,
           "fused": fused_ops(proto), "path": str(path)}
    if reference is not None:
        row["agreement"] = float(np.mean(predicted == reference.argmax(1)))
        row["sqnr_db"] = float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2)
                                             / np.sum((reference.astype(np.float64) - logits) ** 2)))
    return row | {"logits": logits}


def latencies(rows: dict[str, dict], image: np.ndarray, threads: int, rounds: int = 5) -> None:
    """Batch-1 latency of every row's file, measured in interleaved rounds (each the median of 100 runs
    after 10 warm-up runs): two shared cores drift, and interleaving spreads the drift over all files.
    Adds ``latency_ms`` (median over rounds) and ``latency_spread_ms`` (min and max round)."""
    import onnx

    from mixq.backends.onnx.export.checks import latency_ms

    protos = {label: onnx.load(row["path"]) for label, row in rows.items()}
    name = protos[next(iter(protos))].graph.input[0].name
    times: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(rounds):
        for label, proto in protos.items():
            times[label].append(latency_ms(proto, name, image, runs=100, warmup=10, threads=threads))
    for label, measured in times.items():
        rows[label]["latency_ms"] = float(np.median(measured))
        rows[label]["latency_spread_ms"] = [min(measured), max(measured)]


def quantize_static(onnx_path: Path, images: np.ndarray, out: Path) -> Path:
    """ONNX Runtime's own int8 quantization: QDQ, per-channel weights, otherwise its default settings."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static as ort_quantize
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": images[i:i + 1]} for i in range(CALIBRATION)])

        def get_next(self):
            return next(self.items, None)

    prepared = out / "lite0.pre.onnx"
    quant_pre_process(str(onnx_path), str(prepared))  # the pre-processing ORT's documentation asks for
    path = out / "lite0.ort-int8.onnx"
    ort_quantize(str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return path


def step_deploy(onnx_path: Path, out: Path, threads: int) -> dict:
    images, labels = _data()
    rows: dict[str, dict] = {}
    float_row = measure(onnx_path, images, labels, None, threads)
    reference = float_row.pop("logits")
    rows["float"] = float_row
    started = time.perf_counter()
    ort_path = quantize_static(onnx_path, images, out)
    rows["ORT quantize_static int8"] = measure(ort_path, images, labels, reference, threads) | {
        "quantize_s": round(time.perf_counter() - started, 1)}
    searches = {  # label: (run directory, flags)
        "mixq W8A8 (uniform)": ("deploy-w8a8", ("--candidates", "w8a8", "--budget", "bops<=1")),
        "mixq W8A8/FP32, agreement>=0.99 (BOPs cost)": (
            "deploy-agree-bops", ("--candidates", "w8a8,fp32", "--budget", "agreement>=0.99", "--eval-samples", "500")),
        "mixq W8A8/FP32, agreement>=0.99 (measured latency cost)": (
            "deploy-agree-latency", ("--candidates", "w8a8,fp32", "--budget", "agreement>=0.99", "--cost", "latency",
                                     "--eval-samples", "500")),
    }
    for label, (name, flags) in searches.items():
        run = out / (name + "-run")
        seconds = search(str(onnx_path), run, threads, *flags)
        target = run / "model.qdq.onnx"
        _, export_s = table1.mixq("export", str(onnx_path), "--plan", str(run / "plan.json"), "--data", str(DATA),
                                  "--preprocess", PREPROCESS, "-o", str(target), threads=threads)
        plan = json.loads((run / "plan.json").read_text())
        rows[label] = measure(target, images, labels, reference, threads) | {
            "search_s": round(seconds, 1), "export_s": round(export_s, 1), "counts": plan["precision_counts"],
            "costs": plan["costs"], "searched_quality": plan["quality"]}
        table = run / "latency_table.json"
        if table.exists():
            rows[label]["latency_table"] = {k: v for k, v in json.loads(table.read_text()).items() if k != "entries"}
        if "agreement" in label:  # the same plan written exactly as simulated
            exact = run / "model.exact.qdq.onnx"
            table1.mixq("export", str(onnx_path), "--plan", str(run / "plan.json"), "--data", str(DATA),
                        "--preprocess", PREPROCESS, "-o", str(exact), "--no-output-quantizers", threads=threads)
            rows[label + ", --no-output-quantizers"] = measure(exact, images, labels, reference, threads)
    latencies(rows, images[:1], threads)
    for row in rows.values():
        row.pop("logits", None)
    return rows


# -- tuneqn ------------------------------------------------------------------------------------------
def step_tuneqn(onnx_path: Path, out: Path, threads: int) -> dict:
    images, labels = _data()
    run = out / "tuneqn-onnx-run"
    seconds = search(str(onnx_path), run, threads, "--strategy", "tuneqn", "--candidates", "w8a8,fp32",
                     "--budget", "agreement>=0.99", "--eval-samples", "500")
    state = json.loads((run / "tuneqn.json").read_text())
    target = run / "model.qdq.onnx"
    table1.mixq("export", str(onnx_path), "--plan", str(run / "plan.json"), "--data", str(DATA), "--preprocess",
                PREPROCESS, "-o", str(target), threads=threads)
    rows = {"float": measure(onnx_path, images, labels, None, threads)}
    rows["tuneqn"] = measure(target, images, labels, rows["float"].pop("logits"), threads)
    latencies(rows, images[:1], threads)
    exported = rows["tuneqn"]
    exported.pop("logits")
    exported["float_latency_ms"] = rows["float"]["latency_ms"]
    plan = json.loads((run / "plan.json").read_text())
    return {"search_s": round(seconds, 1), "state": state, "exported": exported, "counts": plan["precision_counts"]}


STEPS = {"table1": step_table1, "ranking": step_ranking, "deploy": step_deploy, "tuneqn": step_tuneqn}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--out", default=str(table1.ROOT / "bench" / "out"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not DATA.exists():
        print(f"skipping: {DATA} not present", file=sys.stderr)
        return 0
    onnx_path = lite0_onnx(out)
    for step in args.steps.split(","):
        started = time.perf_counter()
        result = STEPS[step](onnx_path, out, args.threads)
        result_path = out / f"onnx_{step}.json"
        result_path.write_text(json.dumps(result, indent=2, default=float) + "\n")
        print(f"{step}: {time.perf_counter() - started:.0f} s -> {result_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
