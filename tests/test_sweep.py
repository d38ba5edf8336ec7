"""`mnetdeploy sweep`: the analysis on hand-made points, then a tiny real sweep (build, quantize, bench) that is
interrupted, resumed and rerun, with a stand-in executor for the build jobs."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from mnetdeploy import sweep as sw
from mnetdeploy.budgets import parse_budgets, quick_budgets
from mnetdeploy.cli import cli
from mnetdeploy.config import load_config


def row(alpha, res, precision, p50, macs, top1=None, threads=1, size_kb=100, device="host"):
    return {"point": f"v2_{alpha}_{res}", "alpha": alpha, "resolution": res, "precision": precision,
            "threads": threads, "device": device, "params": 1, "macs": macs, "size_bytes": size_kb * 1024,
            "p50_ms": p50, "p90_ms": p50 * 1.1, "top1": top1}


# ------------------------------------------------------------------------------------- analysis (no TF)

def test_frontier_keeps_exactly_the_non_dominated_points_per_thread_count():
    rows = [row(0.35, 96, "int8", 1.0, 10e6, 50), row(0.5, 96, "int8", 2.0, 20e6, 60),
            row(0.5, 96, "fp32", 3.0, 20e6, 59),      # slower and less accurate than the row above: dominated
            row(1.0, 224, "int8", 9.0, 300e6, 70),
            row(0.35, 128, "int8", 2.5, 15e6, 55),    # slower than 0.5/96 and less accurate: dominated
            row(0.35, 96, "int8", 0.6, 10e6, 50, threads=2)]   # another thread count: its own frontier
    assert sw.pareto_front(rows, "top1") == [0, 1, 3, 5]
    # Without accuracy, MACs stand for capacity: the same-MACs fp32 row is still dominated (slower).
    assert sw.pareto_front(rows, "macs") == [0, 1, 3, 5]
    assert sw.pareto_front([row(0.5, 96, "int8", 1.0, 20e6, 60), row(0.5, 96, "fp32", 1.0, 20e6, 60)], "top1") \
        == [0, 1]  # equal on both axes: neither dominates


def test_recommendation_is_the_most_accurate_fitting_row_and_says_why_others_failed():
    rows = [row(0.35, 96, "int8", 1.0, 10e6, 50, size_kb=500), row(0.5, 128, "int8", 2.0, 30e6, 60, size_kb=800),
            row(1.0, 224, "int8", 9.0, 300e6, 70, size_kb=3000), row(0.75, 160, "fp32", 4.0, 100e6, 66, size_kb=9000)]
    best, reason = sw.recommend(rows, quick_budgets(max_p50_ms=5, max_size_kb=1000), "top1")
    assert best == 1
    assert reason.startswith("0.5/128 int8 1thr: top-1 60.0 %") and "2 failed the budgets" in reason
    assert "(1 over p50, 2 over size)" in reason   # 1.0/224 breaks both budgets
    _, reason = sw.recommend(rows, quick_budgets(min_top1=65), "top1")
    assert "2 below top-1" in reason
    best, reason = sw.recommend(rows, quick_budgets(min_top1=65, max_size_kb=5000), "top1")
    assert best == 2
    best, reason = sw.recommend(rows, quick_budgets(max_p50_ms=5), "macs")   # no accuracy: most MACs that fits
    assert best == 3 and "the most capacity" in reason
    best, reason = sw.recommend(rows, quick_budgets(max_p50_ms=0.5), "top1")
    assert best is None and reason.startswith("no configuration meets the budgets")


def test_the_sweep_applies_the_gates_budgets_file_per_row():
    """A sweep takes the gate's budgets (selectors and limits, max_accuracy_drop against the point's fp32)."""
    budgets = parse_budgets("rules:\n  - name: int8 size\n    precision: int8\n    max_size: 600KB\n"
                            "  - name: int8 drop\n    artifact: '*_int8.*'\n    max_accuracy_drop: 5\n")
    rows = [row(0.5, 128, "fp32", 2.0, 30e6, 62, size_kb=2000), row(0.5, 128, "int8", 1.0, 30e6, 60, size_kb=500),
            row(0.35, 96, "fp32", 1.5, 10e6, 50, size_kb=1500), row(0.35, 96, "int8", 0.8, 10e6, 40, size_kb=700)]
    for r in rows:
        r["file"] = f"model_{r['precision']}.tflite"
    failures = sw.budget_failures(rows[3], budgets, rows)
    assert [f.split(" ")[0] for f in failures] == ["size", "drop"] and "(int8 drop)" in failures[1]
    assert sw.budget_failures(rows[1], budgets, rows) == [] and sw.budget_failures(rows[2], budgets, rows) == []
    best, reason = sw.recommend(rows, budgets, "top1")
    assert best == 0 and "1 failed the budgets (1 over size, 1 over drop)" in reason


def test_fit_recovers_the_line_and_flags_a_memory_bound_small_model():
    macs = [10e6, 50e6, 100e6, 200e6, 300e6]
    rows = [row(0.5, 128, "int8", 0.02 * m / 1e6 + 0.1, m) for m in macs]
    rows[0]["p50_ms"] = 0.9          # the smallest model: far slower than its MACs predict
    fits = sw.fit_latency(rows)
    assert len(fits) == 1 and fits[0]["a_ms_per_mmac"] > 0
    assert [d["row"] for d in fits[0]["departures"]] == [0]
    assert "memory-bound depthwise" in fits[0]["departures"][0]["note"]
    clean = sw.fit_latency([row(0.5, 128, "fp32", 0.03 * m / 1e6 + 0.2, m) for m in macs])[0]
    assert clean["a_ms_per_mmac"] == pytest.approx(0.03) and clean["b_ms"] == pytest.approx(0.2)
    assert clean["r2"] == pytest.approx(1.0) and clean["departures"] == []


def test_executors_run_every_job(tmp_path):
    jobs = [{"key": str(i)} for i in range(3)]
    assert sorted(r["key"] for r in sw.serial_executor(dict, jobs)) == ["0", "1", "2"]
    # The real process pool, spawned (TensorFlow is not fork-safe); `dict` pickles by reference.
    assert sorted(r["key"] for r in sw.process_executor(2)(dict, jobs)) == ["0", "1", "2"]


def test_device_locks_are_per_device():
    locks = sw.DeviceLocks()
    assert locks("host") is locks("host") and locks("host") is not locks("android:1")


@pytest.mark.parametrize("args, needle", [(["--alpha", "0"], "--alpha 0: Input should be greater than 0"),
                                          (["--res", "100"], "multiple of 32"),
                                          (["--precisions", "fp8"], "--precisions fp8: Input should be 'fp32'"),
                                          (["--alpha", "0.5,b"], "--alpha b: Input should be a valid number")])
def test_bad_grid_is_one_line_exit_2(tmp_path, args, needle):
    result = CliRunner().invoke(cli, ["sweep", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and needle in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "sweep.json").exists()


# ------------------------------------------------------------------------------------- a real tiny sweep

class Counting:
    """A stand-in executor (in this process, serially) that counts the points it prepares, and a wrapper
    around run_benchmark that counts benchmarks and checks that two never overlap."""

    def __init__(self):
        self.prepared: list[str] = []
        self.benchmarks = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def executor(self, fn, jobs):
        for job in jobs:
            self.prepared.append(job["key"])
            yield fn(job)

    def wrap(self, real):
        def bench(*args, **kwargs):
            with self.lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self.benchmarks += 1
            try:
                return real(*args, **kwargs)
            finally:
                with self.lock:
                    self.active -= 1
        return bench


GRID = sw.Grid("v2", (0.35, 0.5), (96, 128), ("fp32", "int8"), (1,))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import mnetdeploy.bench as bench

    out = tmp_path_factory.mktemp("sweep")
    base = load_config(None, {"quantize.num_calib": 8, "quantize.int8_graph": "cpu", "bench.runs": 10, "bench.min_seconds": 0,
                              "bench.warmup": 2})
    real = bench.run_benchmark
    runs = []
    try:
        for max_points in (1, None, None):   # interrupted after one point, resumed, rerun with nothing to do
            counting = Counting()
            bench.run_benchmark = counting.wrap(real)
            state = sw.run_sweep(base, GRID, sw.SweepOptions(out=out, executor=counting.executor,
                                                             max_points=max_points))
            runs.append((counting, json.loads(json.dumps(state))))
    finally:
        bench.run_benchmark = real
    return out, runs


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_redoing_finished_points(tiny):
    out, [(c1, s1), (c2, s2), (c3, s3)] = tiny
    assert len(c1.prepared) == 1 and c1.benchmarks == 2 and s1["timing"]["pending"] == 3
    assert len(s1["rows"]) == 2
    first = c1.prepared[0]
    assert first not in c2.prepared and len(c2.prepared) == 3 and c2.benchmarks == 3 * 2
    for key in ("prepared_at", "finished_at", "measurements"):   # the finished point was left alone
        assert s2["points"][first][key] == s1["points"][first][key]
    assert c3.prepared == [] and c3.benchmarks == 0 and s3["timing"]["pending"] == 0
    assert max(c.max_active for c in (c1, c2)) == 1              # never two benchmarks at once
    assert json.loads((out / "sweep.json").read_text())["rows"] == s3["rows"]


@pytest.mark.slow
def test_table_frontier_and_fit_of_a_real_sweep(tiny):
    _, runs = tiny
    state = runs[-1][1]
    rows = state["rows"]
    assert len(rows) == 2 * 2 * 2
    assert {(r["alpha"], r["resolution"], r["precision"]) for r in rows} == \
        {(a, r, p) for a in (0.35, 0.5) for r in (96, 128) for p in ("fp32", "int8")}
    assert all(r["p50_ms"] > 0 and r["macs"] > 0 and r["size_bytes"] > 0 and r["top1"] is None for r in rows)
    assert state["frontier"]["y"] == "macs" and "random weights" not in state["accuracy"]["note"]
    front = set(state["frontier"]["rows"])
    # Brute force: a row is on the frontier iff no other row is at least as fast with at least as many MACs.
    for i, r in enumerate(rows):
        beaten = any(o["p50_ms"] <= r["p50_ms"] and o["macs"] >= r["macs"] and
                     (o["p50_ms"] < r["p50_ms"] or o["macs"] > r["macs"]) for o in rows)
        assert (i in front) == (not beaten)
    assert max(rows, key=lambda r: (r["macs"], -r["p50_ms"])) in [rows[i] for i in front]
    fits = {f["precision"]: f for f in state["fit"]}
    assert set(fits) == {"fp32", "int8"}
    assert all(f["a_ms_per_mmac"] > 0 and f["n"] == 4 and f["r2"] > 0 for f in fits.values())


@pytest.mark.slow
def test_html_and_markdown_show_the_frontier(tiny):
    from mnetdeploy.report.html import EXTERNAL_REF

    out, runs = tiny
    state = runs[-1][1]
    page = (out / "sweep.html").read_text()
    assert "<svg" in page and "Pareto frontier" in page and not EXTERNAL_REF.search(page)
    for i in state["frontier"]["rows"]:
        r = state["rows"][i]
        assert f"{r['alpha']:g}/{r['resolution']} {r['precision']}" in page   # labelled in the plot
    md = (out / "sweep.md").read_text()
    assert md.count("◆") == len(state["frontier"]["rows"]) + 1 and "p50 = a · MACs + b" in md


@pytest.mark.slow
def test_a_narrower_rerun_into_the_same_folder_says_what_it_does_not_show(tiny):
    out, runs = tiny
    base = load_config(None, {"quantize.num_calib": 8, "quantize.int8_graph": "cpu", "bench.runs": 10, "bench.min_seconds": 0,
                              "bench.warmup": 2})
    narrow = sw.Grid("v2", (0.35,), (96, 128), ("fp32", "int8"), (1,))
    try:
        state = sw.run_sweep(base, narrow, sw.SweepOptions(out=out, executor=Counting().executor))
        assert len(state["rows"]) == 4 and len(state["points"]) == 4   # every point is kept in sweep.json
        assert state["outside_grid"] == (f"2 point(s) of an earlier, wider grid in {out} are kept in sweep.json "
                                         "but not shown (0.5/128, 0.5/96): rerun with that grid to show them, "
                                         "or use another out folder")
        assert state["outside_grid"] in (out / "sweep.html").read_text()
        assert state["outside_grid"] in (out / "sweep.md").read_text()
    finally:   # the other tests read the full grid's pages
        again = sw.run_sweep(base, GRID, sw.SweepOptions(out=out, executor=Counting().executor))
    assert again["outside_grid"] is None and len(again["rows"]) == 8


_executor_factory_calls = []


def counting_factory(jobs):
    """Named by --executor in the test below: proves the CLI hands build jobs to a pluggable engine."""
    _executor_factory_calls.append(jobs)
    return sw.serial_executor


@pytest.mark.slow
def test_cli_budgets_pick_the_expected_point_on_the_cached_sweep(tiny):
    out, runs = tiny
    rows = runs[-1][1]["rows"]
    limit = sorted(r["p50_ms"] for r in rows)[4]    # some rows fit, some do not
    expected = max((r for r in rows if r["p50_ms"] <= limit), key=lambda r: (r["macs"], -r["p50_ms"]))
    config = out.parent / "int8_graph_cpu.yaml"   # the fixture's graph (sweep has no flag for it)
    config.write_text("quantize:\n  int8_graph: cpu\n")
    result = CliRunner().invoke(cli, ["sweep", str(config), "--alpha", "0.35,0.5", "--res", "96,128", "--threads", "1",
                                      "--num-calib", "8", "--runs", "10", "--min-seconds", "0", "--warmup", "2",
                                      "--out", str(out), "--budget-latency-ms", str(limit), "--json",
                                      "--executor", "test_sweep:counting_factory", "--jobs", "3"])
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    assert state["timing"]["prepared_now"] == 0 and state["timing"]["benchmarked_now"] == 0   # all cached
    assert _executor_factory_calls == [3]
    chosen = state["rows"][state["recommendation"]["row"]]
    assert (chosen["point"], chosen["precision"]) == (expected["point"], expected["precision"])
    assert "failed the budgets" in state["recommendation"]["reason"]


@pytest.mark.slow
def test_with_pretrained_weights_and_data_the_frontier_trades_latency_for_top1(tmp_path, pretrained_v1,
                                                                             imagenet_sample):
    # The shared pretrained v1 0.25 fits any resolution (convolutions do not depend on it); the first 100
    # images calibrate int8, so evaluation skips them.
    base = tmp_path / "base.yaml"
    base.write_text("eval:\n  skip_first: 100\n  limit: 20\nquantize:\n  num_calib: 8\n  int8_graph: cpu\n"
                    "bench:\n  runs: 10\n  min_seconds: 0\n  warmup: 2\n")
    result = CliRunner().invoke(cli, ["sweep", str(base), "--arch", "v1", "--alpha", "0.25", "--res", "128,224",
                                      "--weights", str(pretrained_v1), "--data", str(imagenet_sample),
                                      "--min-top1", "20", "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    rows = state["rows"]
    assert state["accuracy"]["measured"] and state["frontier"]["y"] == "top1" and len(rows) == 4
    assert all(r["top1"] is not None for r in rows)
    assert max(r["top1"] for r in rows if r["resolution"] == 224) >= 30   # pretrained, not chance
    best = state["recommendation"]["row"]
    assert best is not None and rows[best]["top1"] == max(r["top1"] for r in rows)
    assert "MACs vs accuracy" in (tmp_path / "s" / "sweep.html").read_text()


def test_latencies_inside_the_noise_are_a_tie_won_by_the_smaller_file():
    # The sweep: fp32 0.004 ms faster than int8 (noise), int8 3.5x smaller.
    rows = [row(0.5, 128, "fp32", 0.412, 30e6, size_kb=900), row(0.5, 128, "int8", 0.416, 30e6, size_kb=257)]
    best, reason = sw.recommend(rows, quick_budgets(), "macs")
    assert best == 1
    assert "tied within 5 %" in reason and "0.5/128 fp32 1thr (0.412 ms, 900 KB)" in reason
    assert "chose the smallest file" in reason
    # A difference beyond the noise still goes to the faster.
    rows[0]["p50_ms"] = 0.30
    best, reason = sw.recommend(rows, quick_budgets(), "macs")
    assert best == 0 and "tied" not in reason and "the fastest of 2 equal on MACs" in reason
