"""Smoke test of benchmarks/yolact_speed.py: every variant it offers on this machine runs (a tiny input)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "yolact_speed.py"


def test_speed_benchmark_runs_every_cpu_variant(capsys):
    spec = importlib.util.spec_from_file_location("yolact_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--device", "cpu", "--models", "yolact_resnet50", "--size", "64", "--iters", "1",
                 "--warmup", "0", "--candidates", "300"])
    out = capsys.readouterr().out
    assert "failed" not in out, out
    rows = [line for line in out.splitlines() if line.startswith("| yolact_resnet50 |")]
    assert {"eager fp32", "channels-last"} <= {r.split("|")[3].strip() for r in rows}, out
    for method in ("Fast NMS (per class)", "Fast NMS (class-agnostic)", "standard NMS (batched_nms)"):
        assert f"| {method} |" in out, out
