"""Schemathesis over the OpenAPI document against a real server, each operation called with the key of
the scope it declares: no server error and every response conforming to the document (status code,
content type, body schema), for valid and invalid generated requests alike.

The operations are driven from one test through schemathesis' strategies (its pytest loader does not
run under this pytest), so every failing operation is reported, not only the first."""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration

#: Examples per operation and generation mode; operations that generate text (each a forward pass per
#: token) get fewer, so the whole run stays within a few minutes on a CPU.
EXAMPLES = 10
GENERATION_EXAMPLES = 3
GENERATING = frozenset({"/v1/generate", "/v1/compare", "/v1/chat/completions", "/v1/completions"})
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _run(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    cheap = mode is GenerationMode.NEGATIVE or operation.path not in GENERATING

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES if cheap else GENERATION_EXAMPLES, deadline=None,
              suppress_health_check=list(HealthCheck),
              derandomize=True, database=None)
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)

    run()


def test_every_operation_conforms_to_the_document(server: Any, live: Any) -> None:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        scope = operation.definition.raw.get("x-guardit-scope")
        headers = {"Authorization": f"Bearer {live.KEYS[scope]}"} if scope else {}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _run(operation, mode, headers)
            except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
                assert mode is GenerationMode.NEGATIVE and not operation.body and not operation.query
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every failure, then report
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
