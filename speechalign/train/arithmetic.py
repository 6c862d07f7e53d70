"""What a CPU run's numbers depend on beyond seeds, data order and the config: the kernels' instruction
set and the thread count. The same training on the same corpus gives the same weights, to the bit, when
these agree (two runs on one machine, idle and under load, did); an AVX-512 machine and an AVX2 one pick
different kernels and drift apart by rounding. Setting the variables of ``PORTABLE`` before Python starts
(egs/synth/run.sh does) makes every AVX2-capable x86 machine run the AVX2 kernels."""

from __future__ import annotations

import os

import torch

# PyTorch's own vectorized kernels, MKL's BLAS/FFT code path, and oneDNN's JIT kernels (convolutions).
PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def arithmetic(device: torch.device) -> dict:
    """The settings two runs must share to give the same numbers, as recorded beside each checkpoint."""
    if device.type != "cpu":
        return {"torch": str(torch.__version__), "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                else device.type}
    return {"torch": str(torch.__version__), "kernels": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            **{name.lower(): os.environ.get(name) or "default" for name in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}}


def describe(a: dict) -> str:
    """One line for a report: 'torch 2.11.0, AVX2 kernels (MKL_CBWR=AVX2, ONEDNN_MAX_CPU_ISA=AVX2), 2 threads'."""
    if "kernels" not in a:
        return f"torch {a.get('torch', '?')} on {a.get('device', '?')}"
    pins = ", ".join(f"{k.upper()}={a[k]}" for k in ("mkl_cbwr", "onednn_max_cpu_isa") if a.get(k, "default") != "default")
    return f"torch {a['torch']}, {a['kernels']} kernels{f' ({pins})' if pins else ''}, {a['threads']} threads"


if __name__ == "__main__":   # egs/synth/run.sh evals this: the exports of PORTABLE, written once, here
    print(" ".join(f"export {k}={v};" for k, v in PORTABLE.items()))
