"""Schema-driven fuzzing of the retriever service's HTTP API (schemathesis): whatever a client sends that the
OpenAPI schema allows (and much that it does not, in the negative phase), the service never answers 5xx.

Bounded for CI (``CHATIR_FUZZ_EXAMPLES`` cases per operation, 15 by default); the long version of issue #13 is
``CHATIR_FUZZ_EXAMPLES=500 python -m pytest tests/test_service_fuzz.py`` (docs/reliability.md).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from chatir.settings import Settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is installed by deploy/setup.sh")
from hypothesis import HealthCheck, settings  # noqa: E402 -- after the importorskip above

EXAMPLES = int(os.environ.get("CHATIR_FUZZ_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def api_schema(tiny_clip_dir, tmp_path_factory):
    """The service's own OpenAPI schema, served by a real service (tiny CLIP, embedded store, 3 images)."""
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "images"
    folder.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    service_settings = Settings(
        _env_file=None,
        home=root / "home",
        model=str(tiny_clip_dir),
        device="cpu",
        index_roots=[root],
        api_key=None,
        qdrant_url=None,
    )
    service = RetrieverService.open(service_settings)
    from chatir.schemas import IndexRequest

    service.run_index(IndexRequest(paths=[str(folder)]))
    app = create_app(service_settings, service)
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        service.close()


def _fuzzer(operation, calls: dict[str, int], check):
    """A hypothesis test of one operation (a factory: each binds its own operation)."""
    from hypothesis import given

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy())
    def run(case) -> None:
        calls[operation.label] = calls.get(operation.label, 0) + 1
        case.call_and_validate(checks=[check])

    return run


def test_no_input_makes_the_service_fail(api_schema):
    """Every operation of the schema, ``EXAMPLES`` generated requests each (valid and invalid ones)."""
    from schemathesis.checks import not_a_server_error

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]  # the schema names every route
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    for operation in operations:
        run = _fuzzer(operation, calls, not_a_server_error)
        try:
            run()
        except Exception as error:  # noqa: BLE001 -- collect every operation's failure, report them together
            failures[operation.label] = str(error)[:2000]
    assert not failures, failures
    assert set(calls) == {op.label for op in operations} and sum(calls.values()) >= 3 * len(operations), calls
    print(f"{sum(calls.values())} requests over {len(operations)} operations: {calls}")
