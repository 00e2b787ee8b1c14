from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from weightlab.lab.allocator import retain_freed_memory

_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.fixture(autouse=True)
def _fresh_cache():
    retain_freed_memory.cache_clear()
    yield
    retain_freed_memory.cache_clear()


@pytest.mark.skipif(not _GLIBC, reason="glibc only")
def test_glibc_takes_both_thresholds():
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True  # once per process, then cached


def test_the_environment_variable_turns_it_off(monkeypatch):
    monkeypatch.setenv("WEIGHTLAB_RETAIN_FREED_MEMORY", "0")
    assert retain_freed_memory() is False


#: A fresh interpreter trains a K = 32 GRU stack for a few steps and prints the
#: minor page faults of the steps after the first one.
_FAULTS = """
import resource, sys, torch
from weightlab.lab.allocator import retain_freed_memory
from weightlab.lab.architectures import build_stacked
if sys.argv[1] == "1":
    assert retain_freed_memory()
model = build_stacked("gru", (8, 8), 10, seeds=range(32))
x = torch.rand(32, 64, 8, 8)
model(x).sum().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    model(x).sum().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow  # starts a process
@pytest.mark.skipif(not _GLIBC, reason="glibc only")
def test_the_engine_step_reuses_freed_buffers_instead_of_faulting_them_in():
    def faults(flag: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", _FAULTS, flag], capture_output=True, text=True, check=True
        )
        return int(run.stdout)

    default, retained = faults("0"), faults("1")
    # measured: ~8800 faults (~35 MB of pages) by default, ~2000 retained
    assert retained < default / 2, (default, retained)
