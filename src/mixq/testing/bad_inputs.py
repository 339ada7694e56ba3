"""A catalogue of bad inputs and the one-line error each must produce.

Shared by the test that checks every message (``tests/cli/test_bad_input.py``) and by the script
that writes the table in ``docs/bad-input.md``, so the documentation cannot drift from the code.
Each case builds its files in a scratch folder and returns the ``mixq`` arguments to run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np
from PIL import Image

GOOD_MODEL = """
from mixq.backends.torch.testing import TinyConvNet

def build():
    return TinyConvNet().eval()
"""


@dataclass(frozen=True)
class BadInput:
    """One bad input: what it is, how to make it, and words the error message must contain."""

    name: str
    build: Callable[[Path], list[str]]
    expect: str


def _model(folder: Path, body: str = GOOD_MODEL, name: str = "model.py") -> str:
    path = folder / name
    path.write_text(body)
    return f"{path}:build"


def _npz(folder: Path, n: int = 8, size: int = 16) -> str:
    path = folder / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), y=rng.integers(0, 10, n))
    return str(path)


def _images(folder: Path, sizes: tuple[int, ...] = (16, 16, 16)) -> Path:
    images = folder / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for index, size in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(images / f"img{index}.png")
    return images


def _search(model: str, data: str, folder: Path, *extra: str, budget: str = "bops<=0.5") -> list[str]:
    return ["search", model, "--data", data, "--budget", budget, "--out", str(folder / "run"), "-q", *extra]


def _syntax_error(tmp: Path) -> list[str]:
    return _search(_model(tmp, "def build(:\n"), _npz(tmp), tmp)


def _truncated_onnx(tmp: Path) -> list[str]:
    path = tmp / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x05")  # the first bytes of a real file, cut short
    return ["eval", str(path), "--float", "--data", _npz(tmp), "-q"]


def _factory_raises(tmp: Path) -> list[str]:
    return _search(_model(tmp, "def build():\n    raise RuntimeError('weights file missing')\n"), _npz(tmp), tmp)


def _wrapping_model(forward: str) -> str:
    """A model file whose module wraps TinyConvNet as ``self.net`` with the given forward body."""
    return ("import torch\nfrom mixq.backends.torch.testing import TinyConvNet\n\n"
            "class Wrapped(torch.nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n        self.net = TinyConvNet()\n"
            f"    def forward(self, x):\n        {forward}\n\n"
            "def build():\n    return Wrapped().eval()\n")


def _output_not_a_tensor(tmp: Path) -> list[str]:
    return _search(_model(tmp, _wrapping_model("return {'label': 'cat'}")), _npz(tmp), tmp)


def _nan_output(tmp: Path) -> list[str]:
    return _search(_model(tmp, _wrapping_model("return self.net(x) * float('nan')")), _npz(tmp), tmp)


def _wrong_input_size(tmp: Path) -> list[str]:
    return _search(_model(tmp, _wrapping_model("return self.net(x.reshape(len(x), 3, 32, 32))")),
                   _npz(tmp), tmp)


def _nothing_to_quantize(tmp: Path) -> list[str]:
    body = ("import torch\n\ndef build():\n"
            "    return torch.nn.Sequential(torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())\n")
    return _search(_model(tmp, body), _npz(tmp), tmp)


def _empty_folder(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return _search(_model(tmp), str(tmp / "empty"), tmp)


def _unreadable_image(tmp: Path) -> list[str]:
    images = _images(tmp)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return _search(_model(tmp), str(images), tmp)


def _mixed_sizes(tmp: Path) -> list[str]:
    return _search(_model(tmp), str(_images(tmp, (16, 16, 20))), tmp)


def _unknown_precision(tmp: Path) -> list[str]:
    return _search(_model(tmp), _npz(tmp), tmp, "--candidates", "w4a8,int8")


def _drop_without_labels(tmp: Path) -> list[str]:
    return _search(_model(tmp), str(_images(tmp)), tmp, budget="drop<=1")


def _labels_with_npz(tmp: Path) -> list[str]:
    labels = tmp / "labels.csv"
    labels.write_text("file,class_index\n")
    return _search(_model(tmp), _npz(tmp), tmp, "--labels", str(labels))


def _infeasible(tmp: Path) -> list[str]:
    return _search(_model(tmp), _npz(tmp), tmp, "--candidates", "w4a8,w8a8", budget="bops<=0.1")


def _output_is_a_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("a file")
    args = _search(_model(tmp), _npz(tmp), tmp)
    args[args.index("--out") + 1] = str(tmp / "taken" / "run")
    return args


def _unknown_plan(tmp: Path) -> list[str]:
    return ["eval", _model(tmp), "--plan", str(tmp / "nowhere" / "plan.json"), "--data", _npz(tmp), "-q"]


# part I: inputs that lie, real files refused, late or slow defaults
def _factory_exits(tmp: Path) -> list[str]:
    return _search(_model(tmp, "import sys\n\ndef build():\n    sys.exit(0)\n"), _npz(tmp), tmp)


def _factory_hangs(tmp: Path) -> list[str]:
    body = "import threading\n\ndef build():\n    threading.Event().wait()\n"
    return _search(_model(tmp, body), _npz(tmp), tmp, "--load-timeout", "0.5")


def _float_image_out_of_range(tmp: Path) -> list[str]:
    images = tmp / "images"
    images.mkdir()
    for index in range(2):
        Image.fromarray(np.full((16, 16), 3.0 + index, np.float32)).save(images / f"img{index}.tif")
    return _search(_model(tmp), str(images), tmp)


def _nondeterministic_model(tmp: Path) -> list[str]:
    body = _wrapping_model("out = self.net(x)\n        return out + torch.randn_like(out)")
    body += "\ntorch.manual_seed(0)  # random from run to run, but the same draws every time (docs stay stable)\n"
    return _search(_model(tmp, body), _npz(tmp), tmp)


def _fallback_without_target(tmp: Path) -> list[str]:
    return _search(_model(tmp), _npz(tmp), tmp, "--solver", "fallback")


# -- part W: safe writes and one run at a time ---------------------------------------------------------

def _export(tmp: Path, output: str | None = None) -> list[str]:
    """``mixq export`` of a (stand-in) float model; the output path is checked before anything is read."""
    model, plan = tmp / "model.onnx", tmp / "plan.json"
    model.write_bytes(b"the user's float model")
    plan.write_text("{}")
    return ["export", str(model), "--data", _npz(tmp), "--plan", str(plan), "-o", output or str(model), "-q"]


def _export_over_model(tmp: Path) -> list[str]:
    return _export(tmp)


def _export_over_plan(tmp: Path) -> list[str]:
    return _export(tmp, str(tmp / "plan.json"))


def _export_over_data(tmp: Path) -> list[str]:
    return _export(tmp, str(tmp / "data.npz"))


def _export_to_folder(tmp: Path) -> list[str]:
    (tmp / "exports").mkdir()
    return _export(tmp, str(tmp / "exports"))


def _export_under_proc(tmp: Path) -> list[str]:
    return _export(tmp, "/proc/mixq-model.onnx")


def _export_under_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("a file")
    return _export(tmp, str(tmp / "taken" / "model.onnx"))


def _out_with_users_files(tmp: Path) -> list[str]:
    mine = tmp / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"learning_rate": 0.1}\n')
    args = _search(_model(tmp), _npz(tmp), tmp)
    args[args.index("--out") + 1] = str(mine)
    return args


def _resume_with_other_settings(tmp: Path) -> list[str]:
    earlier = tmp / "earlier"
    earlier.mkdir()
    (earlier / "config.json").write_text('{"mixq_version": "0.1.0"}\n')
    (earlier / "measurement_key.json").write_text('{"seed": 12345}\n')
    args = _search(_model(tmp), _npz(tmp), tmp)
    args[args.index("--out") + 1] = str(earlier)
    return args


CASES: tuple[BadInput, ...] = (
    BadInput("model file with a syntax error", _syntax_error, "SyntaxError"),
    BadInput("truncated .onnx file", _truncated_onnx, "onnx"),
    BadInput("factory that raises", _factory_raises, "weights file missing"),
    BadInput("model output is not a tensor", _output_not_a_tensor, "output"),
    BadInput("model output contains NaN/Inf", _nan_output, "NaN"),
    BadInput("model with nothing to quantize", _nothing_to_quantize, "no quantizable op"),
    BadInput("empty data folder", _empty_folder, "no images"),
    BadInput("unreadable image", _unreadable_image, "broken.jpg"),
    BadInput("images of different sizes", _mixed_sizes, "same shape"),
    BadInput("input size the model cannot take", _wrong_input_size, "cannot run on the data"),
    BadInput("unknown precision string", _unknown_precision, "int8"),
    BadInput("accuracy-drop budget without labels", _drop_without_labels, "labels"),
    BadInput("contradictory flags: --labels with an .npz", _labels_with_npz, "labels"),
    BadInput("budget below the cheapest configuration", _infeasible, "cheapest configuration reaches"),
    BadInput("output directory that cannot be written", _output_is_a_file, "choose another --out"),
    BadInput("plan file that does not exist", _unknown_plan, "does not exist"),
    # part I
    BadInput("model factory that calls sys.exit(0)", _factory_exits, "sys.exit(0)"),
    BadInput("model factory that never returns", _factory_hangs, "did not finish loading"),
    BadInput("float TIFF with values outside [0, 1]", _float_image_out_of_range, "[0, 1]"),
    BadInput("model whose output changes from run to run", _nondeterministic_model, "--nondeterministic average"),
    BadInput("--solver fallback with only a cost budget", _fallback_without_target, "quality target"),
)


# part S (validated boundaries): every file read is parsed by mixq.schema; numbers are range-checked.
def _labels(tmp: Path, row: str) -> list[str]:
    images = _images(tmp, (16,))
    (images / "labels.csv").write_text(f"file,class_index\nimg0.png,0\n{row}\n")
    (tmp / "outside.png").write_bytes(b"")  # exists: the message must not say so
    return _search(_model(tmp), str(images), tmp)


def _plan(tmp: Path, plan: dict[str, object] | bytes) -> list[str]:
    path = tmp / "plan.json"
    if isinstance(plan, bytes):
        path.write_bytes(plan)
    else:
        path.write_text(json.dumps({"schema_version": 2, "assignment": {"conv1": "w8a8"}, **plan}))
    return ["eval", _model(tmp), "--plan", str(path), "--data", _npz(tmp), "-q"]


def _plan_json_directory(tmp: Path) -> list[str]:
    (tmp / "old" / "plan.json").mkdir(parents=True)
    return ["eval", _model(tmp), "--plan", str(tmp / "old"), "--data", _npz(tmp), "-q"]


def _corrupt_key(tmp: Path, content: bytes) -> list[str]:
    old = tmp / "old"
    old.mkdir()
    (old / "measurement_key.json").write_bytes(content)
    args = _search(_model(tmp), _npz(tmp), tmp)
    args[args.index("--out") + 1] = str(old)
    return args


def _config_file_not_utf8(tmp: Path) -> list[str]:
    (tmp / "c.yaml").write_bytes(b"num_samples: \xff\n")
    return _search(_model(tmp), _npz(tmp), tmp, "--config-file", str(tmp / "c.yaml"))


def _hardware_not_utf8(tmp: Path) -> list[str]:
    (tmp / "npu.yaml").write_bytes(b"name: \xff\n")
    return _search(_model(tmp), _npz(tmp), tmp, "--hardware", str(tmp / "npu.yaml"))


CASES += (
    BadInput("labels.csv class index 10^23", lambda t: _labels(t, "x.png," + "1" + "0" * 23), "class_index"),
    BadInput("labels.csv row ../../x.png", lambda t: _labels(t, "../outside.png,1"), "outside the data folder"),
    BadInput("labels.csv row with an absolute path", lambda t: _labels(t, f"{t / 'outside.png'},1"),
             "outside the data folder"),
    BadInput("--cache-mb inf", lambda t: _search(_model(t), _npz(t), t, "--cache-mb", "inf"), "--cache-mb"),
    BadInput("--cache-mb nan", lambda t: _search(_model(t), _npz(t), t, "--cache-mb", "nan"), "finite number"),
    BadInput("--seed -1 --solver evolution",
             lambda t: _search(_model(t), _npz(t), t, "--seed", "-1", "--solver", "evolution"), "--seed must be"),
    BadInput("--budget agreement>=1.5", lambda t: _search(_model(t), _npz(t), t, budget="agreement>=1.5"),
             "write 99.5% or 0.995"),
    BadInput("--preprocess resize=99999999",
             lambda t: _search(_model(t), str(_images(t)), t, "--preprocess", "resize=99999999 crop=16"),
             "larger than 16384 pixels"),
    BadInput("plan.json whose assignment is a list", lambda t: _plan(t, {"assignment": ["conv1"]}),
             "assignment: input should be a valid dictionary"),
    BadInput("plan.json whose assignment is null", lambda t: _plan(t, {"assignment": None}),
             "assignment: input should be a valid dictionary"),
    BadInput("plan.json with precision 8", lambda t: _plan(t, {"assignment": {"conv1": 8}}),
             "assignment.conv1: a precision is text"),
    BadInput("plan.json with schema_version a string", lambda t: _plan(t, {"schema_version": "2"}),
             "schema_version must be a whole number"),
    BadInput("plan.json with provenance a string", lambda t: _plan(t, {"provenance": "me"}), "provenance:"),
    BadInput("plan.json that is not UTF-8", lambda t: _plan(t, b'{"assignment": {"\xff": "w8a8"}}'),
             "not UTF-8"),
    BadInput("RUN/plan.json that is a directory", _plan_json_directory, "is a directory"),
    BadInput("corrupt measurement_key.json", lambda t: _corrupt_key(t, b"{not json"), "measurement key"),
    BadInput("measurement_key.json that is not UTF-8", lambda t: _corrupt_key(t, b"\xff\xfe"), "not UTF-8"),
    BadInput("config file that is not UTF-8", _config_file_not_utf8, "not UTF-8"),
    BadInput("hardware file that is not UTF-8", _hardware_not_utf8, "not UTF-8"),
    # part W: safe writes and one run at a time
    BadInput("export -o over the float model it reads", _export_over_model, "one of the inputs"),
    BadInput("export -o over the plan it reads", _export_over_plan, "one of the inputs"),
    BadInput("export -o over the data it reads", _export_over_data, "one of the inputs"),
    BadInput("export -o an existing directory", _export_to_folder, "is a directory"),
    BadInput("export -o under /proc", _export_under_proc, "does not accept new files"),
    BadInput("export -o under a file", _export_under_file, "is a file"),
    BadInput("--out holding the user's own files (config.json)", _out_with_users_files, "not a mixq run directory"),
    BadInput("resume with other settings", _resume_with_other_settings, "other settings"),
)


# part S2: hardware descriptions, config files and .npz arrays through mixq.schema; scheme value types.
def _hardware_file(tmp: Path, text: str) -> list[str]:
    (tmp / "npu.yaml").write_text(text)
    return _search(_model(tmp), _npz(tmp), tmp, "--hardware", str(tmp / "npu.yaml"))


CASES += (
    BadInput("hardware kernels for op kind 'convolution'",
             lambda t: _hardware_file(t, "name: npu\nkernels: {convolution: [w8a8], default: [w8a8]}\n"),
             "unknown op kind 'convolution'; use conv"),
    BadInput("hardware kernels.conv a number", lambda t: _hardware_file(t, "name: npu\nkernels: {conv: 8}\n"),
             "kernels.conv: a list of precisions"),
    BadInput("hardware cost.bops", lambda t: _hardware_file(t, "name: npu\ncost: {bops: {default: {w8a8: 1}}}\n"),
             "cost: unknown keys ['bops']"),
    BadInput("hardware latency .nan",
             lambda t: _hardware_file(t, "name: npu\ncost: {latency: {default: {w8a8: .nan}}}\n"),
             "cost.latency.default.w8a8: must be positive"),
    BadInput("plan.json with weight_per_channel \"yes\"",
             lambda t: _plan(t, {"scheme": {"weight_per_channel": "yes"}}),
             "weight_per_channel must be true or false"),
    BadInput("plan.json with percentile \"high\"", lambda t: _plan(t, {"scheme": {"percentile": "high"}}),
             "percentile must be a number"),
)


def _config_file(tmp: Path, text: str) -> list[str]:
    (tmp / "c.yaml").write_text(text)
    return _search(_model(tmp), _npz(tmp), tmp, "--config-file", str(tmp / "c.yaml"))


CASES += (
    BadInput("config file num_samples: {a: 1}", lambda t: _config_file(t, "num_samples: {a: 1}\n"),
             "num_samples: must be one value (a number, text or true/false) or a list of them, not a mapping"),
    BadInput("config file budget: [[...]]", lambda t: _config_file(t, "budget: [[\"bops<=0.5\"]]\n"),
             "budget: a list here holds single values, not a list"),
    BadInput("config file solver_options: [{...}]", lambda t: _config_file(t, "solver_options: [{a: 1}]\n"),
             "solver_options: must be a mapping of option names"),
)


def _npz_with(tmp: Path, **arrays: np.ndarray) -> list[str]:
    np.savez(tmp / "bad.npz", **arrays)  # type: ignore[arg-type]
    return _search(_model(tmp), str(tmp / "bad.npz"), tmp)


CASES += (
    BadInput(".npz x with a NaN",
             lambda t: _npz_with(t, x=np.full((4, 3, 16, 16), np.nan, np.float32), y=np.zeros(4, np.int64)),
             "x holds NaN or infinite values"),
    BadInput(".npz x complex", lambda t: _npz_with(t, x=np.zeros((4, 3, 16, 16), np.complex64)),
             "x must be uint8 (NHWC images) or float"),
    BadInput(".npz y with fractions",
             lambda t: _npz_with(t, x=np.zeros((4, 16, 16, 3), np.uint8), y=np.array([0.5, 1, 2, 3])),
             "y must hold integer class indices"),
)


# part S3: the deployed-file workflow (issue #12). (A misspelt --runtime is refused by argparse with the
# registry's did-you-mean, like every registry-backed flag.)
CASES += (
    BadInput("--verify -1", lambda t: _search(_model(t), _npz(t), t, "--verify", "-1"),
             "--verify must be 0 (off) or a number of plans"),
    BadInput("--cost latency on a torch model", lambda t: _search(_model(t), _npz(t), t, "--cost", "latency",
                                                                  budget="latency<=0.5"),
             "export it to ONNX first"),
)

# issue #13 item 5: data-free calibration (--data synthetic) needs batch-norm statistics and an input size.
BATCHNORM_MODEL = """
from mixq.backends.torch.testing import BatchNormNet

def build():
    return BatchNormNet().eval()
"""


def _synthetic(tmp: Path, *extra: str, body: str = BATCHNORM_MODEL, budget: str = "bops<=0.5") -> list[str]:
    return _search(_model(tmp, body), "synthetic", tmp, "--synthetic-iterations", "2", *extra, budget=budget)


CASES += (
    BadInput("--data synthetic on a model without BatchNorm",
             lambda t: _synthetic(t, "--preprocess", "crop=16", body=GOOD_MODEL), "no BatchNorm layer"),
    BadInput("--data synthetic without the model's input size", lambda t: _synthetic(t), "needs the model's input size"),
    BadInput("--data synthetic with a drop<= target",
             lambda t: _synthetic(t, "--preprocess", "crop=16", budget="drop<=0.01"), "synthetic data"),
    BadInput("--data synthetic --synthetic-iterations 0",
             lambda t: _synthetic(t, "--preprocess", "crop=16", "--synthetic-iterations", "0"),
             "--synthetic-iterations"),
)
