"""Serving throughput of guardit (GUARD-IT, arXiv 2605.12765) under concurrent clients, against plain
batched ``model.generate`` in the same run and the same dtype.

Starts a real server process on loopback (``python -m service.cli serve``; ``--inprocess`` drives the
Engine in this process instead) and runs closed-loop clients on fixed prompts, every request to exactly
``--tokens`` new tokens (``ignore_eos``). Arms, interleaved per client count so drift hits them alike:
``off`` (every forget set disabled), ``on`` (one small forget set, half the clients open its gate),
``16 sets`` (16 forget sets, one TOFU author each, client i asks about author i: up to 16 different
steering vectors in flight), then ``on, no policy`` and ``16 sets, no policy`` on a second server with
the answer policy switched off (the steering's own cost; the policy's second generations are measured
apart: it stays on in production). ``raw`` is batched ``model.generate``
on the ``off`` prompts, batch = clients, unsteered, measured after every arm; the baseline is their mean.
``served`` counts the final answers' tokens; ``decoded`` the tokens the model produced
(``guardit_generated_tokens_total``: answers generated again by the policy included).
``--engine native,vllm`` runs every arm against each engine (``GUARDIT_ENGINE``; vLLM from .venv-vllm
when this interpreter has none) in the same run, one after the other; the table labels rows by engine.
Usage: python benchmarks/serve_bench.py [--quick] [--inprocess] [--clients 16] [--rounds 4] [--tokens 64]
       [--dtype auto|float32|bfloat16] [--engine native|vllm|native,vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import AsyncIterator, Awaitable, Callable
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
#: Sends one prompt (and optionally its token budget); returns (completion tokens, whether it was steered).
Request = Callable[..., Awaitable[tuple[int, bool]]]


def emit(line: str) -> None:
    """One line of the report on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def prompts_for(clients: int) -> list[str]:
    """Client i's fixed prompt: even clients open the gate, odd ones do not (mixed batches)."""
    return [OPEN[i // 2 % len(OPEN)] if i % 2 == 0 else CLOSED[i // 2 % len(CLOSED)] for i in range(clients)]


def read_qa(name: str) -> list[tuple[str, str]]:
    path = REPO / "data" / "tofu" / name
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], r["answer"]) for r in rows]


#: TOFU forget10 holds 20 authors, 20 QA pairs each; the ``16 sets`` arm builds one set per author from
#: questions 1-6 and asks question 1 (it names the author; question 0 often does not).
TOFU_PER_AUTHOR = 20


def author_prompts(n: int) -> list[str]:
    """The ``16 sets`` arm's prompts: client i asks about author i % 16."""
    qa = read_qa("forget10.jsonl")
    return [qa[(i % 16) * TOFU_PER_AUTHOR + 1][0] for i in range(n)]


def build_set(rt: Runtime, name: str, qa: list[tuple[str, str]], alpha: float | None) -> str:
    reg = Registration(name=name, documents=None, qa=qa, retain=neutral_corpus()[:16], reason="benchmark",
                       requested_by="bench", ticket=None, layer=None, threshold=None, alpha=alpha)
    record = rt.register(reg, actor="bench")
    built = rt.build_next(actor="bench")
    if built is None or built.status != "active":
        raise SystemExit(f"forget set build failed: {built}")
    return str(record.id)


def make_runtime(data_dir: Path, cache: Path, dtype: str, quick: bool) -> tuple[Runtime, str, list[str]]:
    """A runtime over a fresh registry: the ``bench`` set (alpha calibrated as in production, unless
    ``quick``) and 16 author sets (alpha 0.3: one calibration each would take minutes), all built here."""
    (data_dir / "models").symlink_to(cache, target_is_directory=True)
    rt = Runtime(Settings(data_dir=data_dir, num_threads=2, api_keys=None, host="127.0.0.1", dtype=dtype,
                          verify_on_build=False))
    assert rt.guard is not None  # load the model now
    bench = build_set(rt, "bench", read_qa("forget01.jsonl")[:10], 0.3 if quick else None)
    qa = read_qa("forget10.jsonl")
    authors = [build_set(rt, f"author-{k}", qa[k * TOFU_PER_AUTHOR + 1:k * TOFU_PER_AUTHOR + 7], 0.3)
               for k in range(16)]
    return rt, bench, authors


def raw_generate(rt: Runtime, prompts: list[str], tokens: int, steer: bool = False) -> float:
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
    return float((out.shape[1] - enc["input_ids"].shape[1]) * len(prompts) / elapsed)


async def run_clients(request: Request, prompts: list[str], rounds: int) -> dict[str, float]:
    latencies: list[float] = []
    produced = [0]

    async def client(prompt: str) -> None:
        for _ in range(rounds):
            start = time.perf_counter()
            tokens, _ = await request(prompt)
            produced[0] += tokens
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client(p) for p in prompts))
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

    def __init__(self, data_dir: Path, max_batch: int, dtype: str, extra_env: dict[str, str] | None = None,
                 engine: str = "native") -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "GUARDIT_DATA_DIR": str(data_dir), "GUARDIT_NUM_THREADS": "2",
               "GUARDIT_MAX_BATCH_SIZE": str(max_batch), "GUARDIT_SYNC_INTERVAL_S": "0.2",
               "GUARDIT_MAX_NEW_TOKENS": "512", "GUARDIT_LOG_LEVEL": "WARNING", "GUARDIT_DTYPE": dtype,
               "GUARDIT_VERIFY_ON_BUILD": "false", "PYTHONPATH": str(REPO), "GUARDIT_ENGINE": engine,
               **(extra_env or {})}
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


Arm = tuple[str, int, dict[str, float]]


async def bench(args: argparse.Namespace) -> None:
    import httpx

    clients = [int(c) for c in args.clients.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="guardit-serve-bench-"))
    rt, bench_set, authors = make_runtime(tmp, args.cache, args.dtype, args.quick)
    widest = max(clients)
    gate = rt.guard.gate([[{"role": "user", "content": p}] for p in prompts_for(widest)])
    emit(f"model dtype {rt.dtype}; gate open for {sum(bool(m) for m in gate)}/{len(gate)} client prompts")
    gate16 = rt.guard.gate([[{"role": "user", "content": p}] for p in author_prompts(widest)])
    opened = {m.forget_set_id for ms in gate16 for m in ms}
    emit(f"16 sets arm: gate open for {sum(bool(m) for m in gate16)}/{len(gate16)} prompts, {len(opened)} "
         "different sets (all 17 sets enabled then)")
    http = httpx.AsyncClient(timeout=600)
    rows: list[Arm] = []
    raws: dict[int, list[float]] = {c: [] for c in clients}
    try:
        for engine in args.engine.split(","):  # the same clients against each engine, in one run
            await bench_engine(args, rt, tmp, widest, http, engine, bench_set, authors, clients, rows, raws)
    finally:
        await http.aclose()
        rt.close()
        shutil.rmtree(tmp, ignore_errors=True)
    report(rows, {c: statistics.mean(v) for c, v in raws.items() if v}, args)


async def bench_engine(args: argparse.Namespace, rt: Runtime, tmp: Path, widest: int, http: Any, engine: str,
                       bench_set: str, authors: list[str], clients: list[int], rows: list[Arm],
                       raws: dict[int, list[float]]) -> None:
    """Every arm on one engine; rows are labelled with the engine when several run."""
    label = (lambda name: f"{engine}: {name}") if "," in args.engine else (lambda name: name)

    async def set_steering(request: Request, enabled: set[str], probe: str) -> None:
        for set_id in [bench_set, *authors]:
            rt.registry.update(set_id, enabled=set_id in enabled, actor="bench")
        rt.sync()
        for _ in range(120):  # until the server has synced: the probe is steered iff a set is on
            if (await request(probe, 1))[1] == bool(enabled):
                return
            await asyncio.sleep(0.5)
        raise SystemExit("the server did not pick up the forget-set change")

    async def run_arms(request: Request, decoded: Callable[[], Awaitable[float]],
                       arms: list[tuple[str, set[str], Callable[[int], list[str]], str]]) -> None:
        await request(CLOSED[0])  # warm-up
        for c in clients:
            for name, enabled, prompts, probe in arms:
                await set_steering(request, enabled, probe)
                rows.append((label(name), c, await measure(request, decoded, prompts(c), args.rounds)))
                raws[c].append(raw_generate(rt, prompts_for(c), args.tokens))
                emit(f"  measured: {label(name)}, {c} clients: {rows[-1][2]['tps']:.1f} tok/s "
                     f"(raw {raws[c][-1]:.1f})")

    every = {bench_set, *authors}
    first_author = author_prompts(1)[0]
    async with serving(args, rt, tmp, widest, http, policy=True, engine=engine) as (request, decoded):
        await run_arms(request, decoded, [("off", set(), prompts_for, OPEN[0]),
                                          ("on", {bench_set}, prompts_for, OPEN[0]),
                                          ("16 sets", every, author_prompts, first_author)])
    # The steering alone, without the answer policy's second generations (its cost is measured apart).
    async with serving(args, rt, tmp, widest, http, policy=False, engine=engine) as (request, decoded):
        await run_arms(request, decoded, [("on, no policy", {bench_set}, prompts_for, OPEN[0]),
                                          ("16 sets, no policy", every, author_prompts, first_author)])


async def measure(request: Request, decoded: Callable[[], Awaitable[float]], prompts: list[str],
                  rounds: int) -> dict[str, float]:
    """One arm: the clients' statistics plus the decoded tokens/s over the same wall time."""
    before, start = await decoded(), time.perf_counter()
    stats = await run_clients(request, prompts, rounds)
    stats["decoded_tps"] = (await decoded() - before) / (time.perf_counter() - start)
    return stats


@contextlib.asynccontextmanager
async def serving(args: argparse.Namespace, rt: Runtime, data_dir: Path, max_batch: int, http: Any, *,
                  policy: bool, engine: str = "native"
                  ) -> AsyncIterator[tuple[Request, Callable[[], Awaitable[float]]]]:
    """A server (or the in-process Engine) over the benchmark's registry: (request, decoded tokens)."""
    switches = {"answer_recheck": policy, "leak_check": policy}
    if args.inprocess:
        from service.engine import GenerationRequest
        from service.engine_vllm import engine_for
        from service.metrics import GENERATED_TOKENS
        from steering import SamplingParams

        running = engine_for(rt, rt.settings.model_copy(update={
            "max_batch_size": max_batch, "sync_interval_s": 0.2, "engine": engine, **switches}))
        running.start()

        async def request(prompt: str, tokens: int = args.tokens) -> tuple[int, bool]:
            gen = await running.generate(GenerationRequest([{"role": "user", "content": prompt}],
                                                          SamplingParams(max_new_tokens=tokens, ignore_eos=True)))
            return gen.completion_tokens, gen.steered

        async def decoded() -> float:
            return float(GENERATED_TOKENS._value.get())

        try:
            yield request, decoded
        finally:
            running.close(drain_timeout=5)
        return
    env = {f"GUARDIT_{k.upper()}": str(v).lower() for k, v in switches.items()}
    server = Server(data_dir, max_batch, args.dtype, env, engine)
    try:
        await server.wait_ready(http)

        async def request(prompt: str, tokens: int = args.tokens) -> tuple[int, bool]:
            r = await http.post(f"http://127.0.0.1:{server.port}/v1/generate",
                                json={"prompt": prompt, "max_new_tokens": tokens, "ignore_eos": True})
            if r.status_code != 200:
                log = Path(server.log.name).read_text(encoding="utf-8", errors="replace")[-3000:]
                raise SystemExit(f"server answered {r.status_code}: {r.text}\nserver log tail:\n{log}")
            body = r.json()
            return int(body["usage"]["completion_tokens"]), bool(body["guardit"]["steered"])

        async def decoded() -> float:
            text = (await http.get(f"http://127.0.0.1:{server.port}/metrics")).text
            return sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("guardit_generated_tokens_total"))

        yield request, decoded
    finally:
        server.stop()


def report(rows: list[Arm], raw: dict[int, float], args: argparse.Namespace) -> None:
    def per(arm: str, name: str) -> str:  # "vllm: on" -> "vllm: <arm>" (ratios within one engine)
        return f"{name.split(': ')[0]}: {arm}" if ": " in name else arm
    by_name = {(name, c): s["tps"] for name, c, s in rows}
    mode = "in-process Engine" if args.inprocess else "server process over HTTP"
    emit(f"\n{mode}; dtype {args.dtype}; {args.tokens} new tokens, greedy, ignore_eos, {args.rounds} requests "
         f"per client; torch threads {torch.get_num_threads()}; raw = batched model.generate, same dtype")
    emit(f"{'arm':>13} | {'clients':>7} | {'served tok/s':>12} | {'decoded tok/s':>13} | {'tok/req':>7} | "
         f"{'p50 s':>6} | {'p99 s':>6} | {'raw tok/s':>9} | {'x raw':>6} | {'x off':>6} | {'x on':>6}")
    emit("-" * 118)
    for name, c, s in rows:
        emit(f"{name:>13} | {c:>7} | {s['tps']:>12.1f} | {s['decoded_tps']:>13.1f} | {s['tokens']:>7.1f} | "
             f"{s['p50']:>6.2f} | {s['p99']:>6.2f} | {raw[c]:>9.1f} | {s['tps'] / raw[c]:>6.2f} | "
             f"{s['tps'] / by_name[per('off', name), c]:>6.3f} | {s['tps'] / by_name[per('on', name), c]:>6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 clients, one request each, no alpha calibration")
    parser.add_argument("--inprocess", action="store_true", help="drive the Engine here, no server")
    parser.add_argument("--clients", default="16", help="comma-separated client counts, e.g. 1,4,8,16")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="requests per client")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--engine", default="native", help="native, vllm, or native,vllm (both, one run)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "GUARDIT_TEST_DATA_DIR", Path.home() / ".cache" / "guardit-test")) / "models")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.rounds = "4", 1
    torch.set_num_threads(2)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
