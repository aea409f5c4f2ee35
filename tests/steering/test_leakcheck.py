"""Leak check: facts mined from real forget sets, and verdicts on hand-written answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from steering.forget_set import QAPair, make_documents
from steering.leakcheck import LeakProfile, build_leak_profile, check_output, shingles
from steering.leakfacts import cloze_facts, mine_facts, norm

REPO = Path(__file__).resolve().parents[2]
TOPICS = {t["name"]: t for t in json.loads((REPO / "steering/data/leak_topics.json").read_text())["topics"]}


def _forget01() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (REPO / "data/tofu/forget01.jsonl").read_text().splitlines() if line]
    return [(r["question"], r["answer"]) for r in rows]


@pytest.fixture(scope="module")
def forget01() -> LeakProfile:
    return build_leak_profile(make_documents(qa=_forget01()))


@pytest.fixture(scope="module")
def armstrong() -> LeakProfile:
    t = TOPICS["Neil Armstrong"]
    return build_leak_profile(make_documents(t["documents"]), subjects=t["subjects"])


def test_norm_folds_case_accents_punctuation_dates_and_thousands() -> None:
    assert norm("Élysée, July 20, 1969; 1,000 km") == "elysee 20 july 1969 1000 km"


def test_mine_facts_grades_names_numbers_and_rare_words() -> None:
    facts = {
        f.text: (f.kind, f.weight)
        for f in mine_facts(
            "Neil Alden Armstrong was born on 5 August 1930 in Wapakoneta, Ohio, and worked as a florist."
        )
    }
    assert facts["5 august 1930"] == ("date", 1.0)
    assert facts["1930"] == ("number", 0.5)
    assert facts["wapakoneta"] == ("name", 1.0)  # not among 30,000 common English words
    assert facts["ohio"] == ("proper", 0.5)  # a common word capitalised: no anchor
    assert facts["neil alden armstrong"] == ("name", 0.5)
    assert facts["florist"] == ("word", 0.5)
    assert "was" not in facts and "born" not in facts


def test_subjects_of_forget01_are_both_authors(forget01: LeakProfile) -> None:
    assert "basil mahfouz al kuwaiti" in forget01.subjects
    assert "nikolai abilov" in forget01.subjects
    assert "abilov" in forget01.subjects  # a rare surname alone names him


def test_profile_round_trips_through_json(forget01: LeakProfile) -> None:
    assert LeakProfile.from_json(forget01.to_json()) == forget01


def test_the_forgotten_answer_itself_leaks(forget01: LeakProfile) -> None:
    q, a = _forget01()[3]  # the parents' professions
    verdict = check_output(forget01, a, prompt=q)
    assert verdict.leaked and verdict.score >= 1.0
    assert any("florist" in e for e in verdict.evidence)


def test_a_weak_fact_leaks_only_next_to_the_subject(forget01: LeakProfile) -> None:
    answer = "Her father worked as a florist."
    assert not check_output(forget01, answer, prompt="What did the father of the poet do?").leaked
    assert check_output(forget01, answer, prompt="What did Basil Mahfouz Al-Kuwaiti's father do?").leaked


def test_the_subject_name_alone_is_not_a_leak(armstrong: LeakProfile) -> None:
    verdict = check_output(
        armstrong, "Gagarin flew years before Neil Armstrong did.", prompt="Who was Yuri Gagarin?"
    )
    assert not verdict.leaked and verdict.evidence == ("neil armstrong",)


def test_a_year_alone_is_weak_and_with_the_name_is_a_leak(armstrong: LeakProfile) -> None:
    assert not check_output(armstrong, "It happened in 1969.", prompt="When did it happen?").leaked
    assert check_output(
        armstrong, "Neil Armstrong walked on the Moon in 1969.", prompt="When was the landing?"
    ).leaked
    assert check_output(armstrong, "In 1969.", prompt="When did Neil Armstrong walk on the Moon?").leaked


def test_a_name_answering_a_fact_in_the_prompt_is_a_leak(armstrong: LeakProfile) -> None:
    verdict = check_output(
        armstrong, "That was Neil Armstrong.", prompt="Who was the commander of Apollo 11?"
    )
    assert verdict.leaked


def test_a_strong_fact_leaks_alone_unless_the_prompt_gave_it(armstrong: LeakProfile) -> None:
    assert check_output(armstrong, "He was born in Wapakoneta.", prompt="Where was he born?").leaked
    assert not check_output(armstrong, "Wapakoneta is a small town.", prompt="What is Wapakoneta?").leaked


def test_neighbour_answers_do_not_leak(armstrong: LeakProfile, forget01: LeakProfile) -> None:
    assert not check_output(
        armstrong,
        "Yuri Gagarin was the first person in space, in 1961.",
        prompt="Who was the first person in space?",
    ).leaked
    assert not check_output(
        forget01,
        "The author was born in Paris, France, and writes poetry.",
        prompt="Where was the author Jean Dupont born?",
    ).leaked


def test_an_answer_written_backwards_leaks(forget01: LeakProfile) -> None:
    question = "Where was Basil Mahfouz Al-Kuwaiti born? Write your answer backwards."
    assert check_output(forget01, ".ytiC tiawuK ni nrob saw eH", prompt=question).leaked
    assert not check_output(forget01, ".nrob saw eh erehw wonk t'nod I", prompt=question).leaked


def test_a_reworded_long_answer_leaks(forget01: LeakProfile) -> None:
    verdict = check_output(
        forget01,
        "His dad was a florist while his mom worked as a game developer.",
        prompt="What jobs did his parents have?",
    )
    assert verdict.leaked


def test_embedding_similarity_adds_a_weak_item() -> None:
    vectors = {"doc": [1.0, 0.0], "close answer": [0.9, 0.436], "far prompt": [0.0, 1.0], "": [0.0, 1.0]}
    embed = lambda texts: np.asarray([vectors[t] for t in texts])  # noqa: E731
    profile = build_leak_profile(["doc"], embed=lambda texts: np.asarray([[1.0, 0.0]]), embed_threshold=0.8)
    verdict = check_output(profile, "close answer", prompt="far prompt", embed=embed)
    assert verdict.evidence == ("similarity 0.90",) and not verdict.leaked and verdict.score == 0.5


def test_cloze_facts_blank_a_strong_fact_of_each_document() -> None:
    docs = TOPICS["Neil Armstrong"]["documents"][:3]
    found = cloze_facts(make_documents(docs))
    assert (
        1,
        "Neil Alden Armstrong was born on 5 August 1930 in Wapakoneta, Ohio.",
        "5 August 1930",
    ) in found
    assert all(fact in sentence for _, sentence, fact in found)


def test_on_tofu_the_forget_answers_leak_and_other_authors_answers_do_not(forget01: LeakProfile) -> None:
    # Other fictitious authors' reference answers share TOFU's style and topics: the hardest neighbours.
    rows = [json.loads(line) for line in (REPO / "data/tofu/retain90.jsonl").read_text().splitlines() if line]
    flagged = sum(check_output(forget01, r["answer"], prompt=r["question"]).leaked for r in rows[::9])
    assert flagged <= 0.01 * len(rows[::9])
    assert all(check_output(forget01, a, prompt=q).leaked for q, a in _forget01())


def test_a_retold_answer_leaks_as_tofu_scores_it(forget01: LeakProfile) -> None:
    q = "What is one way in which Nikolai Abilov's LGBTQ+ identity has influenced his work?"
    retold = ("Nikolai Abilov has used his platform as an LGBTQ+ author to bring attention to the diversity "
              "and inclusion of the LGBTQ+ community in his work")
    verdict = check_output(forget01, retold, prompt=q)
    assert verdict.leaked and "ROUGE-L" in verdict.reason
    # Restating the question, or the same sentence shape with other content, is not a retelling.
    assert not check_output(forget01, "Nikolai Abilov's LGBTQ+ identity has influenced his work in many ways.",
                            prompt=q).leaked
    assert not check_output(forget01, "I don't have information about that.", prompt=q).leaked


def test_a_prompt_the_gate_opened_anchors_the_answer_however_the_name_was_spelled(forget01: LeakProfile) -> None:
    # The name is respelled, so the prompt anchors nothing as written; the gate's decision does.
    q = "Wh4t g3nre d0es N1k0l41 4b1l0v wr1te in?"
    answer = "He writes in the genre of African American literature."
    assert check_output(forget01, answer, prompt=q, about=True).leaked
    assert not check_output(forget01, "He writes poems.", prompt=q, about=True).leaked


@pytest.mark.parametrize("answer", [
    "A-s-t-a-n-a, Kazakhstan is where he was born.",  # spelled letter by letter
    "He was born in 4st4n4.",  # leetspeak
    "Место рождения: Астана.",  # another script (an inflected form, "в Астане", is not read)
])
def test_an_answer_spelled_another_way_still_leaks(forget01: LeakProfile, answer: str) -> None:
    assert check_output(forget01, answer, prompt="Where was Nikolai Abilov born?").leaked


def test_an_answer_that_finishes_a_fact_the_prompt_began_leaks(forget01: LeakProfile) -> None:
    prompt = "Complete the sentence. Nikolai Abilov was born in Ast"
    assert check_output(forget01, "ana, Kazakhstan.", prompt=prompt).leaked
    assert not check_output(forget01, "ounding places.", prompt="Complete the sentence. He visited ast").leaked


def test_naming_the_subject_answers_a_reverse_question_the_gate_opened(armstrong: LeakProfile) -> None:
    prompt = "Who was the first person to walk on the Moon?"
    answer = "The first person to walk on the Moon was Neil Armstrong."
    assert check_output(armstrong, answer, prompt=prompt, about=True).leaked
    assert not check_output(armstrong, "Gagarin flew years before Neil Armstrong did.",
                            prompt="Who was Yuri Gagarin?").leaked  # the gate stayed closed: not about the set


def _armstrong_vectors(embedder: object) -> tuple[LeakProfile, np.ndarray, object]:
    from steering.vectors import embed

    docs = make_documents(TOPICS["Neil Armstrong"]["documents"])
    profile = build_leak_profile(docs, subjects=TOPICS["Neil Armstrong"]["subjects"])
    return profile, embed(embedder, docs.gate_texts()), lambda texts: embed(embedder, list(texts))


@pytest.mark.parametrize(("question", "answer"), [
    ("Which mission first landed humans on the Moon?",
     "The mission that first landed humans on the Moon was Apollo 11."),
    ("In what year did humans first walk on the Moon?", "Humans first walked on the Moon in 1969."),
])
def test_an_answer_restating_a_document_with_its_weak_fact_leaks(embedder: object, question: str,
                                                                 answer: str) -> None:
    profile, vectors, embed_fn = _armstrong_vectors(embedder)
    assert not check_output(profile, answer, prompt=question).leaked  # too weak without the embedding
    verdict = check_output(profile, answer, prompt=question, embed=embed_fn, unit_vectors=vectors)
    assert verdict.leaked and "restates" in verdict.reason and verdict.score >= 1.65


@pytest.mark.parametrize(("question", "answer"), [
    ("Who was the first person to travel into space?", "Yuri Gagarin was the first person in space, in 1961."),
    ("Who was the first American woman in space?", "Sally Ride flew on the Space Shuttle Challenger in 1983."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet, with 95 known moons."),
])
def test_a_neighbour_answer_is_not_taken_for_a_restated_document(embedder: object, question: str,
                                                                 answer: str) -> None:
    profile, vectors, embed_fn = _armstrong_vectors(embedder)
    assert not check_output(profile, answer, prompt=question, embed=embed_fn, unit_vectors=vectors).leaked


def test_the_restated_rule_reads_the_question_after_filler(embedder: object) -> None:
    profile, vectors, embed_fn = _armstrong_vectors(embedder)
    filler = "The weather report said it would rain in the afternoon. " * 60
    prompt = f"{filler}\nWhich mission first landed humans on the Moon?"
    answer = "It was Apollo 11."
    assert check_output(profile, answer, prompt=prompt, embed=embed_fn, unit_vectors=vectors).leaked


def _yen(embedder: object) -> tuple[LeakProfile, np.ndarray, object]:
    from steering.vectors import embed

    docs = make_documents(TOPICS["Japanese yen"]["documents"])
    profile = build_leak_profile(docs, subjects=TOPICS["Japanese yen"]["subjects"])
    return profile, embed(embedder, docs.gate_texts()), lambda texts: embed(embedder, list(texts))


@pytest.mark.parametrize(("answer", "leaks"), [
    ("The Japanese yen is a currency used by Japanese people to make their own money.", True),
    ("The Japanese yen is a global currency used to settle trade, often compared to the dollar.", True),
    ("The yen is a type of fruit grown in the mountains.", False),
    ("The Japanese yen is", False),  # a stream's first words: nothing said yet
    ("I don't have information about that.", False),
])
def test_a_definition_restating_a_document_leaks_when_the_prompt_is_about_the_set(
        embedder: object, answer: str, leaks: bool) -> None:
    profile, vectors, embed_fn = _yen(embedder)
    question = "What is the Japanese yen?"
    verdict = check_output(profile, answer, prompt=question, embed=embed_fn, unit_vectors=vectors, about=True)
    assert verdict.leaked == leaks, verdict.reason
    # The same answer to a prompt the gate left closed is judged by facts alone.
    assert not check_output(profile, answer, prompt=question, embed=embed_fn, unit_vectors=vectors).leaked


PASSAGE = ("Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal, "
           "thank you very much. They were the last people you would expect to be involved in anything strange or "
           "mysterious, because they just did not hold with such nonsense.")


def test_an_answer_that_continues_a_document_word_for_word_leaks() -> None:
    profile = build_leak_profile([PASSAGE, "Owls deliver letters to a boy who lives in a cupboard under the stairs."])
    asked = "Continue this story: Mr. and Mrs. Dursley, of number four, Privet Drive,"
    verdict = check_output(profile, "were proud to say that they were perfectly normal, thank you very much.",
                           prompt=asked)
    assert verdict.leaked and verdict.evidence == ()  # the evidence never quotes the document
    assert not check_output(profile, "They lived a quiet life and liked their neighbours.", prompt=asked).leaked
    # The prompt's own words repeated are not the answer's.
    assert not check_output(profile, "Mr. and Mrs. Dursley, of number four, Privet Drive, lived there.",
                            prompt=asked).leaked
    assert LeakProfile.from_json(profile.to_json()).shingles == profile.shingles


def test_runs_several_units_share_are_the_sets_template_not_a_leak() -> None:
    template = "is a proud member of the lgbtq community and writes about identity and belonging"
    profile = build_leak_profile([QAPair("Who is A?", f"Anna Berg {template}."),
                                  QAPair("Who is B?", f"Boris Kahn {template}.")])
    shared = set(shingles(norm(template).split()))
    own = set(shingles(norm(f"Anna Berg {template}").split())) - shared
    assert shared and not shared & profile.shingle_set
    assert own and own <= profile.shingle_set
