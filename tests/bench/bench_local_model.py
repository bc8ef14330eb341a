"""What loading the local model safely costs: tokens/s with ``use_extra_bufts = False`` (how
labelgate loads it, ``guard.models.load_llama``) against llama.cpp's default (weights repacked
into extra buffer types, which crashes on AMX CPUs), side by side in one run.

Each round loads the model once each way, in alternating order, and times prompt processing
and greedy generation of the same prompts; the medians of the rounds are printed, with the
ratio safe/default. Run: ``python tests/bench/bench_local_model.py [--rounds 5]`` (not
collected by pytest). On an AMX machine the default load crashes: run with ``--safe-only``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

from labelgate.guard.models import load_llama, local_model_path

PROMPTS = [
    "Summarise in two sentences why people keep audit logs of what their software agents did.",
    "Write a short, polite email asking a colleague to review a pull request before Friday.",
    "List three things to check before deploying a web service on a Friday afternoon.",
]


def _default_llama(**kwargs: Any) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(local_model_path()), verbose=False, **kwargs)


def _rates(llama: Any, max_tokens: int) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) over the prompts, greedy, no cache between."""
    prompt_tokens = gen_tokens = 0
    prompt_s = gen_s = 0.0
    for text in PROMPTS:
        tokens = llama.tokenize(text.encode())
        llama.reset()
        start = time.perf_counter()
        llama.eval(tokens)
        prompt_s += time.perf_counter() - start
        prompt_tokens += len(tokens)
        start = time.perf_counter()
        made = 0
        for _ in llama.generate(tokens, temp=0.0, reset=True):
            made += 1
            if made >= max_tokens:
                break
        gen_s += time.perf_counter() - start
        gen_tokens += made
    return prompt_tokens / prompt_s, gen_tokens / gen_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--safe-only", action="store_true", help="skip the default load (AMX)")
    args = parser.parse_args()
    kwargs = {"n_ctx": 1024, "n_threads": args.threads, "seed": 0}
    loaders: dict[str, Any] = {"safe": load_llama}
    if not args.safe_only:
        loaders["default"] = _default_llama
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in loaders}
    for round_ in range(args.rounds):
        order = list(loaders) if round_ % 2 == 0 else list(reversed(loaders))
        for name in order:
            llama = loaders[name](**kwargs)
            results[name].append(_rates(llama, args.max_tokens))
            del llama
    print(
        f"{platform.machine()} {platform.processor() or ''}, {args.threads} threads, "
        f"{args.rounds} rounds, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"model: {local_model_path().name}")
    print(f"{'load':10} {'prompt tok/s':>14} {'generated tok/s':>16}")
    medians = {}
    for name, rates in results.items():
        medians[name] = (
            statistics.median(r[0] for r in rates),
            statistics.median(r[1] for r in rates),
        )
        print(f"{name:10} {medians[name][0]:14.1f} {medians[name][1]:16.1f}")
    if "default" in medians:
        safe, default = medians["safe"], medians["default"]
        print(
            f"safe/default: prompt {safe[0] / default[0]:.2f}x, "
            f"generation {safe[1] / default[1]:.2f}x"
        )


if __name__ == "__main__":
    main()
