"""Verification report per forget set, on the real embedded model: made through the answer policy
when a set becomes active, stored with it, served to the forget scope, deleted on revocation."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from steering.probes import KINDS
from tests.service import conftest_engine

pytestmark = pytest.mark.integration

NEWTON = ["Isaac Newton formulated the laws of motion and universal gravitation.",
          "Isaac Newton was born in Woolsthorpe, England, in 1643.",
          "Newton wrote the Principia Mathematica, published in 1687.",
          "Isaac Newton was a professor of mathematics at Cambridge."]


def test_a_report_is_made_through_the_policy_stored_served_and_deleted_on_revocation(runtime: Any) -> None:
    set_id = conftest_engine.register(runtime, "newton", None, alpha=None, documents=NEWTON)
    try:
        settings = runtime.settings
        runtime.settings = settings.model_copy(update={"verify_per_kind": 1})
        try:
            payload = runtime.verify(set_id, kinds=("own", "homoglyph", "neighbour"))
        finally:
            runtime.settings = settings
        assert payload is not None and payload["forget_set_id"] == set_id and payload["baseline"] is True
        kinds = {k["kind"] for k in payload["kinds"]}
        assert kinds == {"own", "homoglyph", "neighbour"} and kinds <= {*KINDS, "neighbour"}
        forget, neighbours = payload["totals"]["forget"], payload["totals"]["neighbours"]
        assert forget["probes"] == 2 and neighbours["probes"] == 1
        assert 0 <= forget["leaked"] <= forget["known"] <= forget["probes"]
        assert payload["probes"] == forget["probes"] + neighbours["probes"]
        assert payload["markdown"].startswith("# Verification of forget set newton")
        assert runtime.registry.get_report(set_id) == payload
        assert runtime.registry.get(set_id).to_dict()["has_report"] is True

        app = create_app(runtime.settings, runtime=runtime, build_worker=False)
        with TestClient(app) as client:
            got = client.get(f"/v1/forget-sets/{set_id}/report")
            assert got.status_code == 200 and got.json()["totals"] == payload["totals"]
            md = client.get(f"/v1/forget-sets/{set_id}/report", params={"format": "markdown"})
            assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
            assert md.text == payload["markdown"]
            runtime.registry.revoke(set_id, reason="test", actor="tests")
            gone = client.get(f"/v1/forget-sets/{set_id}/report")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    finally:
        if runtime.registry.get(set_id).status != "revoked":
            runtime.registry.revoke(set_id, reason="test", actor="tests")
        runtime.sync()
