"""How much memory a probe stage will take, before it takes it.

One function, `estimate`, used by the run (to log the estimate and refuse a run that cannot
fit) and by `probe.grid` (to size SLURM requests). The terms follow what each backend holds
at its peak, by the shapes alone; keep them in step with the solvers when those change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

F32, F64 = 4, 8
CACHE_BYTES = 2**31  # the torch solver's cap on cached float64 logits (torch_solver.py)


@dataclass
class MemoryEstimate:
    """Peak bytes on the host and on the device (0 on CPU), with the terms that make them."""

    host: int
    device: int
    terms: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / 2**30:.2f}" for k, v in self.terms.items() if v)
        return (f"host {self.host / 2**30:.2f} GiB, device {self.device / 2**30:.2f} GiB "
                f"({parts} GiB)")  # fmt: skip


def estimate(
    *,
    backend: str,
    n_train: int,
    n_val: int,
    n_test: int,
    dim: int,
    num_classes: int,
    device: str = "cpu",
) -> MemoryEstimate:
    """Peak memory of the probe stage on features of these shapes (float32 cache).

    `n_train` and `n_val` are the protocol's split sizes (after any carve); the refit holds
    their union. The first-order terms of the code as it is: the carved copies of train and
    val, the solver's own float32 (torch) or float64 (sklearn, cuML) copy of the refit data,
    the torch solver's cached float64 logits (capped), and for sklearn its N x K one-hot,
    logits and gradient buffers.
    """
    n_fit = n_train + n_val
    carve = n_fit * dim * F32
    logits = min(n_fit * num_classes * F64, CACHE_BYTES)
    gpu = str(device).startswith("cuda")
    if backend == "torch":
        work = n_fit * dim * F32
        terms = {"carved train+val": carve, "refit copy": carve, "working basis": work,
                 "logits": logits}  # fmt: skip
        host = sum(terms.values()) - (work + logits if gpu else 0)
        return MemoryEstimate(host=host, device=work + logits if gpu else 0, terms=terms)
    if backend == "sklearn":
        terms = {"carved train+val": carve, "refit copy": carve, "float64 copy": 2 * carve,
                 "one-hot, logits, gradient": 3 * n_fit * num_classes * F64}  # fmt: skip
        return MemoryEstimate(host=sum(terms.values()), device=0, terms=terms)
    terms = {"carved train+val": carve, "refit copy": carve}
    dev = 2 * carve + 3 * n_fit * num_classes * F64  # cuML: float64 features, its buffers
    return MemoryEstimate(host=sum(terms.values()), device=dev, terms=terms)
