"""Config files and hardware descriptions: undecodable bytes and wrong number types are ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixq.cli.configfile import read_config_file
from mixq.errors import ConfigError
from mixq.hardware import load_hardware


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_a_non_utf8_config_file_is_a_config_error(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    path.write_bytes(b"num_samples: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"--config-file .* is not UTF-8 text.*save it as UTF-8"):
        read_config_file(path)


def test_a_config_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        read_config_file(tmp_path / "c.yaml")


def test_a_non_utf8_hardware_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "npu.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(ConfigError, match="hardware description .*npu.yaml is not UTF-8 text"):
        load_hardware(path)


@pytest.mark.parametrize("value", ["'abc'", ".inf", ".nan", "true", "-1"])
def test_hardware_latency_must_be_a_finite_positive_number(tmp_path: Path, value: str) -> None:
    path = tmp_path / "npu.yaml"
    path.write_text(f"name: npu\nkernels: {{default: [w8a8]}}\ncost: {{latency: {{default: {{w8a8: {value}}}}}}}\n")
    with pytest.raises(ConfigError, match="cost.latency.default.w8a8: must be positive \\(a finite time per MAC"):
        load_hardware(path)


def test_hardware_restrictions_must_be_strings(tmp_path: Path) -> None:
    path = tmp_path / "npu.yaml"
    path.write_text("name: npu\nkernels: {default: [w8a8]}\nrestrictions: [1, 2]\n")
    with pytest.raises(ConfigError, match="`restrictions` must be a list of strings"):
        load_hardware(path)
