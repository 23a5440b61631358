import jax
import pytest


@pytest.fixture
def x64():
    """Run the test with 64-bit floats (for comparisons against references)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_executables():
    """Drop every compiled executable after each test module. An xdist worker runs many modules and would
    otherwise keep all of them, about three memory maps each; XLA's CPU compiler segfaults once the process
    reaches the kernel's vm.max_map_count (65530 here): a worker crashed so at 96% of the suite, with 30k maps
    at 66%."""
    yield
    jax.clear_caches()
