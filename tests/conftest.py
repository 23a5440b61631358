import jax
import pytest


@pytest.fixture
def x64():
    """Run the test with 64-bit floats (for comparisons against references)."""
    with jax.enable_x64(True):
        yield


MAX_MAPS = 30_000  # half the kernel's default vm.max_map_count (65530)


def _memory_maps() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to watch
        return 0


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_executables():
    """After a test module, drop every compiled executable once the process holds MAX_MAPS memory maps. An
    xdist worker runs many modules and would otherwise keep all its compiles, about three maps each; XLA's CPU
    compiler segfaults once the process reaches vm.max_map_count (a worker crashed so at 96% of the suite, and
    another reached 62k maps). Clearing after every module recompiles shared functions: that run took 23.7 min,
    19.3 without clearing (the machine was not otherwise idle in the first)."""
    yield
    if _memory_maps() > MAX_MAPS:
        jax.clear_caches()
