"""Test setup: 8 forced CPU devices (for mesh tests) must be set before jax is imported."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path  # noqa: E402


import pytest  # noqa: E402


def shared_data_dir() -> Path:
    """The real datasets: $S3FT_DATA_DIR, else ../shared/data beside the checkout. Tests that
    need them are skipped, with the reason, on a machine that has no copy."""
    path = Path(os.environ.get("S3FT_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"dataset directory {path} not found: set S3FT_DATA_DIR to run this test")
    return path


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory) -> Path:
    """A private S3FT_HOME with the embedded model built once for the whole session."""
    from s3ft_jax.models.embedded import ensure_embedded_model

    home = tmp_path_factory.mktemp("s3ft_home")
    os.environ["S3FT_HOME"] = str(home)
    ensure_embedded_model("smollm2-135m-instruct", home=home)
    return home
