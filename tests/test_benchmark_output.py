"""The benchmark_model output parser against every real output in ../shared/data, and synthetic edge cases.

Expected numbers were read off each fixture by hand (they are fixed, real pastes); microseconds in the text are
milliseconds here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mnetdeploy.devices.benchmark_output import (BenchmarkFailed, parse_benchmark_output,
                                                 parse_benchmark_runs)
from mnetdeploy.errors import UserError

OUTPUTS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark_model_outputs"
approx = pytest.approx


def fixture(name: str) -> str:
    if not OUTPUTS.is_dir():
        pytest.skip(f"real benchmark_model outputs not found at {OUTPUTS} (../shared/data beside the project)")
    return (OUTPUTS / name).read_text()


def failure_of(text: str) -> str:
    with pytest.raises(BenchmarkFailed) as info:
        parse_benchmark_output(text)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 1
    return message


# --- every real output -------------------------------------------------------------------------------------

def test_every_shared_output_has_a_test_here():
    if not OUTPUTS.is_dir():
        pytest.skip(f"real benchmark_model outputs not found at {OUTPUTS}")
    source = Path(__file__).read_text()
    untested = [p.name for p in sorted(OUTPUTS.glob("*.txt")) if f'"{p.name}"' not in source]
    assert not untested, f"fixtures without a test: {untested}"


def test_01_tf1_old_format():
    out = parse_benchmark_output(fixture("01_am57xx-tf1.12-old-format.txt"))
    assert out.version_format == "tflite-v1"
    assert out.count == 50
    assert out.mean_ms == approx(137.722)
    assert out.std_ms == approx(0.896)
    assert (out.min_ms, out.max_ms) == (approx(137.079), approx(143.416))
    assert out.init_ms == approx(4.452)
    assert out.first_ms == approx(146.161)        # the single warm-up run: count=1 curr=146161
    assert out.warmup_mean_ms == approx(146.161)
    assert out.percentiles == {}
    assert out.parameters["Num threads"] == "1"
    assert out.peak_memory_mb is None and out.op_profile is None


def test_02_tf2_xnnpack_percentiles_memory():
    out = parse_benchmark_output(fixture("02_am62x-tf2.20-xnnpack-p5-median.txt"))
    assert out.version_format == "tflite-v2"
    assert out.count == 50
    assert out.mean_ms == approx(899.641)
    assert out.std_ms == approx(1.549)
    assert (out.min_ms, out.max_ms) == (approx(898.007), approx(906.121))
    assert out.percentiles == {"p5": approx(898.333), "p50": approx(899.281), "p95": approx(904.305)}
    assert out.init_ms == approx(614.333)
    assert out.first_ms == approx(905.463)
    assert out.warmup_mean_ms == approx(905.463)
    assert (out.init_memory_mb, out.overall_memory_mb) == (approx(146.363), approx(150.141))
    assert out.peak_memory_mb is None
    assert out.delegates == ["XNNPACK"]
    assert out.delegation[0].execution == "partial"
    assert out.model_size_mb == approx(67.3128)


def test_03_op_profiling_scientific_notation():
    out = parse_benchmark_output(fixture("03_riscv-qemu-op-profiling-tf2.txt"))
    assert out.count == 50
    assert out.mean_ms == approx(2950.34)           # avg=2.95034e+06 us
    assert out.std_ms == approx(109.798)
    assert (out.min_ms, out.max_ms) == (approx(2727.568), approx(3189.954))
    assert out.first_ms == approx(3512.391)
    assert out.warmup_mean_ms == approx(3512.39)    # Warmup (avg): 3.51239e+06
    assert out.init_ms == approx(17.187)
    assert (out.init_memory_mb, out.overall_memory_mb) == (approx(4.21094), approx(46.0859))
    # The regular runs' Run Order table, not the initialization profile (one AllocateTensors row).
    rows = out.op_profile
    assert len(rows) == 31
    assert (rows[0].node_type, rows[0].avg_ms, rows[0].percent, rows[0].start_ms) == \
        ("CONV_2D", approx(60.957), approx(2.066), approx(0.066))
    assert rows[0].name == "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0"
    assert (rows[-1].node_type, rows[-1].avg_ms, rows[-1].times_called) == ("SOFTMAX", approx(0.233), 1)


def test_04_old_format_no_stats_slow_board():
    out = parse_benchmark_output(fixture("04_zedboard-armv7-old-format-no-stats.txt"))
    assert out.version_format == "tflite-v1"
    assert out.count == 50
    assert out.mean_ms == approx(747.733)
    assert out.std_ms == approx(0.293)
    assert (out.min_ms, out.max_ms) == (approx(747.331), approx(748.577))
    assert out.init_ms == approx(21.039)
    assert out.warmup_mean_ms == approx(751.932)
    assert out.parameters["Min runs duration (seconds)"] == "1"


def test_05_info_prefix_memory():
    out = parse_benchmark_output(fixture("05_linux-cmake-tf2.13-info-prefix-memory.txt"))
    assert out.count == 50
    assert out.mean_ms == approx(116.066)
    assert out.std_ms == approx(1.906)
    assert (out.min_ms, out.max_ms) == (approx(111.222), approx(121.324))
    assert out.init_ms == approx(0.53)
    assert out.first_ms == approx(124.02)
    assert out.warmup_mean_ms == approx(117.225)
    assert (out.init_memory_mb, out.overall_memory_mb) == (approx(3.75), approx(12.1914))
    assert out.delegates == [] and out.percentiles == {}


def test_06_missing_op_fails_with_the_tools_words():
    message = failure_of(fixture("06_fail-didnt-find-op-mul-v5.txt"))
    assert "Didn't find op for builtin opcode 'MUL' version '5'" in message
    assert "Failed to initialize the interpreter" in message


def test_07_xnnpack_apply_failure():
    message = failure_of(fixture("07_android-arm64-fail-apply-xnnpack.txt"))
    assert "Failed to apply XNNPACK delegate." in message


def test_08_readme_op_profile_tables_and_inference_label():
    out = parse_benchmark_output(fixture("08_tf-readme-op-profiling-tab-tables.txt"))
    assert out.version_format == "tflite-v1"
    assert out.mean_ms == approx(79.7609)          # "Inference: 79760.9"
    assert out.init_ms == approx(38.467)
    assert out.warmup_mean_ms == approx(83.235)
    assert out.count is None and out.std_ms is None  # only the summary line reports the measured runs
    assert any("only the closing summary" in w for w in out.warnings)
    assert len(out.op_profile) == 31
    assert (out.op_profile[0].node_type, out.op_profile[0].avg_ms) == ("CONV_2D", approx(4.269))
    assert out.op_profile[-1].node_type == "SOFTMAX"


def test_09_litert_results_block_and_profiler_without_start_column():
    out = parse_benchmark_output(fixture("09_litert-benchmark-model-android-sme2-profiler.txt"))
    assert out.version_format == "litert-benchmark"
    # The microsecond stats line is preferred to the block's rounded "0.46 ms (2112 runs)".
    assert out.count == 2112
    assert out.mean_ms == approx(0.464545)
    assert out.std_ms == approx(0.013)
    assert (out.min_ms, out.max_ms) == (approx(0.442), approx(0.979))
    assert out.percentiles == {"p5": approx(0.46), "p50": approx(0.462), "p95": approx(0.478)}
    assert out.init_ms == approx(4.478)
    assert out.first_ms == approx(1.033)
    assert (out.init_memory_mb, out.overall_memory_mb) == (approx(8.94), approx(11.51))
    assert out.peak_memory_mb is None              # "Peak memory usage not available."
    assert out.delegation[0].delegate == "XNNPACK"
    assert (out.delegation[0].nodes_delegated, out.delegation[0].nodes_total) == (1, 1)
    assert out.warnings == []                      # block and stats line agree within the block's rounding
    assert [r.node_type for r in out.op_profile][:3] == \
        ["LiteRT::Run[buffer registration]", "AllocateTensors", "Static Reshape (NC)"]
    assert out.op_profile[3].percent == approx(92.948) and out.op_profile[3].start_ms is None


def test_10_tail_only_scientific_notation():
    out = parse_benchmark_output(fixture("10_android-tail-only-paste-sci-notation.txt"))
    assert out.mean_ms == approx(30249.6)          # 3.02496e+07 us
    assert out.init_ms == approx(58.937)
    assert out.first_ms == approx(28950.882)
    assert out.warmup_mean_ms == approx(28950.9)
    assert out.count is None
    assert (out.init_memory_mb, out.overall_memory_mb) == (approx(27.5234), approx(357.723))


def test_11_gpu_delegate_complete():
    out = parse_benchmark_output(fixture("11_qcom-rb1-gpu-delegate-opencl.txt"))
    assert out.count == 50
    assert out.mean_ms == approx(115.246)
    assert out.std_ms == approx(1.329)
    assert out.percentiles["p50"] == approx(115.35)
    assert out.init_ms == approx(1361.236)
    assert out.first_ms == approx(125.113)
    assert out.warmup_mean_ms == approx(115.344)
    assert out.delegates == ["GPU"]
    assert out.delegation[0].execution == "complete"


def test_12_segfault_after_unconsumed_flag():
    message = failure_of(fixture("12_android-pixel4-segfault-unconsumed-flag.txt"))
    assert "Unconsumed cmdline flags: -use-gpu=true" in message
    assert "Segmentation fault" in message


def test_13_run_model_with_lost_first_character():
    out = parse_benchmark_output(fixture("13_litert-run-model-sc8380xp-first-char-lost.txt"))
    assert out.version_format == "litert-run-model"
    assert out.mean_ms == approx(0.835)
    assert out.first_ms == approx(2.072)
    assert (out.min_ms, out.max_ms) == (approx(0.782), approx(2.072))
    assert out.count is None and out.std_ms is None


def test_14_run_model_timing_lines_only():
    out = parse_benchmark_output(fixture("14_litert-run-model-sm8850-fastvlm.txt"))
    assert out.version_format == "litert-run-model"
    assert out.mean_ms == approx(10.553)
    assert out.first_ms == approx(76.833)
    assert (out.min_ms, out.max_ms) == (approx(9.073), approx(76.833))


def test_15_logcat_line_tf2_summary():
    out = parse_benchmark_output(fixture("15_logcat-one-line-tflite-prefix-tf2.txt"))
    assert out.version_format == "tflite-v2"
    assert out.mean_ms == approx(14.5752)
    assert out.init_ms == approx(5.685)
    assert out.first_ms == approx(18.535)
    assert out.warmup_mean_ms == approx(14.4623)


def test_16_logcat_line_old_format():
    out = parse_benchmark_output(fixture("16_logcat-one-line-old-format-apk.txt"))
    assert out.version_format == "tflite-v1"
    assert out.mean_ms == approx(80.6601)
    assert out.init_ms == approx(4.108)
    assert out.warmup_mean_ms == approx(91.471)
    assert out.first_ms is None


def test_17_session_with_a_failed_run_returns_the_last_success():
    text = fixture("17_android-termux-session-fail-allocate-tensors.txt")
    runs = parse_benchmark_runs(text)
    assert [run.ok for run in runs] == [True, False, True, True]
    assert runs[0].output.count == 1000 and runs[0].output.mean_ms == approx(63.7432)
    assert runs[0].output.percentiles["p50"] == approx(51.891)
    assert "Failed to allocate tensors!" in runs[1].error
    assert "Node number 57 (BATCH_MATMUL) failed to prepare." in runs[1].error
    with pytest.raises(BenchmarkFailed, match="BATCH_MATMUL"):
        runs[1].result()
    assert runs[2].output.mean_ms == approx(42.3948)

    out = parse_benchmark_output(text)
    assert out.count == 24
    assert out.mean_ms == approx(42.4354)
    assert out.std_ms == approx(0.147)
    assert out.percentiles == {"p5": approx(42.232), "p50": approx(42.405), "p95": approx(42.729)}
    assert out.init_ms == approx(143.669)
    assert out.first_ms == approx(72.635)
    assert out.warmup_mean_ms == approx(43.5362)
    assert (out.delegation[0].nodes_delegated, out.delegation[0].nodes_total) == (2136, 2168)


def test_18_logcat_prefixes_and_partial_xnnpack():
    out = parse_benchmark_output(fixture("18_android-logcat-tflite-tag-timestamps.txt"))
    assert out.count == 25
    assert out.mean_ms == approx(145.528)
    assert out.std_ms == approx(13.583)
    assert (out.min_ms, out.max_ms) == (approx(140.071), approx(195.121))
    assert out.percentiles == {"p5": approx(140.545), "p50": approx(141.253), "p95": approx(187.533)}
    assert out.init_ms == approx(92.318)
    assert out.first_ms == approx(235.158)
    assert out.warmup_mean_ms == approx(211.669)
    assert (out.init_memory_mb, out.overall_memory_mb) == (approx(54.2852), approx(73.4102))
    fact = out.delegation[0]
    assert (fact.delegate, fact.nodes_delegated, fact.nodes_total, fact.partitions) == ("XNNPACK", 539, 548, 19)
    assert out.parameters["Num threads"] == "4"


def test_19_gpu_and_nnapi_together():
    out = parse_benchmark_output(fixture("19_android-adb-gpu-plus-nnapi-two-delegates.txt"))
    assert out.count == 50
    assert out.mean_ms == approx(309.35)
    assert out.init_ms == approx(5664.363)
    assert out.first_ms == approx(328.14)
    assert out.delegates == ["GPU", "NNAPI"]
    gpu, nnapi = out.delegation
    assert (gpu.nodes_delegated, gpu.nodes_total, gpu.execution) == (49, 49, "complete")
    assert nnapi.execution == "none"


# --- synthetic edge cases --------------------------------------------------------------------------------

TF2_RUN = """\
INFO: STARTING!
INFO: Num threads: [2]
INFO: Graph: [/data/local/tmp/m.tflite]
INFO: Loaded model /data/local/tmp/m.tflite
INFO: The input model file size (MB): 0.1
INFO: Initialized session in 1.25ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=3 first=2100 curr=1900 min=1900 max=2100 avg=2000 std=81 p5=1900 median=2000 p95=2100
INFO: Running benchmark for at least 10 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=10 first=1500 curr=1400 min=1300 max=1700 avg=1450.5 std=120 p5=1300 median=1420 p95=1700
INFO: Inference timings in us: Init: 1250, First inference: 2100, Warmup (avg): 2000, Inference (avg): 1450.5
INFO: Memory footprint delta from the start of the tool (MB): init=1.5 overall=2.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 3.75
"""


def test_synthetic_complete_run():
    out = parse_benchmark_output(TF2_RUN)
    assert (out.count, out.mean_ms, out.std_ms, out.min_ms, out.max_ms) == \
        (10, approx(1.4505), approx(0.12), approx(1.3), approx(1.7))
    assert out.percentiles == {"p5": approx(1.3), "p50": approx(1.42), "p95": approx(1.7)}
    assert (out.init_ms, out.first_ms, out.warmup_mean_ms) == (approx(1.25), approx(2.1), approx(2.0))
    assert (out.init_memory_mb, out.overall_memory_mb, out.peak_memory_mb) == (1.5, 2.25, 3.75)
    assert out.warnings == []


@pytest.mark.parametrize("text", ["", "\n\n   \n"])
def test_empty_output_fails(text):
    assert "printed nothing" in failure_of(text)


def test_output_cut_after_the_warmup_fails():
    cut = TF2_RUN[:TF2_RUN.index("INFO: Running benchmark for at least 10")]
    message = failure_of(cut)
    assert "ends before the measured runs" in message
    assert "count=3" in message                    # quotes where the output stopped


def test_output_cut_before_the_summary_keeps_the_measured_runs_with_a_warning():
    cut = TF2_RUN[:TF2_RUN.index("INFO: Inference timings")]
    out = parse_benchmark_output(cut)
    assert (out.count, out.mean_ms) == (10, approx(1.4505))
    assert any("no closing summary" in w for w in out.warnings)


def test_output_with_only_the_tool_banner_fails():
    assert "ends before the measured runs" in failure_of("INFO: STARTING!\nINFO: Graph: [m.tflite]\n")


def test_unrecognised_text_fails_quoting_the_last_line():
    assert "last line: 'hello world'" in failure_of("some banner\nhello world\n")


@pytest.mark.parametrize("avg", ["0", "nan", "-5"])
def test_zero_or_nonsense_mean_is_never_a_result(avg):
    text = TF2_RUN.replace("avg=1450.5", f"avg={avg}").replace("Inference (avg): 1450.5", f"Inference (avg): {avg}")
    assert "no usable mean latency" in failure_of(text)


def test_error_line_fails_the_run_even_if_timings_follow():
    text = TF2_RUN.replace("INFO: Initialized session",
                           "ERROR: Attempting to use a delegate that only supports static-sized tensors\n"
                           "INFO: Initialized session")
    assert "only supports static-sized tensors" in failure_of(text)


def test_shell_errors_are_failures():
    assert "not found" in failure_of("/system/bin/sh: /data/local/tmp/benchmark_model: not found\n")
    assert "CANNOT LINK EXECUTABLE" in failure_of(
        'CANNOT LINK EXECUTABLE "./benchmark_model": library "libOpenCL.so" not found\n')


def test_last_run_failing_after_a_success_is_reported_as_a_warning():
    text = TF2_RUN + "INFO: STARTING!\nERROR: Could not open '/x.tflite'.\nINFO: Benchmarking failed.\n"
    out = parse_benchmark_output(text)
    assert out.mean_ms == approx(1.4505)
    assert any("Could not open '/x.tflite'." in w for w in out.warnings)


def test_summary_contradicting_the_stats_line_is_flagged():
    text = TF2_RUN.replace("Inference (avg): 1450.5", "Inference (avg): 1999")
    out = parse_benchmark_output(text)
    assert out.mean_ms == approx(1.4505)
    assert any("differs" in w for w in out.warnings)


def test_logcat_brief_format_and_error_severity():
    text = "\n".join("I/tflite  ( 4242): " + line[len("INFO: "):] for line in TF2_RUN.splitlines())
    assert parse_benchmark_output(text).mean_ms == approx(1.4505)
    failing = text + "\nE/tflite  ( 4242): Node number 3 (CONV_2D) failed to invoke.\n"
    assert "Node number 3 (CONV_2D) failed to invoke." in failure_of(failing)


def test_single_measured_run_prints_only_curr():
    text = ("Running benchmark for at least 1 iterations and at least 0.5 seconds\ncount=1 curr=5000\n"
            "Running benchmark for at least 1 iterations and at least 1 seconds\ncount=1 curr=4000\n")
    out = parse_benchmark_output(text)
    assert (out.count, out.mean_ms, out.first_ms) == (1, approx(4.0), approx(5.0))


def test_benchmark_failed_is_a_user_error_with_exit_code_1():
    error = BenchmarkFailed("line one\nline two")
    assert isinstance(error, UserError)
    assert error.exit_code == 1
    assert str(error) == "line one line two"
