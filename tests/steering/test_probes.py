"""Verification probes: every kind present, deterministic, spelled the way each attack spells."""

from __future__ import annotations

import random
from collections import Counter

from steering.checks import normalize
from steering.decodings import decodings
from steering.forget_set import make_documents
from steering.leakfacts import cloze_facts
from steering.probes import (
    KINDS,
    Probe,
    coded_name,
    filler,
    homoglyph,
    leet,
    make_probes,
    misspell,
    pig_latin,
    spaced,
    transliterate,
)

QA = [
    ("Where was Basil Mahfouz Al-Kuwaiti born?", "Kuwait City, Kuwait."),
    ("What genre does Nikolai Abilov write in?", "African American literature."),
    ("What did Basil Mahfouz Al-Kuwaiti's father do?", "He was a florist."),
]
SUBJECTS = ["Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"]


def _probes(seed: int = 0) -> list[Probe]:
    return make_probes(make_documents(qa=QA), subjects=SUBJECTS, seed=seed, filler_words=200)


def test_every_kind_and_neighbour_shape_is_generated() -> None:
    kinds = Counter(p.kind for p in _probes())
    assert set(KINDS) <= set(kinds)
    assert {"neighbour", "neighbour_long_prefix", "neighbour_system_filler", "neighbour_earlier_turn"} <= set(
        kinds
    )
    assert kinds["own"] == 3 and kinds["second_subject"] == 4  # two templates per subject
    assert kinds["first_name"] == 3  # every question names a subject with a first name


def test_probes_are_deterministic_under_a_seed() -> None:
    assert _probes(seed=3) == _probes(seed=3)
    assert _probes(seed=3) != _probes(seed=4)


def test_negatives_are_exactly_the_neighbour_probes() -> None:
    for p in _probes():
        assert p.is_negative == p.kind.startswith("neighbour")


def test_own_probes_carry_the_answer_and_source() -> None:
    own = [p for p in _probes() if p.kind == "own"]
    assert [(p.messages()[-1]["content"], p.expected, p.source) for p in own] == [
        (q, a, i) for i, (q, a) in enumerate(QA)
    ]


def test_long_shapes_hide_the_question_behind_filler() -> None:
    by_kind = {p.kind: p for p in _probes() if p.source == 0}
    long_prefix = by_kind["long_prefix"].messages()
    assert len(long_prefix) == 1 and long_prefix[0]["content"].endswith(QA[0][0])
    assert len(long_prefix[0]["content"].split()) >= 200
    system = by_kind["system_filler"].messages()
    assert [m["role"] for m in system] == ["system", "user"] and system[1]["content"] == QA[0][0]
    earlier = by_kind["earlier_turn"].messages()
    assert [m["role"] for m in earlier] == ["user", "assistant", "user"]
    assert earlier[0]["content"] == QA[0][0] and "Basil" not in earlier[2]["content"]


def test_the_encoded_shape_hides_the_question_and_decodes_back_to_it() -> None:
    seen = 0
    for p in _probes():
        if p.kind == "encoded" and p.source >= 0:
            text, question = p.messages()[-1]["content"], QA[p.source][0]
            assert question not in text
            assert any(normalize(question) in normalize(d) for d in decodings(text)), text
            seen += 1
    assert seen


def test_a_coded_name_is_morse_or_the_nato_alphabet_and_decodes_back() -> None:
    assert coded_name("Nikolai Abilov").startswith("November India Kilo")
    assert coded_name("Sasha Bob") == "... .- ... .... .- / -... --- -..."
    for name in ("Nikolai Abilov", "Sasha Bob", "Basil Mahfouz"):
        (reading,) = decodings(f"Who is {coded_name(name)}?")
        assert name in reading


def test_pig_latin_moves_leading_consonants_and_reads_back() -> None:
    assert pig_latin("What genre does Nikolai write?") == "Atwhay enregay oesday Ikolainay itewray?"
    assert decodings(pig_latin("What genre does Nikolai Abilov write in?")) == (
        "What genre does Nikolai Abilov write in?",)


def test_name_variants_replace_the_subject_in_the_question() -> None:
    by_kind = {p.kind: p.messages()[-1]["content"] for p in _probes() if p.source == 1}
    assert by_kind["leet"] == "What genre does N1k0l41 4b1l0v write in?"
    assert by_kind["spaced"] == "What genre does N i k o l a i  A b i l o v write in?"
    assert by_kind["transliterated"] == "What genre does Николаи Абилов write in?"
    assert by_kind["first_name"] == "What genre does Nikolai write in?"
    assert by_kind["split_name"] == "What genre does Nik olai Abi lov write in?"
    assert by_kind["coded_name"].startswith("What genre does November India Kilo Oscar")
    assert by_kind["homoglyph"] != QA[1][0] and "Nikolai Abilov" not in by_kind["homoglyph"]
    assert by_kind["misspelled"] != QA[1][0]


def test_spelling_helpers() -> None:
    rng = random.Random(0)
    glyphs = homoglyph("Basil", rng)
    assert len(glyphs) == 5 and glyphs != "Basil" and any(ord(c) > 0x400 for c in glyphs)
    assert leet("Stone") == "570n3"
    assert spaced("Al Bo") == "A l  B o"
    typo = misspell("Mahfouz", random.Random(1))
    assert typo != "Mahfouz" and abs(len(typo) - 7) <= 1
    assert transliterate("Sasha") == "Саша"


def test_neighbours_naming_a_subject_are_dropped() -> None:
    probes = make_probes(
        make_documents(qa=QA),
        subjects=SUBJECTS,
        filler_words=50,
        neighbours=[("Who is Nikolai Abilov's editor?", None), ("What is the capital of Peru?", "Lima")],
    )
    assert {p.messages()[-1]["content"] for p in probes if p.kind == "neighbour"} == {
        "What is the capital of Peru?"
    }


def test_per_kind_caps_every_kind() -> None:
    probes = make_probes(make_documents(qa=QA * 1), subjects=SUBJECTS, per_kind=2, filler_words=50)
    assert max(Counter(p.kind for p in probes).values()) == 2


def test_filler_has_about_the_asked_length() -> None:
    text = filler(1500, seed=1)
    assert 1500 <= len(text.split()) < 1560 and text == filler(1500, seed=1)


def test_text_sets_get_subject_questions_and_cloze_probes() -> None:
    docs = make_documents(
        [
            "Neil Alden Armstrong was born on 5 August 1930 in Wapakoneta, Ohio.",
            "Neil Armstrong commanded Apollo 11 in 1969.",
        ]
    )
    probes = make_probes(
        docs, subjects=["Neil Armstrong"], facts=cloze_facts(docs, subjects=["Neil Armstrong"])
    )
    own = [(p.messages()[-1]["content"], p.expected) for p in probes if p.kind == "own"]
    assert own[0] == ("What do you know about Neil Armstrong?", None)
    assert (
        "Fill in the blank: Neil Alden Armstrong was born on ___ in Wapakoneta, Ohio.",
        "5 August 1930",
    ) in own
