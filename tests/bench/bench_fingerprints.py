"""Benchmark content fingerprints: build, lookup latency, size, and detection rates.

    python tests/bench/bench_fingerprints.py              # 10^4, 10^5, 10^6 stored texts
    python tests/bench/bench_fingerprints.py --max 100000 # quick run

Synthetic texts are deterministic: seeded pseudo-words from a 5,000-word vocabulary with a
Zipf distribution (so common phrases exist, as in real text), in sentences, 0.5-2 KB each;
stored text ``i`` is regenerated from its seed, so queries need not keep it in memory. One
store grows through the sizes; at each size we measure 4 KB lookups (half contain a stored
text) through the memory index and through SQL only, and the store's sizes. Detection rates
are measured at the largest size, on synthetic edits and on 20 hand-written paraphrase pairs.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from labelgate_tree import import_path

sys.path.insert(0, import_path())  # this tree as labelgate, not an installed one

from labelgate.guard.fingerprint import (
    Entry,
    LookupOptions,
    SQLiteFingerprintStore,
    TextMeta,
    WinnowParams,
    fingerprint,
)
from labelgate.guard.labels import Lattice

VOCAB_SIZE = 5000
QUERY_CHARS = 4096
FILLER_SEED = 10**9  # filler and unrelated texts come from seeds no stored text uses
THRESHOLDS = (0.1, 0.2, 0.5)
PARAMS = WinnowParams()  # --k / --w change it

# --- synthetic text -------------------------------------------------------------------------


def _vocabulary() -> tuple[list[str], list[float]]:
    rng = random.Random(7)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "st", "ch"]
    words: set[str] = set()
    while len(words) < VOCAB_SIZE:
        words.add("".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    ordered = sorted(words, key=lambda w: (len(w), w))  # short words are the common ones
    cumulative = list(np.cumsum([1.0 / (rank + 1) for rank in range(VOCAB_SIZE)]))
    return ordered, cumulative


VOCAB, CUM_WEIGHTS = _vocabulary()


def sentences(rng: random.Random, n_words: int) -> str:
    words = rng.choices(VOCAB, cum_weights=CUM_WEIGHTS, k=n_words)
    out: list[str] = []
    i = 0
    while i < n_words:
        length = rng.randint(8, 20)
        chunk = words[i : i + length]
        chunk[0] = chunk[0].capitalize()
        if len(chunk) > 6 and rng.random() < 0.4:
            chunk[len(chunk) // 2] += ","
        out.append(" ".join(chunk) + ".")
        i += length
    return " ".join(out)


def stored_text(i: int) -> str:
    rng = random.Random(i)
    return sentences(rng, rng.randint(80, 330))  # about 0.5-2 KB


def filler(seed: int, chars: int) -> str:
    text = sentences(random.Random(FILLER_SEED + seed), chars // 4)
    return text[:chars].rsplit(" ", 1)[0] + "."


def embed(inner: str, seed: int, total: int = QUERY_CHARS) -> str:
    """``inner`` at a random place inside unrelated text, about ``total`` characters in all."""
    rng = random.Random(seed)
    pad = max(0, total - len(inner))
    before = rng.randint(0, pad)
    return f"{filler(seed, before)} {inner} {filler(seed + 1, pad - before)}"


# --- edits ----------------------------------------------------------------------------------


def reformat(text: str, seed: int) -> str:
    """Case, whitespace, reflow and punctuation changes: the words stay the same."""
    rng = random.Random(seed)
    words = text.replace(",", "").split()
    words = [w.upper() if rng.random() < 0.3 else w.lower() for w in words]
    lines, line = [], ""
    for w in words:
        if len(line) + len(w) > 38:
            lines.append(line)
            line = ""
        line += ("  " if rng.random() < 0.2 else " ") + w.replace(".", rng.choice([".", ";", "!"]))
    lines.append(line)
    return "\r\n\t".join(lines)


def part(text: str, share: float, seed: int) -> str:
    words = text.split()
    n = max(1, round(len(words) * share))
    start = random.Random(seed).randint(0, len(words) - n)
    return " ".join(words[start : start + n])


def substitute(text: str, rate: float, seed: int) -> str:
    """Replace ``rate`` of the words with other words, as a synonym rewrite would."""
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), round(len(words) * rate)):
        words[i] = rng.choice(VOCAB)
    return " ".join(words)


HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}


def zwj(text: str, seed: int) -> str:
    """A zero-width joiner inside every word of three letters or more."""
    rng = random.Random(seed)
    out = []
    for w in text.split():
        if len(w) > 2:
            cut = rng.randrange(1, len(w))
            w = w[:cut] + "\u200d" + w[cut:]
        out.append(w)
    return " ".join(out)


def homoglyphs(text: str, seed: int) -> str:
    """Cyrillic look-alikes for most of the Latin letters that have one."""
    rng = random.Random(seed)
    return "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < 0.7 else c for c in text)


def hyphenate(text: str, seed: int) -> str:
    """Hyphens between the letters of half of the words (c-o-n-f-i-d-e-n-t-i-a-l)."""
    rng = random.Random(seed)
    return " ".join("-".join(w) if rng.random() < 0.5 else w for w in text.split())


def fullwidth(text: str, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and rng.random() < 0.5 else c for c in text
    )


def first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def excerpt(text: str, n: int, seed: int) -> str:
    words = text.split()
    start = random.Random(seed).randint(0, max(0, len(words) - n))
    return " ".join(words[start : start + n])


def reorder_sentences(text: str, seed: int) -> str:
    sentences = [s.strip() for s in text.split(".") if s.strip()]
    random.Random(seed).shuffle(sentences)
    return ". ".join(sentences) + "."


def reorder_clauses(text: str, seed: int) -> str:
    """Each sentence's clauses (cut at commas) in another order, and the sentences too."""
    rng = random.Random(seed)
    out = []
    for sentence in (s.strip() for s in text.split(".") if s.strip()):
        clauses = [c.strip() for c in sentence.split(",")]
        rng.shuffle(clauses)
        out.append(", ".join(clauses))
    rng.shuffle(out)
    return ". ".join(out) + "."


# Real English: an original and a hand-written paraphrase (same facts, different wording).
PARAPHRASES: list[tuple[str, str]] = [
    (
        "The quarterly revenue of the northern division fell by twelve percent because two "
        "large customers cancelled their contracts in August.",
        "Because two big clients ended their contracts in August, the northern division saw "
        "its revenue for the quarter drop by twelve percent.",
    ),
    (
        "Please reset the database password before Friday and store the new one in the shared "
        "vault rather than sending it by email.",
        "Before Friday, change the database password and put the new one in the shared vault; "
        "do not email it.",
    ),
    (
        "The patient was admitted on Tuesday with a fever and was given antibiotics for five "
        "days before being discharged in good health.",
        "Admitted on Tuesday with a fever, the patient received five days of antibiotics and "
        "left the hospital in good health.",
    ),
    (
        "Our new office in Lyon will open in March and will host about forty engineers from the "
        "payments team.",
        "In March we open a new office in Lyon, where roughly forty payments engineers will work.",
    ),
    (
        "The merger talks with Halden Corp stalled after their board demanded a higher price "
        "per share than we offered.",
        "Halden Corp's board asked for more per share than our offer, and the merger "
        "negotiations came to a halt.",
    ),
    (
        "Employees who work more than ten hours of overtime in a month must get written "
        "approval from their manager.",
        "Written approval from a manager is required for any employee exceeding ten overtime "
        "hours in a single month.",
    ),
    (
        "The river flooded the lower part of the village last night, and the school will stay "
        "closed until the water recedes.",
        "Last night the river overflowed into the village's lower streets; the school remains "
        "shut until the flood goes down.",
    ),
    (
        "Security researchers found that the login page leaks whether an email address is "
        "registered, which helps attackers build target lists.",
        "The login page reveals if an email address has an account, researchers discovered, "
        "making it easier for attackers to compile lists of targets.",
    ),
    (
        "The committee approved the budget for the new library, but asked the architects to cut "
        "the cost of the glass facade.",
        "The new library's budget got the committee's approval, with a request that the "
        "architects reduce what the glass front will cost.",
    ),
    (
        "Shipping to Canada is delayed by about a week because of a strike at the port of "
        "Vancouver.",
        "A strike at Vancouver's port has pushed back deliveries to Canada by roughly seven days.",
    ),
    (
        "The launch of the mobile app has been moved from June to September so that the team "
        "can fix the payment bugs.",
        "To give the team time to repair payment defects, the mobile app will now launch in "
        "September instead of June.",
    ),
    (
        "Mr. Okafor's contract includes a clause that forbids him from working for a competitor "
        "for two years after he leaves.",
        "After leaving, Mr. Okafor may not join a rival company for two years, under a clause "
        "in his contract.",
    ),
    (
        "Most of the complaints this month were about slow refunds, not about the quality of the "
        "products themselves.",
        "This month customers complained mainly that refunds took too long; few complaints "
        "concerned product quality.",
    ),
    (
        "The research team trained the model on three million labelled images and reached an "
        "accuracy of ninety-one percent.",
        "Trained with three million annotated pictures, the team's model achieved ninety-one "
        "percent accuracy.",
    ),
    (
        "If the server room temperature rises above thirty degrees, the cooling system sends an "
        "alert to the on-call engineer.",
        "The on-call engineer gets an alert from the cooling system whenever the server room "
        "goes over thirty degrees.",
    ),
    (
        "The city council will vote next week on whether to ban cars from the old town centre "
        "on weekends.",
        "Next week councillors decide if cars should be kept out of the historic centre at "
        "weekends.",
    ),
    (
        "Our supplier in Taiwan raised the price of the sensor chips by eight percent, which "
        "will reduce our margin on the thermostat.",
        "The thermostat's margin will shrink since the Taiwanese supplier made the sensor chips "
        "eight percent more expensive.",
    ),
    (
        "The hiking trail to the summit is closed in winter because avalanches are frequent on "
        "the northern slope.",
        "Frequent avalanches on the north face mean the path to the top is shut during the "
        "winter months.",
    ),
    (
        "Anna will present the audit findings to the board on Thursday, and the final report "
        "is due at the end of the month.",
        "On Thursday Anna presents what the audit found to the board; the last version of the "
        "report must be delivered by month's end.",
    ),
    (
        "The vaccine trial enrolled two thousand volunteers and reported no serious side "
        "effects after six months.",
        "Six months into the vaccine study, which involved two thousand volunteers, no severe "
        "adverse effects had been seen.",
    ),
]


# --- measuring ------------------------------------------------------------------------------


def batches(start: int, stop: int, size: int, lattice: Lattice) -> Iterator[list[Entry]]:
    label = lattice.label("internal", "trusted", sources=["bench"])
    meta = TextMeta(source="bench")
    for lo in range(start, stop, size):
        yield [
            Entry(f"t{i}", fingerprint(stored_text(i), PARAMS), label, meta)
            for i in range(lo, min(stop, lo + size))
        ]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def percentiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return f"median {statistics.median(ms):.3f} ms, p99 {p99:.3f} ms"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency(store: SQLiteFingerprintStore, n_texts: int, n_queries: int, sql: bool) -> None:
    rng = random.Random(n_texts)
    queries = []
    for q in range(n_queries):
        inner = stored_text(rng.randrange(n_texts)) if q % 2 == 0 else ""
        queries.append(embed(inner, 5000 + q))
    fps = [fingerprint(q, PARAMS) for q in queries]
    hit_rate = sum(bool(store.lookup(f)) for f in fps[::2]) / len(fps[::2])
    false_pos = sum(bool(store.lookup(f)) for f in fps[1::2])
    opts = LookupOptions()
    t_fp = [timed(lambda q=q: fingerprint(q, PARAMS)) for q in queries]
    t_index = [timed(lambda f=f: store.lookup_fingerprints(f, opts)) for f in fps]
    t_total = [timed(lambda q=q: store.lookup(q)) for q in queries]
    print(f"  4 KB query, fingerprinting only : {percentiles(t_fp)}")
    print(f"  memory index lookup (fps given) : {percentiles(t_index)}")
    print(f"  lookup(text) end to end         : {percentiles(t_total)}")
    print(f"  embedded stored text found {hit_rate:.0%}, false positives {false_pos}")
    if sql:
        with SQLiteFingerprintStore(store.path, memory_index=False) as sql_store:
            t_sql = [timed(lambda f=f: sql_store.lookup_fingerprints(f, opts)) for f in fps[:50]]
        print(f"  SQL-only lookup (fps given)     : {percentiles(t_sql)} (50 queries)")


def detection(store: SQLiteFingerprintStore, n_texts: int, lattice: Lattice, n: int) -> None:
    label = lattice.label("confidential", "trusted", sources=["paraphrase-bench"])
    for i, (original, _) in enumerate(PARAPHRASES):
        store.add_text(original, label, text_id=f"para{i}")
    rng = random.Random(99)
    picks = [rng.randrange(n_texts) for _ in range(n)]
    cases: dict[str, Callable[[int, str], str]] = {
        "exact copy": lambda j, t: t,
        "case/whitespace/reflow/punct.": lambda j, t: reformat(t, j),
        "whole copy inside 4 KB": lambda j, t: embed(t, j),
        "50% inside 4 KB": lambda j, t: embed(part(t, 0.5, j), j),
        "25% inside 4 KB": lambda j, t: embed(part(t, 0.25, j), j),
        "10% inside 4 KB": lambda j, t: embed(part(t, 0.10, j), j),
        "first half": lambda j, t: first_words(t, len(t.split()) // 2),
        "first 10 words": lambda j, t: first_words(t, 10),
        "10 words inside 4 KB": lambda j, t: embed(excerpt(t, 10, j), j),
        "20 words inside 4 KB": lambda j, t: embed(excerpt(t, 20, j), j),
        "ZWJ inside words": lambda j, t: zwj(t, j),
        "Cyrillic homoglyphs": lambda j, t: homoglyphs(t, j),
        "hyphens between letters": lambda j, t: hyphenate(t, j),
        "fullwidth letters": lambda j, t: fullwidth(t, j),
        "homoglyphs+ZWJ, 10 words in 4 KB": lambda j, t: embed(
            homoglyphs(zwj(excerpt(t, 10, j), j), j), j
        ),
        "sentences reordered": lambda j, t: reorder_sentences(t, j),
        "clauses and sentences reordered": lambda j, t: reorder_clauses(t, j),
        "10% words substituted": lambda j, t: substitute(t, 0.10, j),
        "30% words substituted": lambda j, t: substitute(t, 0.30, j),
        "50% words substituted": lambda j, t: substitute(t, 0.50, j),
    }
    header = "".join(f" | t={t:<4}" for t in THRESHOLDS)
    print(f"  {'case':<34}{header} | default | mean containment")
    loose = share_only(min(THRESHOLDS))
    for name, edit in cases.items():
        found = {t: 0 for t in THRESHOLDS}
        default = 0
        contain: list[float] = []
        for j, i in enumerate(picks):
            query = edit(j, stored_text(i))
            matches = store.lookup(query, options=loose)
            best = max((m.containment for m in matches if m.text_id == f"t{i}"), default=0.0)
            contain.append(best)
            for t in THRESHOLDS:
                found[t] += best >= t
            default += any(m.text_id == f"t{i}" for m in store.lookup(query))
        row = "".join(f" | {found[t] / n:>6.0%}" for t in THRESHOLDS)
        print(f"  {name:<34}{row} | {default / n:>7.0%} | {statistics.mean(contain):.2f}")
    para_found = {t: 0 for t in THRESHOLDS}
    para_wrong = 0
    for i, (_, paraphrase) in enumerate(PARAPHRASES):
        matches = store.lookup(paraphrase, options=loose)
        best = max((m.containment for m in matches if m.text_id == f"para{i}"), default=0.0)
        para_wrong += any(m.text_id != f"para{i}" for m in matches)
        for t in THRESHOLDS:
            para_found[t] += best >= t
    row = "".join(f" | {para_found[t] / len(PARAPHRASES):>6.0%}" for t in THRESHOLDS)
    print(f"  {'hand-written paraphrase (20)':<32}{row} | wrong matches: {para_wrong}")
    unrelated = [filler(20000 + j, QUERY_CHARS) for j in range(n)]
    fp = {
        t: sum(bool(store.lookup(u, options=share_only(t))) for u in unrelated) for t in THRESHOLDS
    }
    fp_default = sum(bool(store.lookup(u)) for u in unrelated)
    row = "".join(f" | {fp[t] / n:>6.1%}" for t in THRESHOLDS)
    print(f"  {'unrelated 4 KB (false positive)':<34}{row} | {fp_default / n:>7.1%}")


def share_only(threshold: float) -> LookupOptions:
    """By share alone (no copied-run rule, where this tree has one), at ``threshold``."""
    if "run_words" in LookupOptions.model_fields:
        return LookupOptions(threshold=threshold, run_words=None)
    return LookupOptions(threshold=threshold)


def real_texts() -> tuple[list[str], list[str]] | None:
    """Real English from ../shared/data (None where absent): 1,360 DailyDilemmas situations
    and 1,000 CounterFact fake-evidence paragraphs, templated texts sharing many phrases."""
    data = Path(__file__).resolve().parents[3] / "shared" / "data"
    dilemmas = data / "dailydilemmas" / "dilemma.csv"
    evidence = data / "counterfact" / "counterfact-edit-evidence-1k.json"
    if not (dilemmas.is_file() and evidence.is_file()):
        return None
    import csv
    import json

    with dilemmas.open(newline="") as f:
        first = [row["dilemma_situation"] for row in csv.DictReader(f)]
    second = [case["fake_evidence"] for case in json.loads(evidence.read_text())]
    return first, second


def real_corpus(lattice: Lattice) -> None:
    """Precision and recall on real text: half of each corpus stored, the other half the
    unrelated queries (false positives: any match), 10-word excerpts of stored texts inside
    an unrelated one (recall)."""
    texts = real_texts()
    if texts is None:
        print("  ../shared/data absent: skipped")
        return
    label = lattice.label("confidential", "trusted", sources=["real"])
    store = SQLiteFingerprintStore(":memory:", lattice, PARAMS)
    stored: list[str] = []
    queries: list[str] = []
    for corpus in texts:
        half = len(corpus) // 2
        stored += corpus[:half]
        queries += corpus[half:]
    store.add_many(Entry(f"r{i}", fingerprint(t, PARAMS), label) for i, t in enumerate(stored))
    fp_default = sum(bool(store.lookup(q)) for q in queries)
    fp_share = {
        t: sum(bool(store.lookup(q, options=share_only(t))) for q in queries) for t in THRESHOLDS
    }
    rng = random.Random(5)
    hits = {"default": 0, "share t=0.1": 0}
    picks = [rng.randrange(len(stored)) for _ in range(300)]
    for j, i in enumerate(picks):
        host = queries[rng.randrange(len(queries))]
        query = f"{host} {excerpt(stored[i], 10, j)} {queries[rng.randrange(len(queries))]}"
        hits["default"] += any(m.text_id == f"r{i}" for m in store.lookup(query))
        hits["share t=0.1"] += any(
            m.text_id == f"r{i}" for m in store.lookup(query, options=share_only(0.1))
        )
    print(f"  stored {len(stored)} real texts, {len(queries)} unrelated real queries")
    row = ", ".join(f"t={t}: {fp_share[t] / len(queries):.1%}" for t in THRESHOLDS)
    print(
        f"  false positives: default {fp_default / len(queries):.2%} ({fp_default}); by share {row}"
    )
    print(
        "  10-word excerpt between two unrelated real texts found: "
        + ", ".join(f"{k} {v / len(picks):.0%}" for k, v in hits.items())
    )
    store.close()


def machine() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?"
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GB RAM, Python {platform.python_version()}"


def main() -> None:
    global PARAMS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=1_000_000, help="largest store size")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--detect", type=int, default=200, help="texts per detection case")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--dir", default=None, help="where to build the store (default: tmp)")
    parser.add_argument("--no-postings", action="store_true", help="memory index only")
    parser.add_argument("--k", type=int, default=PARAMS.k, help="words per k-gram")
    parser.add_argument("--w", type=int, default=PARAMS.w, help="winnowing window")
    args = parser.parse_args()
    PARAMS = WinnowParams(k=args.k, w=args.w)
    lattice = Lattice()
    print(f"machine: {machine()}")
    print(f"parameters: k={PARAMS.k}, w={PARAMS.w} (guarantee {PARAMS.guarantee} words)")
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n <= args.max] or [args.max]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "fingerprints.db"
        store = SQLiteFingerprintStore(path, lattice, PARAMS, postings=not args.no_postings)
        built = 0
        for n in sizes:
            print(f"\n== {n:,} stored texts ==")
            t_fp = t_add = 0.0
            t0 = time.perf_counter()
            for batch in batches(built, n, args.batch, lattice):
                t_fp += time.perf_counter() - t0  # generating + fingerprinting the batch
                t_add += timed(lambda b=batch, s=store: s.add_many(b))
                t0 = time.perf_counter()
            print(
                f"  build +{n - built:,} texts: generate+fingerprint {t_fp:.1f} s, "
                f"add_many {t_add:.1f} s ({(n - built) / t_add:,.0f} texts/s)"
            )
            built = n
            t0 = time.perf_counter()
            store.close()
            store = SQLiteFingerprintStore(path, lattice)
            print(f"  reopen (load memory index)      : {time.perf_counter() - t0:.2f} s")
            stats = store.stats()
            print(
                f"  stored fingerprints {stats['index_postings']:,} "
                f"({stats['index_postings'] / n:.1f}/text); disk {stats['disk_bytes'] / 2**20:.0f}"
                f" MB; memory index {stats['index_bytes'] / 2**20:.0f} MB "
                f"({stats['index_compared_bits']} bits compared); "
                f"process RSS {rss_mb():.0f} MB"
            )
            latency(store, n, args.queries, sql=not args.no_postings)
        print(f"\n== detection rates at {built:,} stored texts (share found, by threshold) ==")
        detection(store, built, lattice, args.detect)
        print("\n== real English (../shared/data): false positives and 10-word excerpts ==")
        real_corpus(lattice)
        store.close()


if __name__ == "__main__":
    main()
