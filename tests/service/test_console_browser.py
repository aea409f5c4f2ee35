"""The web console in a real browser (Debian chromium, headless, via Playwright) against the live server:
enter a key, see the forget sets, register and revoke one, run an A/B compare and read both panes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def script_errors() -> list[str]:
    """Uncaught script errors of the console page."""
    return []


@pytest.fixture(scope="module")
def page(live_server: Any, script_errors: list[str]) -> Iterator[Any]:
    """A chromium page on the console (skipped without chromium, except when CI=true)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Debian chromium (/usr/bin/chromium) is required when CI=true")
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.on("pageerror", lambda exc: script_errors.append(str(exc)))
        page.set_default_timeout(60_000)
        page.goto(live_server.base_url + "/")
        yield page
        browser.close()


def test_console_lists_forget_sets_only_with_a_key(page: Any, live: Any, tofu_set: dict[str, Any]) -> None:
    page.wait_for_selector("#sets-message.error")  # no key yet: the API said 401
    assert "API key" in page.text_content("#sets-message")
    page.fill("#api-key", live.KEYS["admin"])
    page.click("#use-key")
    row = page.wait_for_selector(f'#sets-table tr[data-id="{tofu_set["id"]}"]')
    assert row.query_selector("td:nth-child(2)").text_content() == "tofu-forget01"
    assert row.query_selector("td:nth-child(3)").text_content() in {"active", "revoked"}
    page.wait_for_selector("#server-status.ok")
    page.wait_for_selector("#audit-table tbody tr")


def test_console_registers_from_pasted_jsonl_and_revokes_with_a_reason(page: Any, live_server: Any) -> None:
    page.fill("#reg-name", "console-set")
    page.fill("#reg-requested-by", "browser test")
    page.fill("#reg-reason", "console check")
    page.fill("#reg-jsonl", json.dumps({"text": "Pellucid the tortoise repairs clocks in Ghent."}))
    page.click("#register")
    page.wait_for_selector("#register-message.ok, #register-message.error")
    message = page.text_content("#register-message")
    assert message.startswith("registered"), message
    fs_id = page.text_content("#register-message").split()[1]
    row = f'#sets-table tr[data-id="{fs_id}"]'
    page.wait_for_selector(f"{row} td.badge.active")  # the list polls while the set builds
    page.fill(f"{row} input.reason", "browser test done")
    page.click(f"{row} button.danger")
    page.wait_for_selector(f"{row} td.badge.revoked")
    assert live_server.status(fs_id) == "revoked"
    assert live_server.audit(fs_id)[-1]["reason"] == "browser test done"
    newest = page.wait_for_selector("#audit-table tbody tr:first-child td.badge.revoke")  # audit refreshed
    assert newest is not None
    assert page.text_content("#audit-table tbody tr:first-child td:last-child") == "browser test done"


def test_console_compare_shows_both_arms_side_by_side(
        page: Any, live_server: Any, live: Any, tofu_set: dict[str, Any], script_errors: list[str]) -> None:
    question = live.tofu("forget01")[1]["question"]
    page.fill("#compare-prompt", question)
    page.fill("#compare-max", "12")
    page.fill("#compare-seed", "0")
    page.click("#compare-run")
    page.wait_for_selector("#compare-message.ok, #compare-message.error")
    assert "tokens" in page.text_content("#compare-message"), page.text_content("#compare-message")
    expected = live_server.request("POST", "/v1/compare", "compare",
                                   json={"prompt": question, "max_new_tokens": 12, "seed": 0}).json()
    assert page.text_content("#steered-text") == expected["steered"]["text"]
    assert page.text_content("#unsteered-text") == expected["unsteered"]["text"]
    matched = [td.text_content() for td in page.query_selector_all("#matched-table tbody td.mono")]
    assert matched == [m["forget_set_id"] for m in expected["matched"]]
    if expected["first_divergent_token"] is None:
        assert page.text_content("#divergence") == "identical output"
    else:
        assert f"token #{expected['first_divergent_token']}" in page.text_content("#divergence")
        marks = [page.text_content(f"#{arm}-text mark.divergent") for arm in ("steered", "unsteered")]
        assert all(marks) and marks[0] != marks[1]
    shot = os.environ.get("GUARDIT_TEST_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)
    assert script_errors == []
