"""How much memory a probe stage will take, before it takes it.

`estimate` is used by the run (to log the estimate and refuse a run that cannot fit,
`check`) and by `probe.grid` (to size SLURM requests and for `dry_run=true`). It models what
each backend holds at its peak, by the shapes alone; keep it in step with the solvers
(`tests/test_memory.py` checks the constants below against theirs and the estimate against
a measured peak). What is counted (docs/solvers.md):

- torch: one float32 copy of train + val (`resident.Resident`, shared by the search and the
  refit), each head's cached float64 logits while they fit within `passes.CACHE_BYTES`
  (one N x K copy on CPU, two for stacked heads on GPU, see `_logits_cache`), one pass's
  chunk buffers (`chunk_mb`), the float64 certificate's chunk, the L-BFGS pairs. The
  search's fits are kept (`linear.SearchResult.fits`). After the refit the copy is released
  and the test outputs' chunk (scores, their negation and argsort, K wide) is the last peak.
- sklearn: one float64 copy of train + val, and the largest of: scikit-learn's N x K float64
  raw predictions and pointwise gradient (1.9: `_linear_loss.LinearModelLoss.loss_gradient`)
  with scipy's L-BFGS-B work arrays ((2m + 5) x parameters, m = 10); the float32 block
  being read while the copy is made; the certificate's chunk.
- cuML: a float64 host copy per fit (`cuml.CumlSolver.fit`) and on the device the same copy
  plus N x K float64 buffers (not measured: no GPU).
- every backend: the interpreter with torch, numpy, scikit-learn and Hydra imported
  (`RUNTIME`, measured) and the label and index arrays of the splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from probe.core.errors import ProbeError
from probe.solvers.base import chunk_rows

F32, F64 = 4, 8
GiB = 2**30
RUNTIME = 850 * 2**20  # VmHWM of `python -m probe` on digits: 0.79-0.82 GiB (torch, sklearn)
CUDA_CONTEXT = 512 * 2**20  # what a CUDA context and torch's kernels take (a round number)
CACHE_BYTES = 2**31  # passes.CACHE_BYTES: the cached float64 logits of one pass
ROWS = 65536  # resident.ROWS = rows.BLOCK = the predict and test-output chunk
CERT_BYTES = 2**27  # base.CHUNK_BYTES: one certificate chunk
SEARCH_POINTS = 15  # linear.search evaluates 7 + 4 x 2 grid points at most
STACK = (7, 2, 1)  # heads fitted together on GPU: the first round, a refinement, the refit
LABEL_ARRAYS = 8  # int64 label / index arrays of N rows (splits, carve, train+val, remap)
SCIPY_M = 10  # scipy's L-BFGS-B maxcor, scikit-learn's default


@dataclass
class MemoryEstimate:
    """Peak bytes on the host and on the device (0 on CPU), with the terms that make them."""

    host: int
    device: int
    terms: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / GiB:.2f}" for k, v in self.terms.items() if v)
        device = f", device {self.device / GiB:.2f} GiB" if self.device else ""
        return f"host {self.host / GiB:.2f} GiB{device} ({parts} GiB)"


@dataclass(frozen=True)
class _Shapes:
    n: int  # train + val: what the refit holds
    n_all: int  # every row of the splits (labels)
    n_test: int
    d: int
    k: int
    points: int = SEARCH_POINTS  # searched C values, each fit kept until the refit


def backend_of(target: object) -> str:
    """The backend a probe config's `_target_` builds (probe.solvers.torch_solver.build:
    torch; probe.solvers.sklearn.build: sklearn; probe.solvers.cuml.build: cuml)."""
    parts = str(target or "").split(".")
    return parts[-2].removesuffix("_solver") if len(parts) > 1 else str(target)


def estimate(
    *,
    backend: str,
    n_train: int,
    n_val: int,
    n_test: int,
    dim: int,
    num_classes: int,
    device: str = "cpu",
    chunk_mb: int = 1024,
    memory: int = 10,
    search_points: int = SEARCH_POINTS,
) -> MemoryEstimate:
    """Peak memory of the probe stage on float32 features of these shapes.

    `n_train` and `n_val` are the protocol's split sizes (after any carve); the refit holds
    their union. `chunk_mb` and `memory` are the torch backend's options of those names;
    `search_points` the C values the search fits (the CLIP search's 15 at most; a protocol
    card's sweep, its whole grid).
    """
    s = _Shapes(n=n_train + n_val, n_all=n_train + n_val + n_test, n_test=n_test, d=dim,
                k=num_classes, points=int(search_points))  # fmt: skip
    gpu = str(device).startswith("cuda")
    if backend == "torch":
        return _torch(s, gpu=gpu, chunk_bytes=chunk_mb * 2**20, memory=memory)
    if backend == "sklearn":
        return _sklearn(s)
    if backend == "cuml":
        return _cuml(s)
    raise ProbeError(f"memory estimate: unknown probe backend {backend!r} (torch, sklearn, cuml)")


def _common(s: _Shapes) -> dict[str, int]:
    return {"runtime": RUNTIME, "labels": LABEL_ARRAYS * s.n_all * 8,
            "search fits": s.points * s.k * s.d * F64}  # fmt: skip


def _test_outputs(s: _Shapes) -> int:
    """`heads.test_outputs` per chunk: float32 rows and scores, float64 scores + intercept,
    their negation and the int64 argsort."""
    rows = min(s.n_test, ROWS)
    return rows * (s.d * F32 + s.k * (F32 + 3 * F64))


def _certificate(s: _Shapes, *, gpu: bool) -> int:
    """`base.certify` per chunk: float64 rows, logits and two K-wide temporaries."""
    rows = chunk_rows(s.n, 8 * (s.d + 2 * s.k), chunk_bytes=CERT_BYTES, device=_dev(gpu))
    return rows * (s.d + 3 * s.k) * F64


def _dev(gpu: bool) -> str:
    return "cuda" if gpu else "cpu"


def _pass_chunk(s: _Shapes, *, heads: int, f64: bool, chunk_bytes: int, gpu: bool) -> int:
    """`passes.evaluate`'s row chunk: its own bound (3 float64 K-wide rows per head, plus the
    float64 features in float64 mode) is what the chunk allocates."""
    per_row = heads * s.k * 8 * 3 + (s.d * 8 if f64 else 0)
    rows = chunk_rows(s.n, per_row, chunk_bytes=chunk_bytes, device=_dev(gpu))
    return rows * per_row


def _logits_cache(s: _Shapes, heads: int, *, gpu: bool) -> int:
    """The cached float64 logits (`passes.caches_logits`) at their peak. On CPU C values are
    fitted one after another and a single head's cache is updated in place (its first pass
    starts from fresh zeros, `passes._previous_logits`; the previous C's track is dropped
    before the next fit, `TorchSolver._fit_many`): one copy. Stacked heads (GPU) build one
    new buffer from their caches while those are still referenced: two copies."""
    size = s.n * s.k * heads * F64
    if size > CACHE_BYTES:
        return 0
    return size * (2 if gpu else 1)


def _torch(s: _Shapes, *, gpu: bool, chunk_bytes: int, memory: int) -> MemoryEstimate:
    features = s.n * s.d * F32
    stacks = STACK if gpu else (1,)
    fit = max(max(_logits_cache(s, h, gpu=gpu) + max(_pass_chunk(s, heads=h, f64=False,
              chunk_bytes=chunk_bytes, gpu=gpu), _certificate(s, gpu=gpu)) for h in stacks),
              _pass_chunk(s, heads=1, f64=True, chunk_bytes=chunk_bytes, gpu=gpu))  # fmt: skip
    lbfgs = max(stacks) * (2 * memory + 10) * s.k * (s.d + 1) * F64
    build = 2 * ROWS * s.d * F32 + 3 * s.d * s.d * F64  # a read block, the covariance
    on_device = {"features (float32 copy)": features, "logits and chunks": max(fit, build),
                 "L-BFGS": lbfgs}  # fmt: skip
    host = _common(s)
    if not gpu:
        if sum(on_device.values()) >= _test_outputs(s):
            return MemoryEstimate(host=sum({**host, **on_device}.values()), device=0,
                                  terms={**host, **on_device})  # fmt: skip
        host["test outputs"] = _test_outputs(s)
        return MemoryEstimate(host=sum(host.values()), device=0, terms=host)
    host["read block, test outputs"] = max(build, _test_outputs(s))
    dev = {"cuda context": CUDA_CONTEXT, **on_device}
    return MemoryEstimate(host=sum(host.values()), device=sum(dev.values()),
                          terms={**host, **{f"device {k}": v for k, v in dev.items()}})  # fmt: skip


def _sklearn(s: _Shapes) -> MemoryEstimate:
    k = 1 if s.k == 2 else s.k  # binomial: one raw prediction per row
    loss = 2 * s.n * k * F64 + (2 * SCIPY_M + 5) * k * (s.d + 1) * F64
    fit = {"float64 copy": s.n * s.d * F64,  # and, after it, the largest of:
           "loss buffers, read block or certificate": max(loss, ROWS * s.d * F32,
                                                          _certificate(s, gpu=False))}  # fmt: skip
    host = _common(s)
    if sum(fit.values()) >= _test_outputs(s):
        host.update(fit)
    else:
        host["test outputs"] = _test_outputs(s)
    return MemoryEstimate(host=sum(host.values()), device=0, terms=host)


def _cuml(s: _Shapes) -> MemoryEstimate:
    host = _common(s)
    host["float64 copy"] = max(s.n * s.d * F64, _test_outputs(s))
    dev = {"cuda context": CUDA_CONTEXT, "float64 features": s.n * s.d * F64,
           "buffers": 3 * s.n * s.k * F64}  # fmt: skip
    return MemoryEstimate(host=sum(host.values()), device=sum(dev.values()),
                          terms={**host, **{f"device {k}": v for k, v in dev.items()}})  # fmt: skip


def check(
    est: MemoryEstimate,
    *,
    host: tuple[int, str] | None,
    device: tuple[int, str] | None = None,
    backend: str = "torch",
    override: str = "memory_check=false",
) -> None:
    """Refuse, in one line with the numbers and the fixes, a run whose estimate exceeds what
    it may use: `host` / `device` are (bytes, where that limit comes from) or None."""
    for where, need, limit in (("host", est.host, host), ("device", est.device, device)):
        if limit is None or need <= limit[0]:
            continue
        fix = (f"request more (sbatch --mem={math.ceil(1.25 * need / GiB)}G)" if where == "host"
               else "use a GPU with more memory or device=cpu")  # fmt: skip
        if backend != "torch":
            fix += ", use probe=torch (it holds float32 features)"
        raise ProbeError(
            f"the probe stage needs about {need / GiB:.1f} GiB of {where} memory "
            f"({est.describe()}) but only {limit[0] / GiB:.1f} GiB is available ({limit[1]}); "
            f"{fix}, or set {override} to try anyway"
        )
