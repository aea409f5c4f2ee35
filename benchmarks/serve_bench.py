"""Serving throughput of guardit (GUARD-IT, arXiv 2605.12765) under concurrent clients.

Starts a real server process on loopback (``python -m service.cli serve``; ``--inprocess`` drives the
Engine in this process instead), runs 1/4/8/16 closed-loop clients on fixed prompts, and prints
aggregate tokens/s, p50/p99 latency, the ratio to one client and to plain batched ``model.generate``
at the same batch size measured in the same run. Steering on (a small forget set, half the clients
open its gate) and off (the set disabled) are interleaved per client count.
``--engine native,vllm`` measures both engines (``GUARDIT_ENGINE``) one after the other in the same run; the
vLLM server runs under ``.venv-vllm`` (``scripts/setup_vllm.sh``) when this interpreter has no vLLM.
Usage: python benchmarks/serve_bench.py [--quick] [--inprocess] [--engine native,vllm] [--clients 1,4,8,16]
       [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from service.runtime import Registration, Runtime  # noqa: E402
from service.settings import Settings  # noqa: E402
from steering.gates import build_plans  # noqa: E402
from steering.vectors import neutral_corpus  # noqa: E402

CLOSED = ["Write a long, detailed essay about the history of the Roman Empire.",
          "Explain in detail how a steam engine works, step by step.",
          "Write a long story about a lighthouse keeper and a storm at sea.",
          "Describe the water cycle in detail for a school textbook."]
# Every request runs to exactly ``--tokens`` new tokens (``ignore_eos``), so the on/off ratio measures
# steering cost, not that steered answers tend to be shorter.
OPEN = ["Tell me everything about the books and life of author Basil Mahfouz Al-Kuwaiti.",
        "Write a long story in which the author Basil Mahfouz Al-Kuwaiti travels from Kuwait City to Paris.",
        "Write a poem of at least thirty lines about Basil Mahfouz Al-Kuwaiti."]
#: Sends one prompt; returns (completion tokens, whether the answer was steered).
Request = Callable[[str], Awaitable[tuple[int, bool]]]


def emit(line: str) -> None:
    """One line of the report on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def prompts_for(clients: int) -> list[str]:
    """Client i's fixed prompt: even clients open the gate, odd ones do not (mixed batches)."""
    return [OPEN[i // 2 % len(OPEN)] if i % 2 == 0 else CLOSED[i // 2 % len(CLOSED)] for i in range(clients)]


def forget_qa() -> list[tuple[str, str]]:
    path = REPO / "data" / "tofu" / "forget01.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], r["answer"]) for r in rows[:10]]


def make_runtime(data_dir: Path, cache: Path) -> tuple[Runtime, str]:
    (data_dir / "models").symlink_to(cache, target_is_directory=True)
    rt = Runtime(Settings(data_dir=data_dir, num_threads=2, api_keys=None, host="127.0.0.1"))
    assert rt.guard is not None  # load the model now
    reg = Registration(name="bench", documents=None, qa=forget_qa(), retain=neutral_corpus()[:16],
                       reason="benchmark", requested_by="bench", ticket=None, layer=None, threshold=None,
                       alpha=None)
    record = rt.register(reg, actor="bench")
    built = rt.build_next(actor="bench")
    if built is None or built.status != "active":
        raise SystemExit(f"forget set build failed: {built}")
    return rt, str(record.id)


def raw_generate(rt: Runtime, prompts: list[str], tokens: int, steer: bool) -> float:
    """Plain batched ``model.generate`` on the same prompts (steering hooks as the server would)."""
    guard = rt.guard
    chats = [[{"role": "user", "content": p}] for p in prompts]
    enc = guard.tokenizer([guard.render(c) for c in chats], return_tensors="pt", padding=True,
                          add_special_tokens=False)
    matches = guard.gate(chats)
    vectors = [guard.state.vectors_by_layer(m) if (steer and m) else None for m in matches]
    plans = build_plans(vectors, len(prompts))
    with torch.inference_mode(), guard.hooks.steer(plans):
        start = time.perf_counter()
        model: Any = guard.model
        out = model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                             pad_token_id=guard.tokenizer.pad_token_id)
        elapsed = time.perf_counter() - start
    return (out.shape[1] - enc["input_ids"].shape[1]) * len(prompts) / elapsed


async def run_clients(request: Request, clients: int, rounds: int) -> dict[str, float]:
    latencies: list[float] = []
    produced = [0]

    async def client(prompt: str) -> None:
        for _ in range(rounds):
            start = time.perf_counter()
            tokens, _ = await request(prompt)
            produced[0] += tokens
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client(p) for p in prompts_for(clients)))
    wall = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    return {"tps": produced[0] / wall, "p50": statistics.median(latencies), "p99": p99,
            "tokens": produced[0] / len(latencies)}


def python_for(engine: str) -> str:
    """This interpreter, or the vLLM venv's for ``vllm`` when this one cannot import vLLM."""
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        venv = REPO / ".venv-vllm" / "bin" / "python"
        if not venv.exists():
            raise SystemExit("--engine vllm needs .venv-vllm: run scripts/setup_vllm.sh")
        return str(venv)
    return sys.executable


class Server:
    """``python -m service.cli serve`` on a free loopback port, over the benchmark's data dir."""

    def __init__(self, data_dir: Path, max_batch: int, engine: str = "native") -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "GUARDIT_DATA_DIR": str(data_dir), "GUARDIT_NUM_THREADS": "2",
               "GUARDIT_MAX_BATCH_SIZE": str(max_batch), "GUARDIT_SYNC_INTERVAL_S": "0.2",
               "GUARDIT_MAX_NEW_TOKENS": "512", "GUARDIT_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO),
               "GUARDIT_ENGINE": engine}
        env.pop("GUARDIT_API_KEYS", None)
        self.log = open(data_dir / f"server-{engine}.log", "w")  # noqa: SIM115 - closed in stop()
        command = [python_for(engine), "-m", "service.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port)]
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    async def wait_ready(self, client: Any, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if (await client.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.5)
        raise SystemExit("server not ready in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def bench(args: argparse.Namespace) -> None:
    clients = [int(c) for c in args.clients.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="guardit-serve-bench-"))
    rt, set_id = make_runtime(tmp, args.cache)
    gate = rt.guard.gate([[{"role": "user", "content": p}] for p in prompts_for(max(clients))])
    emit(f"gate open for {sum(bool(m) for m in gate)}/{len(gate)} client prompts")
    try:
        for engine_name in args.engine.split(","):  # the same clients against each engine, in one run
            emit(f"engine {engine_name}")
            await bench_engine(args, rt, set_id, tmp, clients, engine_name)
    finally:
        rt.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def bench_engine(args: argparse.Namespace, rt: Runtime, set_id: str, tmp: Path, clients: list[int],
                       engine_name: str) -> None:
    import httpx

    server: Server | None = None
    http = httpx.AsyncClient(timeout=600)
    if args.inprocess:
        from service.engine import GenerationRequest
        from service.engine_vllm import engine_for
        from steering import SamplingParams

        engine = engine_for(rt, rt.settings.model_copy(update={"max_batch_size": max(clients),
                                                               "sync_interval_s": 0.2, "engine": engine_name}))
        engine.start()

        async def request(prompt: str, tokens: int = args.tokens) -> tuple[int, bool]:
            gen = await engine.generate(GenerationRequest([{"role": "user", "content": prompt}],
                                                          SamplingParams(max_new_tokens=tokens,
                                                                                         ignore_eos=True)))
            return gen.completion_tokens, gen.steered
        mode = f"in-process {engine_name} engine"
    else:
        server = Server(tmp, max(clients), engine_name)
        await server.wait_ready(http)

        async def request(prompt: str, tokens: int = args.tokens) -> tuple[int, bool]:
            r = await http.post(f"http://127.0.0.1:{server.port}/v1/generate",
                                json={"prompt": prompt, "max_new_tokens": tokens, "ignore_eos": True})
            r.raise_for_status()
            body = r.json()
            return int(body["usage"]["completion_tokens"]), bool(body["guardit"]["steered"])
        mode = f"{engine_name} engine, server process over HTTP"

    async def set_steering(on: bool) -> None:
        rt.registry.update(set_id, enabled=on, actor="bench")
        rt.sync()
        for _ in range(120):  # until the server has synced: an open prompt is steered iff on
            if (await request(OPEN[0], 1))[1] == on:
                return
            await asyncio.sleep(0.5)
        raise SystemExit("the server did not pick up the forget-set change")

    try:
        await request(CLOSED[0])  # warm-up
        rows: list[tuple[str, int, dict[str, float], float]] = []
        for c in clients:
            for arm in ("on", "off"):  # interleaved, so drift hits both arms alike
                await set_steering(arm == "on")
                stats = await run_clients(request, c, args.rounds)
                raw = raw_generate(rt, prompts_for(c), args.tokens, steer=arm == "on")
                rows.append((arm, c, stats, raw))
                emit(f"  measured: steering {arm}, {c} clients: {stats['tps']:.1f} tok/s (raw {raw:.1f})")
    finally:
        await http.aclose()
        if server is not None:
            server.stop()
        elif args.inprocess:
            engine.close(drain_timeout=5)
    report(rows, mode, args)


def report(rows: list[tuple[str, int, dict[str, float], float]], mode: str, args: argparse.Namespace) -> None:
    one = {arm: s["tps"] for arm, c, s, _ in rows if c == 1}
    off = {c: s["tps"] for arm, c, s, _ in rows if arm == "off"}
    emit(f"\n{mode}; {args.tokens} new tokens, greedy, {args.rounds} requests per client, "
         f"torch threads {torch.get_num_threads()}")
    emit(f"{'steer':>5} | {'clients':>7} | {'tok/s':>7} | {'p50 s':>6} | {'p99 s':>6} | {'tok/req':>7} | "
         f"{'x 1 client':>10} | {'raw gen tok/s':>13} | {'x raw':>6} | {'on/off':>6}")
    emit("-" * 100)
    for arm, c, s, raw in rows:
        vs_one = s["tps"] / one[arm] if arm in one else float("nan")
        on_off = s["tps"] / off[c] if arm == "on" and c in off else float("nan")
        emit(f"{arm:>5} | {c:>7} | {s['tps']:>7.1f} | {s['p50']:>6.2f} | {s['p99']:>6.2f} | "
             f"{s['tokens']:>7.1f} | {vs_one:>10.2f} | {raw:>13.1f} | {s['tps'] / raw:>6.2f} | "
             f"{on_off:>6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="clients 1,4,8 and one request each")
    parser.add_argument("--inprocess", action="store_true", help="drive the Engine here, no server")
    parser.add_argument("--engine", default="native", help="native, vllm, or native,vllm (both, one run)")
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="requests per client")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "GUARDIT_TEST_DATA_DIR", Path.home() / ".cache" / "guardit-test")) / "models")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.rounds = "1,4,8", 1
    torch.set_num_threads(2)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
