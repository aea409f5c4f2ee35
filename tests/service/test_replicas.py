"""Two replicas on one PostgreSQL registry: real ``guardit serve`` processes on the embedded model and a
throwaway PostgreSQL server. A set registered through A and built by one replica steers on the other
within the sync interval, a revoke through B stops it on A, every build is claimed by exactly one
replica, the audit log both replicas write is one sequence, and a build whose replica dies is taken
over by the survivor.

One scenario (module fixture) drives both servers; the tests assert on what it recorded. The last
test kills a replica. Cost: two model loads (in parallel), five small builds, seven 8-token requests,
one wait for the stale-build limit (about 85 s on 2 busy cores, most of it loading the model).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from tests.service.live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SYNC_S = 0.5
#: Builds older than this are requeued by the other replica (every build here takes a few seconds).
STALE_S = 8.0
#: Slack on top of a check interval for a loaded 2-core machine.
SLACK_S = 2.0
MAX_NEW = 8
PROMPT = "Where does Marnie Quell keep her violin?"
SECRET = "Marnie Quell keeps her violin in the attic of the old mill at Dunmore."
#: Unrelated sets that make both builders compete for claims; revoked before the steering checks.
EXTRA = ["Tobin Arkwright breeds blue pigeons in Oslo.", "Celia Fenn wrote a cookbook about turnips.",
         "Ovid Marsh repairs clocks on Tuesdays."]


def _generate(server: LiveServer, prompt: str = PROMPT) -> dict[str, Any]:
    """An admin-scope generate (the admin key sees the gate's decision)."""
    response = server.request("POST", "/v1/generate", "admin",
                              json={"prompt": prompt, "max_new_tokens": MAX_NEW, "seed": 0})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _compare(server: LiveServer, prompt: str = PROMPT) -> dict[str, Any]:
    response = server.request("POST", "/v1/compare", "compare",
                              json={"prompt": prompt, "max_new_tokens": MAX_NEW, "seed": 0})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _body(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "documents": [text], "retain": ["The sky is blue.", "Water boils at 100 degrees."],
            "reason": "replica test", "requested_by": "tests", "alpha": 0.5}


@pytest.fixture(scope="module")
def replicas(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Replicas A and B: their own data dirs (model cache shared), one PostgreSQL database."""
    url = pg_server.create_database("replicas")
    env = {"GUARDIT_DATABASE_URL": url, "GUARDIT_SYNC_INTERVAL_S": str(SYNC_S),
           "GUARDIT_RECOVER_STALE_AFTER_S": str(STALE_S),
           "GUARDIT_CALIBRATE_ALPHA": "false", "GUARDIT_NUM_THREADS": "1"}
    servers = [LiveServer(tmp_path_factory.mktemp(f"replica-{n}"), env) for n in "ab"]
    try:
        for server in servers:  # both start at once: they migrate one schema concurrently
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.close()


@pytest.fixture(scope="module")
def scenario(replicas: tuple[LiveServer, LiveServer]) -> dict[str, Any]:
    """Registers through A, steers on the replica that did not build the set, revokes through B, checks
    A; records what each step saw.

    A change committed before a request arrives is seen by it once SYNC_S has passed: the engine syncs
    at its first step unless it synced less than SYNC_S ago, which is then after the commit. So each
    check is one request sent SYNC_S after the change, not a poll.
    """
    a, b = replicas
    seen: dict[str, Any] = {"pids": {a.proc.pid: "a", b.proc.pid: "b"} if a.proc and b.proc else {}}
    seen["base_a"] = _compare(a)
    seen["base_b"] = _compare(b)
    # Claims: four sets registered through both replicas at once; both builders poll the queue.
    bodies = [(a, _body("quell", SECRET))] + [((b, a)[i % 2], _body(f"extra-{i}", t)) for i, t in enumerate(EXTRA)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        ids = list(pool.map(lambda sb: sb[0].register(sb[1], scope="forget"), bodies))
    seen["main"], seen["extra"] = ids[0], ids[1:]
    seen["statuses"] = {fs_id: a.wait_status(fs_id)[-1] for fs_id in ids}
    start = next(e for e in a.audit(seen["main"]) if e["action"] == "build_start")
    seen["builder"] = seen["pids"][start["details"]["pid"]]
    # The builder installs the set as it activates it; the other replica learns it only by polling.
    other = b if seen["builder"] == "a" else a
    time.sleep(SYNC_S)
    seen["steered_other"] = _compare(other)
    seen["steered_a"], seen["steered_b"] = _compare(a), _compare(b)
    for i, fs_id in enumerate(seen["extra"]):
        assert (a, b)[i % 2].revoke(fs_id, "extra set done").status_code == 200
    # Concurrent knob changes through both replicas: audit rows from two writers at once.
    def patch(server: LiveServer, alpha: float) -> int:
        return server.request("PATCH", f"/v1/forget-sets/{seen['main']}", "forget",
                              json={"alpha": alpha, "reason": "tune"}).status_code
    with ThreadPoolExecutor(4) as pool:
        seen["patch_codes"] = list(pool.map(patch, [a, b] * 5, [0.5 + i / 100 for i in range(1, 11)]))
    time.sleep(SYNC_S)
    seen["before_revoke_a"] = _generate(a)
    revoked = b.revoke(seen["main"], "replica test over")
    assert revoked.status_code == 200, revoked.text
    time.sleep(SYNC_S)
    seen["after_a"] = _compare(a)
    seen["audit_a"], seen["audit_b"] = a.audit(), b.audit()
    return seen


def test_a_set_built_on_one_replica_steers_on_the_other_within_the_sync_interval(
        scenario: dict[str, Any]) -> None:
    assert all(status == "active" for status in scenario["statuses"].values()), scenario["statuses"]
    steered = scenario["steered_other"]
    assert [m["forget_set_id"] for m in steered["matched"]] == [scenario["main"]]
    assert steered["steered"]["guardit"]["steered"] is True
    assert steered["first_divergent_token"] is not None
    assert steered["steered"]["text"] != steered["unsteered"]["text"]
    # Both replicas give the same steered answer, and the unsteered arm is the base model.
    assert scenario["steered_a"]["steered"]["text"] == scenario["steered_b"]["steered"]["text"] \
        == steered["steered"]["text"]
    base = scenario["base_a"]["steered"]["text"]
    assert steered["unsteered"]["text"] == scenario["base_b"]["unsteered"]["text"] == base


def test_a_revoke_on_one_replica_stops_steering_on_the_other_and_restores_the_base_output(
        scenario: dict[str, Any]) -> None:
    assert scenario["before_revoke_a"]["guardit"]["steered"] is True
    after = scenario["after_a"]
    assert after["matched"] == [] and after["first_divergent_token"] is None
    assert after["steered"]["guardit"]["steered"] is False
    base = scenario["base_a"]
    assert after["steered"]["text"] == base["unsteered"]["text"] == base["steered"]["text"]


def test_each_build_is_claimed_and_activated_by_exactly_one_replica(scenario: dict[str, Any]) -> None:
    audit = scenario["audit_a"]
    for fs_id in [scenario["main"], *scenario["extra"]]:
        rows = [e for e in audit if e["forget_set_id"] == fs_id]
        starts = [e for e in rows if e["action"] == "build_start"]
        assert len(starts) == 1, rows
        assert [e["action"] for e in rows if e["action"] in ("build_start", "activate", "fail", "recover")] == [
            "build_start", "activate"]
        assert starts[0]["details"]["attempt"] == 1
        assert starts[0]["details"]["pid"] in scenario["pids"]


def test_the_audit_log_is_one_sequence_across_replicas(scenario: dict[str, Any]) -> None:
    audit_a, audit_b = scenario["audit_a"], scenario["audit_b"]
    assert audit_a == audit_b
    ids = [e["id"] for e in audit_a]
    assert ids == sorted(set(ids)) and len(ids) == len(set(ids))
    main = [e["action"] for e in audit_a if e["forget_set_id"] == scenario["main"]]
    changed = sum(code == 200 for code in scenario["patch_codes"])
    assert scenario["patch_codes"] == [200] * 10
    assert main == ["create", "build_start", "activate", *["update"] * changed, "revoke"]
    n_sets = 1 + len(scenario["extra"])
    assert len(audit_a) == 3 * n_sets + changed + n_sets  # create, build_start, activate; updates; revokes
    alphas = [e["details"]["alpha"][1] for e in audit_a if e["action"] == "update"]
    assert len(set(alphas)) == changed  # every concurrent change is its own row, none lost



def test_a_build_whose_replica_dies_is_taken_over_by_the_other(
        replicas: tuple[LiveServer, LiveServer], scenario: dict[str, Any]) -> None:
    from steering.vectors import neutral_corpus
    from tests.service.live_server import tofu

    a, b = replicas
    slow = {"name": "orphan", "qa": [{"question": r["question"], "answer": r["answer"]}
                                     for r in tofu("forget01")[:16]],  # a few seconds
            "retain": neutral_corpus()[:8], "reason": "replica crash", "requested_by": "tests", "alpha": 0.5}
    victim = a.register(slow, scope="forget")
    a.wait_status(victim, done=("building",), timeout_s=60)
    start = next(e for e in a.audit(victim) if e["action"] == "build_start")
    claimer, survivor = (a, b) if scenario["pids"][start["details"]["pid"]] == "a" else (b, a)
    claimer.kill()  # SIGKILL mid-build: nothing in the dead process can requeue it
    assert survivor.wait_status(victim, timeout_s=120)[-1] == "active"
    rows = survivor.audit(victim)
    assert [(e["action"], e["actor"]) for e in rows] == [
        ("create", rows[0]["actor"]), ("build_start", "system:builder"), ("recover", "system:recovery"),
        ("build_start", "system:builder"), ("activate", "system:builder")]
    assert [e["details"]["attempt"] for e in rows if e["action"] == "build_start"] == [1, 2]
    assert rows[3]["details"]["pid"] == survivor.proc.pid if survivor.proc else False
    assert rows[2]["details"]["to"] == "pending"
    # Taken over once the build is STALE_S old (plus one check interval), not earlier, not at a restart.
    age = (datetime.fromisoformat(rows[2]["at"]) - datetime.fromisoformat(rows[1]["at"])).total_seconds()
    assert STALE_S <= age <= STALE_S + STALE_S / 4 + SLACK_S
