import jax
import pytest


@pytest.fixture
def x64():
    """Run the test with 64-bit floats (for comparisons against references)."""
    with jax.enable_x64(True):
        yield
