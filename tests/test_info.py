"""``nervana-lstm info``: the machine report and its error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import STACK

from nervana_lstm.errors import UsageError
from nervana_lstm.platform_info import ISA_FLAGS, check_supported, read_cpu_info

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16 amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16 amx_int8

processor\t: 2
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 1
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16 amx_int8
"""


def test_cpuinfo_parsing_counts_cores_threads_and_flags():
    cpu = read_cpu_info(CPUINFO, machine="x86_64")
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu.vendor == "GenuineIntel"
    assert (cpu.cores, cpu.threads) == (2, 3)
    assert all(cpu.flags[f] for f in ISA_FLAGS)


def test_cpu_without_amx_or_avx512():
    text = CPUINFO.replace("avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16 amx_int8", "")
    cpu = read_cpu_info(text, machine="x86_64")
    assert cpu.flags["avx2"] and not any(cpu.flags[f] for f in ISA_FLAGS if f != "avx2")
    check_supported(cpu)  # AVX2 is enough


def test_unsupported_platforms_are_usage_errors():
    with pytest.raises(UsageError, match="lacks AVX2"):
        check_supported(read_cpu_info(CPUINFO.replace("avx2 ", ""), machine="x86_64"))
    with pytest.raises(UsageError, match="targets x86-64 CPUs, but this machine is aarch64"):
        check_supported(read_cpu_info(CPUINFO, machine="aarch64"))


def test_info_json_describes_this_machine(cli):
    done = cli("info", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert set(info) >= {
        "schema",
        "platform",
        "cpu",
        "torch",
        "ipex",
        "openvino",
        "nncf",
        "backends",
        "threads",
    }
    flags = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert info["cpu"]["flags"] == {f: f in flags for f in ISA_FLAGS}
    assert info["torch"]["onednn_available"] is True
    assert info["openvino"]["usable"] is True
    assert info["openvino"]["cpu_default_inference_precision"] in {"bf16", "f32", "f16"}
    if info["cpu"]["flags"]["avx512_bf16"] or info["cpu"]["flags"]["amx_bf16"]:
        assert info["openvino"]["cpu_default_inference_precision"] == "bf16"
    if STACK == "ipex":
        assert info["ipex"] == {"version": "2.8.0", "usable": True, "reason": None}
    elif STACK == "stock":
        assert info["ipex"]["usable"] is False
        assert "not installed" in info["ipex"]["reason"]
    assert info["backends"]["ipex"]["available"] is info["ipex"]["usable"]


def test_info_text_mentions_every_part(cli):
    done = cli("info")
    assert done.returncode == 0, done.stderr
    for word in ("CPU", "ISA", "torch", "IPEX", "OpenVINO", "NNCF", "threads", "amx_tile="):
        assert word in done.stdout


def test_info_require_unknown_or_missing_backend(cli):
    done = cli("info", "--require", "cuda")
    assert done.returncode == 2
    assert "unknown backend 'cuda'; expected one of" in done.stderr
    assert "Traceback" not in done.stderr
    done = cli("info", "--require", "onednn,openvino")
    assert done.returncode == 0, done.stderr
    if STACK == "stock":
        done = cli("info", "--require", "ipex")
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "make venv" in done.stderr
