"""The web console in a real browser (Debian chromium, headless, via Playwright) against the live server:
enter a key, see the forget sets, register one (watching its build), tune and revoke it with a reason, run
an A/B compare and read both panes, as a user clicks through."""

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


#: A build waits behind others on the server's single builder thread: minutes on a loaded CPU.
BUILD_MS = 600_000


def use_admin_key(page: Any, live: Any) -> None:
    """Enter the admin key as a user would (each test can run on its own)."""
    page.fill("#api-key", live.KEYS["admin"])
    page.click("#use-key")
    page.wait_for_selector("#sets-message.ok")

def register_in_console(page: Any, name: str, reason: str, text: str, subjects: str | None = None) -> str:
    """Fill the console's registration form for a one-document set, submit, and return the new id
    (asserting the console said "registered")."""
    page.fill("#reg-name", name)
    page.fill("#reg-requested-by", "browser test")
    page.fill("#reg-reason", reason)
    if subjects is not None:
        page.fill("#reg-subjects", subjects)
    page.fill("#reg-jsonl", json.dumps({"text": text}))
    page.click("#register")
    page.wait_for_selector("#register-message.ok, #register-message.error")
    message = page.text_content("#register-message")
    assert message.startswith("registered"), message
    return str(message.split()[1])



def active_count(page: Any) -> int:
    """The header's active-set count, as the page shows it."""
    return int(page.get_attribute("#server-status", "data-active"))


def wait_active_count(page: Any, count: int) -> None:
    page.wait_for_function(f"document.querySelector('#server-status').dataset.active === '{count}'")


def test_console_has_an_icon(page: Any, live_server: Any) -> None:
    assert page.get_attribute('link[rel="icon"]', "href") == "/static/favicon.svg"
    for path in ("/static/favicon.svg", "/favicon.ico"):
        response = live_server.client.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
        assert response.text.startswith("<svg")


def test_console_shows_where_the_server_keeps_its_registry(page: Any, live_server: Any) -> None:
    ready = live_server.client.get("/readyz").json()
    assert ready["data_dir"] == str(live_server.data_dir.resolve())
    assert ready["registry"].endswith("registry.db")
    page.wait_for_selector("#server-status.ok")
    assert f"data {ready['data_dir']}" in page.text_content("#server-status")


def test_console_registers_from_pasted_jsonl_and_revokes_with_a_reason(page: Any, live_server: Any,
                                                                        live: Any) -> None:
    use_admin_key(page, live)
    page.wait_for_selector("#server-status.ok")
    before = active_count(page)
    fs_id = register_in_console(page, "console-set", "console check", "Pellucid the tortoise repairs clocks in Ghent.")
    row = f'#sets-table tr[data-id="{fs_id}"]'
    page.wait_for_selector(f"{row} td.badge.active", timeout=BUILD_MS)  # the list polls while it builds
    assert page.text_content(f"{row} td.steering") == "yes"
    wait_active_count(page, before + 1)  # the header count follows the registry
    page.fill(f"{row} input.reason", "browser test done")
    page.click(f"{row} button.danger")
    page.wait_for_selector(f"{row} td.badge.revoked")
    assert page.text_content(f"{row} td.steering") == "revoked"  # not "enabled yes"
    assert page.text_content("#sets-message") == f"revoked {fs_id}: browser test done"
    wait_active_count(page, before)
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
    info = expected["steered"]["guardit"]
    if info.get("abstained"):
        assert page.is_visible("#abstained") and "abstained" in page.text_content("#abstained")
    else:
        assert not page.is_visible("#abstained")
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


def test_console_shows_build_progress_while_a_set_builds(page: Any, live_server: Any, live: Any) -> None:
    use_admin_key(page, live)
    body = live.tiny_set("progress-set", "Quillon the heron keeps a lighthouse on Tiree.")
    seen: list[str] = []
    fs_id = register_in_console(page, body["name"], "progress check", body["documents"][0])
    row = f'#sets-table tr[data-id="{fs_id}"]'
    bar = page.query_selector(f"{row} progress.build")  # rendered from the 202 onwards, until active
    if bar is not None:
        seen.append(page.text_content(f"{row} span.phase"))
    page.wait_for_selector(f"{row} td.badge.active", timeout=BUILD_MS)
    assert page.query_selector(f"{row} progress.build") is None
    record = live_server.request("GET", f"/v1/forget-sets/{fs_id}").json()
    assert record["status"] == "active"
    assert all(text for text in seen)  # a phase name, or "waiting for the builder"
    live_server.revoke(fs_id)


def test_console_edits_threshold_alpha_and_enabled_with_an_audited_reason(
        page: Any, live_server: Any, live: Any) -> None:
    use_admin_key(page, live)
    fs_id = live_server.register(live.tiny_set("edit-set", "Ottoline the otter runs a ferry in Oban."))
    live_server.wait_status(fs_id, timeout_s=BUILD_MS / 1000)
    page.click("#refresh-sets")
    row = f'#sets-table tr[data-id="{fs_id}"]'
    page.wait_for_selector(f"{row} td.badge.active")
    page.click(f"{row} button.edit")
    page.fill("#edit-threshold", "0.7")
    page.click("#edit-save")
    page.wait_for_selector("#edit-message.error")  # no reason: refused before any request
    assert "reason" in page.text_content("#edit-message")
    page.fill("#edit-alpha", "0.25")
    page.uncheck("#edit-enabled")
    page.fill("#edit-reason", "tuning after review")
    page.click("#edit-save")
    page.wait_for_selector("#edit-message.ok")
    assert page.text_content("#edit-message") == f"updated {fs_id}: threshold 0.7, alpha 0.25, disabled"
    record = live_server.request("GET", f"/v1/forget-sets/{fs_id}").json()
    assert (record["threshold"], record["alpha"], record["enabled"]) == (0.7, 0.25, False)
    page.wait_for_function(f"document.querySelector('{row} td.steering').textContent === 'disabled'")
    assert page.text_content(f"{row} td:nth-child(7)") == "0.70"
    update = [e for e in live_server.audit(fs_id) if e["action"] == "update"][-1]
    assert update["reason"] == "tuning after review"
    live_server.revoke(fs_id)


def test_a_failed_submit_replaces_the_previous_success_message(page: Any, live_server: Any,
                                                               live: Any) -> None:
    use_admin_key(page, live)
    fs_id = register_in_console(page, "stale-check", "message check", "Marisol the crab paints lighthouses in Vigo.")
    page.fill("#reg-name", "")
    page.click("#register")
    page.wait_for_selector("#register-message.error")
    assert page.text_content("#register-message") == "expected a name, found it empty"
    page.fill("#reg-name", "stale-check-2")
    page.fill("#reg-jsonl", "not json")
    page.click("#register")
    page.wait_for_selector("#register-message.error")
    assert page.text_content("#register-message") == "line 1: expected a JSON object"
    live_server.wait_status(fs_id, timeout_s=BUILD_MS / 1000)
    live_server.revoke(fs_id)


def test_console_registers_explicit_subjects(page: Any, live_server: Any, live: Any) -> None:
    use_admin_key(page, live)
    fs_id = register_in_console(page, "subjects-set", "subjects check",
                                "Marisol the crab paints lighthouses in Vigo.", subjects="Marisol, the Vigo crab")
    record = live_server.request("GET", f"/v1/forget-sets/{fs_id}").json()
    assert record["subjects"] == ["Marisol", "the Vigo crab"]
    live_server.wait_status(fs_id, timeout_s=BUILD_MS / 1000)
    live_server.revoke(fs_id)
