import json
import os
import subprocess
import sys

import torch

from speechalign.train.arithmetic import PORTABLE, arithmetic, describe


def _arithmetic_in_a_fresh_process(pins: dict) -> dict:
    code = ("import json, torch; from speechalign.train.arithmetic import arithmetic; "
            "torch.set_num_threads(1); print(json.dumps(arithmetic(torch.device('cpu'))))")
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE} | pins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_portable_settings_pin_avx2_kernels_in_a_new_process():
    pinned = _arithmetic_in_a_fresh_process(PORTABLE)
    assert pinned["kernels"] == "AVX2" and pinned["threads"] == 1
    assert pinned["mkl_cbwr"] == "AVX2" and pinned["onednn_max_cpu_isa"] == "AVX2"
    assert describe(pinned) == (f"torch {torch.__version__}, AVX2 kernels (MKL_CBWR=AVX2, ONEDNN_MAX_CPU_ISA=AVX2), "
                                "1 threads")


def test_without_pins_the_machine_decides_and_the_record_says_so():
    free = _arithmetic_in_a_fresh_process({})
    assert free["mkl_cbwr"] == "default" and free["onednn_max_cpu_isa"] == "default"
    assert "(" not in describe(free)
    if "ATEN_CPU_CAPABILITY" not in os.environ:
        assert free["kernels"] == torch.backends.cpu.get_cpu_capability()
    here = arithmetic(torch.device("cpu"))
    assert here["threads"] == torch.get_num_threads() and here["torch"] == torch.__version__
