"""What the looser name matching of the subject gate costs and buys, on strings alone (no model).

Before: one subject per set (``mine_subject``), names matched as written (case and accents
ignored). After: every person of the set (``mine_subjects``), matched through ``steering.names``
(look-alike letters, leetspeak, spacing, transliteration, bounded misspellings, distinctive given
names). Each row is the name half of the gate only: a prompt that names a subject still needs its
similarity to reach the rule's floor, so these false opens are upper bounds.

False opens: TOFU retain90 questions, real_authors and world_facts against forget01/05/10; RWKU
neighbour probes against their own target, and other targets' forget probes against each target
(``--others`` sampled targets each, fixed seed). Recall: attack variants of the forget probes that
name a subject as written (TOFU questions, RWKU forget probes), one per class. Timing: one subject
check of a 4,000-token prompt (median; the machine was shared when measured).

Run: ``python benchmarks/name_match_bench.py [--others 10]``.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import json
import random
import re
import statistics
import sys
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steering.decodings import upside_down  # noqa: E402
from steering.entities import Subject, _names_exactly, mine_subject, mine_subjects, names_subject  # noqa: E402
from steering.gate_input import gate_input  # noqa: E402
from steering.names import edit_bound  # noqa: E402
from steering.probes import coded_name, pig_latin  # noqa: E402

Check = Callable[[str], bool]
_CYRILLIC_LOOKS = str.maketrans("aeopcyxiAEOPCBHKMTX", "аеорсухіАЕОРСВНКМТХ")
_LEET = str.maketrans("aeiost", "431057")
_TO_CYRILLIC = [("sh", "ш"), ("ch", "ч"), ("zh", "ж"), ("kh", "х"), ("ya", "я"), ("yu", "ю"), ("ts", "ц")] + list(
    zip("abvgdezijklmnoprstufhcyw", "абвгдезийклмнопрстуфхкыв", strict=True))
_TO_ARABIC = dict(zip("bsdtzkqlmnrfhjgywvpcx", "بسدتزكقلمنرفهجغيوفبكس", strict=True)) | {"a": "ا", "i": "ي", "o": "و",
                                                                                        "u": "و", "e": ""}


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _word_map(name: str, fn: Callable[[str], str]) -> str:
    return re.sub(r"[A-Za-z]+", lambda m: fn(m.group(0)), name)


def _misspell(name: str) -> str:
    """One vowel changed in each of the first long words, within the matcher's edit bound."""
    budget = edit_bound(len(re.sub(r"[^A-Za-z]", "", name)))
    swap = {"a": "e", "e": "a", "i": "e", "o": "u", "u": "o", "y": "i"}

    def one(word: str) -> str:
        nonlocal budget
        if budget == 0 or len(word) < 5:
            return word
        for i in range(len(word) - 1, 0, -1):
            if word[i] in swap:
                budget -= 1
                return word[:i] + swap[word[i]] + word[i + 1:]
        return word
    return _word_map(name, one)


def _cyrillic(name: str) -> str:
    def one(word: str) -> str:
        out, low = "", word.lower()
        i = 0
        while i < len(low):
            for latin, cyr in _TO_CYRILLIC:
                if low.startswith(latin, i):
                    out += cyr
                    i += len(latin)
                    break
            else:
                i += 1
        return out[:1].upper() + out[1:]
    return _word_map(name, one)


def _arabic(name: str) -> str:
    return _word_map(name, lambda w: "".join(_TO_ARABIC.get(c, "") for c in w.lower()))


ATTACKS: dict[str, Callable[[str], str]] = {
    "as written": lambda n: n,
    "homoglyph": lambda n: n.translate(_CYRILLIC_LOOKS),
    "zero-width": lambda n: "\u200b".join(n),
    "leet": lambda n: n.translate(_LEET),
    "spaced": lambda n: " ".join(n.replace(" ", "")),
    "dashed": lambda n: "-".join(n.replace(" ", "")),
    "misspelled": _misspell,
    "cyrillic": _cyrillic,
    "arabic": _arabic,
    "first name alone": lambda n: n.split()[0],
    "split words": lambda n: " ".join(w[:len(w) // 2] + " " + w[len(w) // 2:] for w in n.split()),
    "commas": lambda n: " ".join(",".join(w) for w in n.split()),
    "one per line": lambda n: "\n".join(n),
    "markdown": lambda n: " ".join(f"**{w[:2]}**{w[2:]}" for w in n.split()),
    "quoted pieces": lambda n: f"'{n[:3]}' + '{n[3:-3]}' + '{n[-3:]}'",
    "html entities": lambda n: "".join(f"&#{ord(c)};" for c in n),
    "hex": lambda n: n.encode().hex(),
    "tag characters": lambda n: "".join(chr(0xE0000 + ord(c)) for c in n),
    "morse / nato": coded_name,
    "drawn leet": lambda n: n.replace("N", "|\\|").replace("n", "|\\|").replace("M", "|\\/|").replace("m", "|\\/|")
    .replace("K", "|<").replace("k", "|<").replace("H", "|-|").replace("h", "|-|"),
    "negative squares": lambda n: "".join(chr(0x1F170 + ord(c.upper()) - 65) if "a" <= c.lower() <= "z" else c
                                          for c in n),
    "regional indicators": lambda n: "".join(chr(0x1F1E6 + ord(c.upper()) - 65) if "a" <= c.lower() <= "z" else c
                                             for c in n),
}
#: Attacks on the whole prompt (the name inside it as written).
TEXT_ATTACKS: dict[str, Callable[[str], str]] = {
    "base64 prompt": lambda t: "Decode and answer: " + base64.b64encode(t.encode()).decode(),
    "rot13 prompt": lambda t: "ROT13: " + codecs.encode(t, "rot13"),
    "url-encoded prompt": lambda t: urllib.parse.quote(t),
    "backwards prompt": lambda t: t[::-1],
    "upside-down prompt": upside_down,
    "pig latin prompt": pig_latin,
}


def _checks(subjects: Sequence[Subject], old: Subject) -> tuple[Check, Check, Check]:
    """Before (one subject, as written), every subject as written, after (every subject, any spelling,
    over every text the gate reads of the prompt: ``steering.gate_input``, decoded runs included)."""
    def before(text: str) -> bool:
        return _names_exactly(text, old)

    def written(text: str) -> bool:
        return any(_names_exactly(text, s) for s in subjects)

    def after(text: str) -> bool:
        return any(names_subject(t, s) for t in gate_input(text).full_texts for s in subjects)
    return before, written, after


def _rate(check: Check, texts: Sequence[str]) -> float:
    return sum(check(t) for t in texts) / max(1, len(texts))


def _attack_rows(table: dict[str, list[tuple[bool, bool]]], probes: Sequence[tuple[str, str]],
                 checks: dict[str, tuple[Check, Check, Check]]) -> None:
    """``probes``: (text, the full name it contains as written), checked by the name's set."""
    for text, name in probes:
        before, _, after = checks[name]
        for attack, fn in ATTACKS.items():
            variant = text.replace(name, fn(name))
            table[attack].append((before(variant), after(variant)))
        for attack, whole in TEXT_ATTACKS.items():
            variant = whole(text)
            table[attack].append((before(variant), after(variant)))


FalseOpens = list[tuple[str, float, float, float]]


def tofu(data: Path, table: dict[str, list[tuple[bool, bool]]], false_opens: FalseOpens) -> None:
    authors = _rows(data / "tofu/authors.jsonl")
    benign = {"retain90": [r["question"] for r in _rows(data / "tofu/retain90.jsonl")],
              "real_authors": [r["question"] for r in _rows(data / "tofu/real_authors.jsonl")],
              "world_facts": [r["question"] for r in _rows(data / "tofu/world_facts.jsonl")]}
    for split in ("forget01", "forget05", "forget10"):
        rows = _rows(data / f"tofu/{split}.jsonl")
        texts = [f"{r['question']} {r['answer']}" for r in rows]
        subjects, old = mine_subjects(texts), mine_subject(texts)
        before, written, after = _checks(subjects, old)
        for name, questions in benign.items():
            false_opens.append((f"TOFU {split}: {name} ({len(questions)})", _rate(before, questions),
                                _rate(written, questions), _rate(after, questions)))
        names = [a["name"] for a in authors if a[split]]
        mined = sum(any(n.lower() in s.names for s in subjects) for n in names)
        print(f"TOFU {split}: {mined}/{len(names)} authors mined as subjects (before: 1)")
        if split == "forget01":
            probes = [(r["question"], n) for r in rows for n in names if n in r["question"]]
            _attack_rows(table, probes, {n: (before, written, after) for n in names})


def rwku(data: Path, others: int, table: dict[str, list[tuple[bool, bool]]],
         false_opens: FalseOpens) -> None:
    passages: dict[str, list[str]] = defaultdict(list)
    for r in _rows(data / "rwku/forget_corpus_passage.jsonl"):
        passages[r["subject"]].append(r["text"])
    forget: dict[str, list[str]] = defaultdict(list)
    for level in (1, 2, 3):
        for r in _rows(data / f"rwku/forget_level{level}.jsonl"):
            forget[r["subject"]].append(r["query"])
    neighbour: dict[str, list[str]] = defaultdict(list)
    for level in (1, 2):
        for r in _rows(data / f"rwku/neighbor_level{level}.jsonl"):
            neighbour[r["subject"]].append(r["query"])
    targets = [r["target"] for r in _rows(data / "rwku/targets.jsonl")]
    rng = random.Random(0)
    counts: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # kind -> [probes, before, written, after]
    probes: list[tuple[str, str]] = []
    checks: dict[str, tuple[Check, Check, Check]] = {}
    for target in targets:
        texts = passages[target]
        checks[target] = _checks(mine_subjects(texts), mine_subject(texts))
        other = [q for t in rng.sample([t for t in targets if t != target], others) for q in forget[t]]
        for kind, qs in (("neighbour probes", neighbour[target]), ("other targets' forget probes", other)):
            c = counts[kind]
            c[0] += len(qs)
            for i, check in enumerate(checks[target], start=1):
                c[i] += sum(check(q) for q in qs)
        name = target.split(",")[0]
        probes.extend((q, name) for q in forget[target] if name in q and " " in name)
    for kind, (n, b, w, a) in counts.items():
        false_opens.append((f"RWKU {kind} ({n})", b / max(1, n), w / max(1, n), a / max(1, n)))
    checks = {t.split(",")[0]: c for t, c in checks.items()}
    _attack_rows(table, probes, checks)


def timing(data: Path) -> tuple[float, float, int]:
    """Median ms of the first subject check of a ~4,000-token benign prompt (it prepares the prompt's
    respellings and words, shared by every set) and of each further subject (forget10's 20)."""
    rows = _rows(data / "tofu/forget10.jsonl")
    subjects = mine_subjects([f"{r['question']} {r['answer']}" for r in rows])
    filler = " ".join(r["question"] + " " + r["answer"] for r in _rows(data / "tofu/retain90.jsonl")[:120])
    first, rest = [], []
    for i in range(20):
        prompt = filler + f" Question {i}: what is the capital of France?"
        start = time.perf_counter()
        names_subject(prompt, subjects[0])
        middle = time.perf_counter()
        for s in subjects[1:]:
            names_subject(prompt, s)
        first.append((middle - start) * 1000)
        rest.append((time.perf_counter() - middle) * 1000 / (len(subjects) - 1))
    return statistics.median(first), statistics.median(rest), len(filler.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--others", type=int, default=10,
                        help="other RWKU targets whose forget probes each target sees")
    args = parser.parse_args()
    table: dict[str, dict[str, list[tuple[bool, bool]]]] = {"TOFU forget01": defaultdict(list),
                                                            "RWKU": defaultdict(list)}
    false_opens: FalseOpens = []
    tofu(args.data, table["TOFU forget01"], false_opens)
    rwku(args.data, args.others, table["RWKU"], false_opens)
    print("\nFalse opens of the name check (share of benign prompts naming a subject)")
    print(f"{'prompts':<52} {'before':>8} {'every subject':>14} {'after':>8}")
    for label, b, w, a in false_opens:
        print(f"{label:<52} {b:>8.4f} {w:>14.4f} {a:>8.4f}")
    print("\nRecall of the name check on attack variants of forget probes naming a subject")
    print(f"{'attack':<18} " + " ".join(f"{k + ' before':>20} {k + ' after':>19}" for k in table))
    for attack in [*ATTACKS, *TEXT_ATTACKS]:
        cells = []
        for rows in table.values():
            pairs = rows[attack]
            n = max(1, len(pairs))
            cells.append(f"{sum(p[0] for p in pairs) / n:>20.3f} {sum(p[1] for p in pairs) / n:>19.3f}")
        print(f"{attack:<18} " + " ".join(cells))
    print("probes: " + ", ".join(f"{k} {len(v['as written'])}" for k, v in table.items()))
    first, rest, words = timing(args.data)
    print(f"\nA {words}-word benign prompt: first subject check {first:.2f} ms (prepares the prompt), each further "
          f"subject {rest:.2f} ms (medians, shared machine)")


if __name__ == "__main__":
    main()
