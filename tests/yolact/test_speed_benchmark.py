"""Smoke test of benchmarks/yolact_speed.py: every variant it offers on this machine runs (a tiny input), and the
tables land in their docs section only."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "yolact_speed.py"


def test_speed_benchmark_runs_every_cpu_variant(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("yolact_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    md = tmp_path / "benchmarks.md"
    md.write_text("# B\nhuman text\n<!-- yolact-speed:begin -->\nold numbers\n<!-- yolact-speed:end -->\nmore\n")
    args = ["--device", "cpu", "--models", "yolact_resnet50", "--size", "64", "--iters", "1", "--warmup", "0",
            "--candidates", "300", "--md", str(md)]
    module.main(args)
    out = capsys.readouterr().out
    text = md.read_text()
    assert text.startswith("# B\nhuman text\n<!-- yolact-speed:begin -->\nMachine: ") and text.endswith(
        "<!-- yolact-speed:end -->\nmore\n")
    assert "old numbers" not in text and f"Command: `python benchmarks/yolact_speed.py {' '.join(args)}`" in text
    section = text.split("<!-- yolact-speed:begin -->")[1]
    assert all(line in section for line in out.splitlines() if line.startswith("| yolact_resnet50 |"))
    assert "failed" not in out, out
    rows = [line for line in out.splitlines() if line.startswith("| yolact_resnet50 |")]
    assert {"eager fp32", "channels-last"} <= {r.split("|")[3].strip() for r in rows}, out
    for method in ("Fast NMS (per class)", "Fast NMS (class-agnostic)", "standard NMS (batched_nms)"):
        assert f"| {method} |" in out, out
