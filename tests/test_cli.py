"""The convgrad command end to end, with tiny epoch counts, and its one-line usage errors."""

import json
import statistics
import subprocess
import sys

import numpy as np
import pytest
from test_data import write_cifar, write_mnist

from convgrad.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def run(capsys, *args):
    """(exit status, stdout, stderr) of ``convgrad ARGS`` run in this process."""
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def check_run_files(out_dir, dataset, model, epochs, classes=10):
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert (metrics["dataset"], metrics["model"], metrics["epochs"]) == (dataset, model, epochs)
    assert 0 <= metrics["test_accuracy"] <= 1
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, epochs + 1))
    assert set(metrics["history"][0]) == {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"}
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (classes, classes)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["test_accuracy"])
    for name in ("curves.png", "confusion.png"):
        assert (out_dir / name).read_bytes()[:8] == PNG
    assert (out_dir / "model.npz").is_file()
    return metrics


def test_train_digits_by_default_then_evaluate(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "--epochs", "2", "--out", str(tmp_path))
    assert code == 0
    assert "training digits-cnn on digits" in out and "final test accuracy" in out and str(tmp_path) in out
    metrics = check_run_files(tmp_path, "digits", "digits-cnn", 2)
    assert metrics["test_accuracy"] > 0.8
    code, out, _ = run(capsys, "evaluate", "--checkpoint", str(tmp_path / "model.npz"))
    assert code == 0
    assert f"digits test accuracy: {metrics['test_accuracy']:.4f}" in out and "(columns: predicted)" in out


def test_train_mnist1d_one_epoch(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "--dataset", "mnist1d", "--epochs", "1", "--out", str(tmp_path))
    assert code == 0
    check_run_files(tmp_path, "mnist1d", "mnist1d-cnn", 1)


def test_train_mnist_from_idx_files(tmp_path, capsys):
    write_mnist(tmp_path / "data", n_train=320, n_test=64)
    code, _, _ = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--epochs", "3",
                     "--batch-size", "16", "--lr", "0.003", "--out", str(tmp_path / "run"))
    assert code == 0
    metrics = check_run_files(tmp_path / "run", "mnist", "lenet5", 3)
    assert metrics["test_accuracy"] > 0.5  # the digit is drawn as a bright row: images and labels line up


def test_train_cifar10_from_batches(tmp_path, capsys):
    write_cifar(tmp_path / "data")
    code, _, _ = run(capsys, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                     "--optimizer", "adamw", "--lr", "0.002", "--weight-decay", "0.01", "--out", str(tmp_path / "run"))
    assert code == 0
    metrics = check_run_files(tmp_path / "run", "cifar10", "lenet5", 1)
    assert metrics["settings"]["optimizer"] == "adamw" and metrics["settings"]["weight_decay"] == 0.01


def test_resume_continues_like_an_uninterrupted_run(tmp_path, capsys):
    assert run(capsys, "train", "--epochs", "2", "--seed", "3", "--out", str(tmp_path / "a"))[0] == 0
    assert run(capsys, "train", "--epochs", "1", "--seed", "3", "--out", str(tmp_path / "b"))[0] == 0
    assert run(capsys, "train", "--resume", str(tmp_path / "b" / "model.npz"), "--epochs", "2")[0] == 0
    strip = lambda m: [{k: v for k, v in h.items() if k != "seconds"} for h in m["history"]]  # noqa: E731
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b"))
    assert strip(a) == strip(b) and a["confusion_matrix"] == b["confusion_matrix"]


@pytest.mark.parametrize("args, message", [
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--epochs", "0"], "expected a positive integer"),
    (["train", "--dataset", "mnist"], "give their directory with --data-dir"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent/dir"], "does not exist"),
    (["train", "--dataset", "mnist1d", "--model", "lenet5"], "model 'lenet5' expects 2-D images"),
    (["train", "--model", "mnist1d-cnn"], "model 'mnist1d-cnn' expects 1-D signals"),
    (["evaluate", "--checkpoint", "/nonexistent.npz"], "no such file"),
    (["explode"], "invalid choice"),
])
def test_usage_errors_are_one_line_with_exit_code_2(args, message, capsys):
    code, _, err = run(capsys, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_corrupted_checkpoint_and_mismatched_resume(tmp_path, capsys):
    assert run(capsys, "train", "--epochs", "1", "--out", str(tmp_path))[0] == 0
    checkpoint = tmp_path / "model.npz"
    code, _, err = run(capsys, "train", "--resume", str(checkpoint), "--dataset", "mnist1d")
    assert code == 2 and "trained on 'digits'" in err
    code, _, err = run(capsys, "train", "--resume", str(checkpoint), "--batch-size", "7")
    assert code == 2 and "batch_size=32" in err
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(checkpoint))
    assert code == 2 and "corrupted" in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_and_verify():
    result = subprocess.run([sys.executable, "-m", "convgrad", "verify", "--algorithms", "gemm"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "all passed" in result.stdout
    result = subprocess.run([sys.executable, "-m", "convgrad", "train", "--nope"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_scipy_is_loaded_only_when_an_fft_convolution_runs():
    """Importing scipy loads SciPy's own OpenBLAS and its threads: only the fft algorithm needs it."""
    script = ("import sys, numpy as np, convgrad\n"
              "loaded = lambda: 'scipy' in sys.modules\n"
              "before = loaded()\n"
              "x, w = np.ones((1, 1, 6, 6)), np.ones((1, 1, 3, 3))\n"
              "convgrad.conv(x, w, algorithm='gemm')\n"
              "direct = loaded()\n"
              "y = convgrad.conv(x, w, algorithm='fft')\n"
              "print(before, direct, loaded(), np.allclose(y, 9))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.split() == ["False", "False", "True", "True"], result.stderr


def test_bench_runs_and_writes_its_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code, text, err = run(capsys, "bench", "--cases", "lenet-c1", "pw-1x1", "--repeats", "1", "--no-training",
                        "--json", str(out))
    assert code == 0 and "geometric mean" in text, err
    report = json.loads(out.read_text())
    assert [r["case"] for r in report["cases"]] == ["lenet-c1", "pw-1x1"]
    row = report["cases"][1]
    assert row["algorithm"] == "pointwise" and row["ratio"] > 0 and row["gflops"] > 0 and row["peak_extra_mib"] >= 0
    handoff = statistics.median(row["handoff_costs"])
    printed = next(line for line in text.splitlines() if line.startswith("pw-1x1"))
    assert len(row["handoff_costs"]) == 5 and 0 < handoff < float("inf") and f" {handoff:.1f}x " in printed
    assert report["numpy_matmul_gflops"] > 0 and report["torch"].startswith("2.13.0")
    from convgrad.conv import dispatch

    parts = dispatch.parts(np.zeros((64, 256, 8, 8), np.float32), np.zeros((64, 256, 1, 1), np.float32))
    assert [r["parts"] for r in report["cases"]] == [1, parts]  # pw-1x1 by batch with the Haswell kernels
    assert printed.endswith("pointwise" if parts == 1 else f"pointwise, batch in {parts} parts")


def test_bench_names_a_batch_split_into_parts():
    from convgrad import bench

    assert bench._in_parts({"parts": 2, "algorithm": "gemm"}) == ", batch in 2 parts"
    assert bench._in_parts({"parts": 2, "algorithm": "depthwise"}) == ", channels in 2 parts"
    assert bench._in_parts({"parts": 1, "algorithm": "gemm"}) == ""


@pytest.mark.parametrize("cost, flagged", [(1.2, False), (6.0, True)])
def test_bench_flags_cases_run_while_handing_data_between_cores_was_costly(monkeypatch, cost, flagged):
    """A case whose blocks ran at a handoff cost of COSTLY_HANDOFF or more is named under the table."""
    import io

    from convgrad import bench

    monkeypatch.setattr(bench, "handoff_cost", lambda repeats=bench.HANDOFF_REPEATS: cost)
    out = io.StringIO()
    report = bench.run(["pw-1x1"], compare_torch=True, repeats=1, training=False, out=out)
    assert report["cases"][0]["handoff_costs"] == [cost] * bench.BLOCKS
    last = out.getvalue().splitlines()[-1]
    assert last.endswith(": pw-1x1") == flagged and ("cost 3x or more" in last) == flagged


def test_explain_command(tmp_path, capsys):
    code, out, _ = run(capsys, "explain", "--input", "4", "--kernel", "2")
    assert code == 0 and "y₁ = w₁·x₁ + w₂·x₂ + b" in out and "Verified" in out
    code, out, _ = run(capsys, "explain", "--input", "5x6", "--kernel", "3x2", "--stride", "2x1", "--padding", "1",
                       "--dilation", "1x2", "--format", "html", "--out", str(tmp_path / "page.html"))
    assert code == 0 and (tmp_path / "page.html").read_text().startswith("<!DOCTYPE html>")
    code, _, err = run(capsys, "explain", "--input", "20x20", "--kernel", "3x3")
    assert code == 2 and "too large to read" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "explain", "--input", "4", "--kernel", "two")
    assert code == 2 and "like 2 or 2x1" in err


@pytest.mark.parametrize("variables", [{}, {"OPENBLAS_CORETYPE": "Haswell"},
                                       {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"}])
def test_bench_says_when_openblas_is_held_to_older_kernels(monkeypatch, variables):
    """OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, set on some machines for old builds, halve NumPy's matmul on
    newer CPUs: the report notes each one set and how to run without them, and records them."""
    import io

    from convgrad import bench

    for name in bench.THROTTLING:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(bench, "matmul_rate", lambda: 100.0)
    out = io.StringIO()
    report = bench.run([], compare_torch=False, repeats=1, training=False, out=out)
    assert report["openblas_environment"] == variables
    notes = [line for line in out.getvalue().splitlines() if line.startswith("note:")]
    if not variables:
        assert notes == []
    else:
        assert len(notes) == 1 and "env " + " ".join(f"-u {name}" for name in variables) in notes[0]
        assert all(f"{name}={value}" in notes[0] for name, value in variables.items())


def test_bench_handoff_measure_reads_no_uninitialised_memory():
    """The handoff measure's first product reads its im2col buffer before any copy has filled it: that
    buffer starts as zeros, so no garbage (inf, NaN) makes the product warn or the figure wrong."""
    import warnings

    from convgrad import bench

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 0 < bench.handoff_cost(repeats=2) < float("inf")


def test_bench_names_the_widest_vector_unit():
    """The machine line names the CPU's widest vector unit (the kernels both libraries pick depend on it)."""
    from convgrad.bench import machine, vector_unit

    assert vector_unit({"sse2", "avx", "avx2", "avx512f", "fma"}) == "AVX-512"
    assert vector_unit({"sse2", "avx", "avx2"}) == "AVX2"
    assert vector_unit({"neon"}) == ""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        flags = []
    unit = vector_unit(set(flags))
    assert (f"({unit}" in machine()) == bool(unit)


def test_bench_names_the_cpu_family_and_model():
    """Two CPUs of one name and vector unit can differ twofold (family 25 and 26 EPYCs): the machine line
    gives the family and model where /proc/cpuinfo has them, and the vector unit alone where not."""
    from convgrad.bench import cpu

    fields = {"model name": "AMD EPYC", "flags": "fpu avx2 avx512f", "cpu family": "25", "model": "17"}
    assert cpu(fields) == "AMD EPYC (AVX-512; family 25, model 17)"
    assert cpu({"model name": "Intel Xeon", "flags": "avx avx2"}) == "Intel Xeon (AVX2)"
    assert cpu({"model name": "Ampere Altra", "flags": "fp asimd"}) == "Ampere Altra"


def test_bench_names_numpys_blas_and_its_kernels():
    """The machine line names the BLAS NumPy loaded and the kernels it runs (they show whether
    OPENBLAS_CORETYPE holds an AVX-512 machine to older ones), as threadpoolctl reports them, not
    another package's BLAS; nothing when NumPy's is not among them."""
    from convgrad.bench import describe_blas

    site = "/venv/site-packages"
    torch_blas = {"user_api": "blas", "internal_api": "mkl", "version": "2024.2",
                  "filepath": "/venv/site-packages/torch/lib/libmkl.so"}
    openmp = {"user_api": "openmp", "internal_api": "openmp", "filepath": "/venv/site-packages/numpy.libs/libgomp.so"}
    numpy_blas = {"user_api": "blas", "internal_api": "openblas", "version": "0.3.31.188.0", "architecture": "SkylakeX",
                  "filepath": "/venv/site-packages/numpy.libs/libscipy_openblas64_-32a4b2a6.so"}
    assert describe_blas([torch_blas, openmp, numpy_blas], site) == "OpenBLAS 0.3.31.188.0, SkylakeX kernels"
    assert describe_blas([torch_blas, openmp], site) == ""
    assert describe_blas([dict(numpy_blas, architecture=None)], site) == "OpenBLAS 0.3.31.188.0"
