"""The performance suite: convgrad against PyTorch's CPU convolutions, in the same process.

Each case times forward + dx + dW + db in float32 with the same inputs and thread count in both
libraries, interleaving the two in blocks of calls (the first call of each block untimed, so that
neither library's idle worker threads disturb the other) and reporting medians.
Reported per case: milliseconds of each, the ratio convgrad/torch, convgrad's GFLOP/s, that rate as
a fraction of NumPy's own float32 matrix-multiply rate measured in the same run (the practical
ceiling for a NumPy library), the algorithm "auto" chose, the peak memory convgrad allocated
beyond its inputs and outputs, and the machine's cost of handing data between cores while the case
ran (:func:`handoff_cost`, median over its blocks: on a shared virtual machine it moves convgrad's
times). Then the geometric mean of the ratios, and one training step of the mnist1d-cnn recipe and
of LeNet-5 against the same models in PyTorch.

Run it with the OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE variables unset where a machine sets them for
old OpenBLAS builds (they throttle current NumPy)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE convgrad bench --compare torch
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    x: tuple
    weight: tuple
    options: dict = field(default_factory=dict)

    @property
    def nd(self) -> int:
        return len(self.x) - 2

    def flops(self, out_shape) -> float:
        """2·MACs of the forward, times 3 (forward, dx and dW cost the same): bias ignored."""
        groups = self.options.get("groups", 1)
        macs = math.prod(out_shape) * (self.x[1] // groups) * math.prod(self.weight[2:])
        return 3 * 2 * macs


SUITE = (
    Case("lenet-c1", (64, 1, 28, 28), (6, 1, 5, 5)),
    Case("lenet-c2", (64, 6, 12, 12), (16, 6, 5, 5)),
    Case("cifar-16", (64, 16, 32, 32), (16, 16, 3, 3), dict(padding=1)),
    Case("res-64", (64, 64, 16, 16), (64, 64, 3, 3), dict(padding=1)),
    Case("res-128", (32, 128, 8, 8), (128, 128, 3, 3), dict(padding=1)),
    Case("down-s2", (64, 64, 16, 16), (128, 64, 3, 3), dict(stride=2, padding=1)),
    Case("pw-1x1", (64, 256, 8, 8), (64, 256, 1, 1)),
    Case("stem-7x7", (8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
    Case("dw-3x3", (32, 64, 32, 32), (64, 1, 3, 3), dict(padding=1, groups=64)),
    Case("dil-2", (16, 32, 64, 64), (32, 32, 3, 3), dict(padding=2, dilation=2)),
    Case("conv1d", (64, 32, 1024), (32, 32, 9), dict(padding=4)),
    Case("conv3d", (8, 16, 16, 32, 32), (16, 16, 3, 3, 3), dict(padding=1)),
)


BLOCKS = 5  # the two libraries alternate in blocks of calls
SETTLE_SECONDS = 0.25  # OpenBLAS worker threads spin for about 0.1 s after a product before they sleep


def _block(call, count: int) -> list[float]:
    """Seconds of ``count`` consecutive calls, after a pause and one untimed call.

    The other library's BLAS or OpenMP worker threads keep spinning for a while after its last call
    and would take a core from whatever runs next (measured: timing call by call, alternately, made
    PyTorch's LeNet-5 step 2.5 times slower than alone). The pause lets them go idle; the untimed
    call wakes this library's own threads.
    """
    time.sleep(SETTLE_SECONDS)
    call()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def _median_pair(first, second, repeats: int, blocks: int = BLOCKS) -> tuple[float, float, list[float]]:
    """Median seconds of two callables, timed in alternating blocks (first, second, first, ...), and
    the machine's :func:`handoff_cost` before each pair of blocks."""
    per_block = max(1, -(-repeats // blocks))
    a, b, handoffs = [], [], []
    for _ in range(blocks):
        handoffs.append(handoff_cost())
        a += _block(first, per_block)
        b += _block(second, per_block)
    return statistics.median(a), statistics.median(b), handoffs


def _timed(ours, theirs, repeats: int) -> tuple[float, float, list[float]]:
    """(convgrad's median seconds, PyTorch's or NaN when ``theirs`` is None, the handoff costs measured)."""
    if theirs is None:
        return _median(ours, repeats), float("nan"), [handoff_cost()]
    return _median_pair(ours, theirs, repeats)


def _median(call, repeats: int) -> float:
    return statistics.median(_block(call, repeats))


ALLOCATOR_WARMUP_BYTES = 31 * 2**20  # just under glibc's largest dynamic mmap threshold (32 MiB)


def warm_allocator() -> None:
    """Allocate and free one large block, so that both libraries reuse memory instead of page-faulting.

    glibc serves large allocations by mmap until a large mmapped block is freed, after which it raises
    its threshold and serves such sizes from the reused heap. Before that, every output array of a
    call costs fresh page faults (measured: PyTorch's depthwise forward 10 ms instead of 1.4 ms), and
    which cases pay depends on what ran before them. Warming first gives every case, for both
    libraries, the steady state a training loop runs in.
    """
    block = np.ones(ALLOCATOR_WARMUP_BYTES, dtype=np.uint8)
    del block


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """NumPy's float32 matrix-multiply rate on this machine, GFLOP/s (an n×n×n product)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    return 2 * n**3 / _median(lambda: a @ b, repeats) / 1e9


HANDOFF_REPEATS = 10
COSTLY_HANDOFF = 3.0  # a case run at this handoff cost or more is flagged (1.1-1.6 usually, 5-10 in slow phases)


def handoff_cost(repeats: int = HANDOFF_REPEATS) -> float:
    """How many times longer a one-core copy takes to rewrite a buffer that a matrix product on all
    cores has just read than after a product on other data (1 where cores hand cache lines to each
    other cheaply).

    convgrad's im2col, col2im and layout copies run on one core between OpenBLAS products that run on
    all of them, and rewrite buffers whose cache lines the other cores' threads have just read: each
    line is first taken back from them. On the benchmark's virtual machine this varies from second to
    second (1.1-1.6 mostly, 5-10 at times, when its virtual cores evidently sit far apart), and with
    it convgrad's times (1.5-1.8x as long at 5 or more). OpenBLAS's spinning worker alone costs the
    copy nothing (hence the product on other data), and PyTorch's threads each keep to their own part
    of the data. Measured on LeNet-5's first im2col (25 strided copies of (64, 24, 24)) and the
    (8, 25) @ (25, 36864) product that reads it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 28, 28), dtype=np.float32)
    cols = np.zeros((5, 5, 64, 24, 24), dtype=np.float32)  # read by the first product before any im2col
    other = np.empty_like(cols).reshape(25, -1)
    w = rng.standard_normal((8, 25), dtype=np.float32)

    def im2col():
        for i in range(5):
            for j in range(5):
                cols[i, j] = x[:, i: i + 24, j: j + 24]

    def copy_after(read: np.ndarray) -> float:
        times = []
        for _ in range(repeats):
            np.matmul(w, read)
            start = time.perf_counter()
            im2col()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    other[...] = 0
    return copy_after(cols.reshape(25, -1)) / copy_after(other)


def _peak_extra(call, inputs_and_outputs_bytes: int) -> int:
    """Peak bytes allocated while ``call`` runs (scratch buffers included), minus what it returns."""
    from ._workspace import release

    release()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        call()
        return max(0, tracemalloc.get_traced_memory()[1] - base - inputs_and_outputs_bytes)
    finally:
        tracemalloc.stop()


def _torch_step(torch, case: Case, x, w, b, dy):
    import torch.nn.functional as F

    conv = getattr(F, f"conv{case.nd}d")
    xt, wt, bt, dyt = (torch.from_numpy(a).requires_grad_(a is not dy) for a in (x, w, b, dy))

    def step():
        y = conv(xt, wt, bt, **case.options)
        return torch.autograd.grad(y, (xt, wt, bt), dyt)

    return step


def run_case(case: Case, repeats: int, torch=None) -> dict:
    """Time one case; returns a dict of the figures."""
    from . import conv, conv_backward
    from .conv.dispatch import describe, parts

    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.x, dtype=np.float32)
    w = rng.standard_normal(case.weight, dtype=np.float32) * 0.1
    b = rng.standard_normal(case.weight[0], dtype=np.float32)
    y = conv(x, w, b, **case.options)
    dy = rng.standard_normal(y.shape, dtype=np.float32)

    def ours():
        conv(x, w, b, **case.options)
        return conv_backward(dy, x, w, **case.options)

    theirs = None if torch is None else _torch_step(torch, case, x, w, b, dy)
    ours_s, torch_s, handoffs = _timed(ours, theirs, repeats)
    outputs = y.nbytes + x.nbytes + w.nbytes + b.nbytes  # y, and the gradients dx, dw, db
    return {
        "case": case.name, "convgrad_ms": ours_s * 1e3, "torch_ms": torch_s * 1e3, "ratio": ours_s / torch_s,
        "gflops": case.flops(y.shape) / ours_s / 1e9, "algorithm": describe(x, w, **case.options),
        "parts": parts(x, w, **case.options),
        "peak_extra_mib": _peak_extra(ours, outputs) / 2**20, "handoff_costs": handoffs,
    }


# --- training steps ------------------------------------------------------------------------------

def _training_pair(name: str, torch):
    """(convgrad step, torch step) for one training step of a built-in model and its recipe."""
    from . import models, nn, optim
    from ._random import manual_seed

    manual_seed(0)
    if name == "mnist1d-cnn":
        model, shape, lr = models.mnist1d_cnn(), (100, 1, 40), 1e-2
    else:
        model, shape, lr = models.lenet5((1, 28, 28), 10), (64, 1, 28, 28), 1e-3
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, 10, size=shape[0])
    loss_fn, opt = nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=lr)
    model._expect_input_grad(False)  # as the training loop does

    def ours():
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()

    if torch is None:
        return ours, None
    twin = _torch_model(torch, model)
    topt = torch.optim.Adam(twin.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def theirs():
        topt.zero_grad()
        torch.nn.functional.cross_entropy(twin(xt), yt).backward()
        topt.step()

    return ours, theirs


def _torch_model(torch, model):
    from collections import OrderedDict

    def build(spec):
        kind, args = spec["type"], dict(spec["args"])
        if kind == "Sequential":
            return torch.nn.Sequential(OrderedDict((n, build(s)) for n, s in args["modules"]))
        args.pop("dtype", None)
        return getattr(torch.nn, kind)(**args)

    twin = build(model.spec())
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return twin


def run_training(name: str, repeats: int, torch=None) -> dict:
    ours, theirs = _training_pair(name, torch)
    ours_s, torch_s, handoffs = _timed(ours, theirs, repeats)
    return {"case": f"train-step {name}", "convgrad_ms": ours_s * 1e3, "torch_ms": torch_s * 1e3,
            "ratio": ours_s / torch_s, "handoff_costs": handoffs}


# --- the report ----------------------------------------------------------------------------------

THROTTLING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # set on some machines for old OpenBLAS builds


def throttling_variables() -> dict:
    """Those of ``THROTTLING`` set in the environment, with their values (measured: NumPy's float32 matmul
    256 GFLOP/s with OPENBLAS_CORETYPE=Haswell on an AVX-512 EPYC, 475 without)."""
    return {name: os.environ[name] for name in THROTTLING if name in os.environ}


def machine() -> str:
    """The CPU (:func:`cpu`), core count, Python and NumPy versions, and NumPy's BLAS (:func:`blas`)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as handle:
            first = handle.read().split("\n\n")[0]  # the first processor's block
        pairs = (line.split(":", 1) for line in first.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in pairs}
    except OSError:
        pass
    library = blas()
    return (f"{cpu(fields)}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"
            + (f" ({library})" if library else ""))


def cpu(fields: dict) -> str:
    """The CPU named by /proc/cpuinfo's ``fields`` of one processor, with its widest vector unit and its
    family and model: oneDNN and OpenBLAS pick their kernels by them (two "AMD EPYC" with AVX-512 of
    different families ran this suite at NumPy matmul rates of 200 and 470 GFLOP/s), so figures from
    machines that differ there do not compare. Another platform's processor name when there are none.

    >>> cpu({"model name": "AMD EPYC", "flags": "sse2 avx2 avx512f", "cpu family": "26", "model": "2"})
    'AMD EPYC (AVX-512; family 26, model 2)'
    """
    name = fields.get("model name") or platform.processor() or platform.machine()
    family, model = fields.get("cpu family"), fields.get("model")
    unit = vector_unit(set(fields.get("flags", "").split()))
    details = "; ".join(d for d in (unit, f"family {family}, model {model}" if family and model else "") if d)
    return f"{name} ({details})" if details else name


BLAS_NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}


def blas() -> str:
    """NumPy's BLAS as threadpoolctl (a dependency of scikit-learn) finds it loaded, e.g. "OpenBLAS
    0.3.31, SkylakeX kernels"; "" when it cannot tell. The kernels show whether OPENBLAS_CORETYPE
    is holding an AVX-512 machine to older ones (it then says Haswell)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ""
    return describe_blas(threadpool_info(), os.path.dirname(os.path.dirname(np.__file__)))


def describe_blas(libraries: list, site: str) -> str:
    """The first BLAS among threadpoolctl's ``libraries`` that lies in NumPy's package or its bundled
    libraries (``site``/numpy*: not PyTorch's), as "<name> <version>, <architecture> kernels"."""
    numpy_dir = os.path.join(site, "numpy")
    for library in libraries:
        if library.get("user_api") == "blas" and str(library.get("filepath", "")).startswith(numpy_dir):
            name = BLAS_NAMES.get(library.get("internal_api"), library.get("internal_api") or "BLAS")
            text = f"{name} {library.get('version') or ''}".strip()
            architecture = library.get("architecture")
            return text + (f", {architecture} kernels" if architecture else "")
    return ""


def vector_unit(flags: set) -> str:
    """The widest x86 vector extension among /proc/cpuinfo's ``flags`` ("" for none known)."""
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")):
        if flag in flags:
            return name
    return ""


def _in_parts(row: dict) -> str:
    """The algorithm column's note of a call split into parts on as many cores (``dispatch.parts``):
    depthwise cuts the channels, gemm and pointwise the batch."""
    if row["parts"] < 2:
        return ""
    return f", {'channels' if row['algorithm'] == 'depthwise' else 'batch'} in {row['parts']} parts"


def run(cases=None, compare_torch: bool = True, repeats: int = 15, threads: int | None = None,
        training: bool = True, out=None) -> dict:
    """Run the suite and print the table (to ``out``, default stdout); returns every figure as a dict."""
    out = sys.stdout if out is None else out
    torch = None
    if compare_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch is not installed: timing convgrad alone (pip install torch==2.13.0 to compare)", file=out)
    threads = threads or os.cpu_count() or 1
    if torch is not None:
        torch.set_num_threads(threads)
    selected = [c for c in SUITE if cases is None or c.name in cases]
    warm_allocator()
    ceiling = matmul_rate()
    report = {"machine": machine(), "threads": threads, "torch": getattr(torch, "__version__", None),
              "numpy_matmul_gflops": ceiling, "cases": [], "training": []}
    print(f"{report['machine']}; torch {report['torch']}, {threads} threads; "
          f"NumPy float32 matmul {ceiling:.0f} GFLOP/s", file=out)
    report["openblas_environment"] = throttles = throttling_variables()
    if throttles:
        print(f"note: {', '.join(f'{k}={v}' for k, v in throttles.items())} set: OpenBLAS (NumPy's BLAS) takes its "
              f"kernels and cache size from them instead of this CPU (an AVX-512 EPYC's matmul ran half as fast with "
              f"them); to time without them: env -u {' -u '.join(throttles)} convgrad bench ...", file=out)
    print(f"{'case':<10} {'convgrad ms':>11} {'torch ms':>9} {'ratio':>6} {'GFLOP/s':>8} {'of matmul':>9} "
          f"{'peak MiB':>8} {'handoff':>7}  algorithm", file=out)
    for case in selected:
        row = run_case(case, repeats, torch)
        row["matmul_fraction"], handoff = row["gflops"] / ceiling, statistics.median(row["handoff_costs"])
        report["cases"].append(row)
        print(f"{row['case']:<10} {row['convgrad_ms']:>11.2f} {row['torch_ms']:>9.2f} {row['ratio']:>6.2f} "
              f"{row['gflops']:>8.1f} {row['matmul_fraction']:>9.0%} {row['peak_extra_mib']:>8.1f} {handoff:>6.1f}x"
              f"  {row['algorithm']}{_in_parts(row)}", file=out, flush=True)
    ratios = [r["ratio"] for r in report["cases"] if r["ratio"] == r["ratio"]]
    if ratios:
        report["geometric_mean_ratio"] = math.exp(statistics.fmean(math.log(r) for r in ratios))
        print(f"geometric mean of convgrad/torch over {len(ratios)} cases: {report['geometric_mean_ratio']:.2f}",
              file=out)
    costly = [r["case"] for r in report["cases"] if statistics.median(r["handoff_costs"]) >= COSTLY_HANDOFF]
    if costly:
        print(f"ran while handing data between cores cost {COSTLY_HANDOFF:.0f}x or more (convgrad's times inflated, "
              f"often 1.5-1.8x): {', '.join(costly)}", file=out)
    if training:
        for name in ("mnist1d-cnn", "lenet5"):
            row = run_training(name, repeats * 4, torch)
            report["training"].append(row)
            print(f"{row['case']:<24} convgrad {row['convgrad_ms']:.2f} ms, torch {row['torch_ms']:.2f} ms, "
                  f"ratio {row['ratio']:.2f}, handoff {statistics.median(row['handoff_costs']):.1f}x",
                  file=out, flush=True)
    return report


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="convgrad bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return from_args(parser.parse_args(argv))


def add_arguments(parser) -> None:
    parser.add_argument("--compare", choices=("torch", "none"), default="torch")
    parser.add_argument("--cases", nargs="+", choices=[c.name for c in SUITE])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--no-training", dest="training", action="store_false")
    parser.add_argument("--json", help="also write every figure to this file")


def from_args(args) -> int:
    report = run(args.cases, args.compare == "torch", args.repeats, args.threads, args.training)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
