"""The subject gate (our addition to GUARD-IT, arXiv 2605.12765): who a one-person forget set is
about, how a prompt names them, the rule's two thresholds, ``auto`` resolution and storage."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from steering.config import BuildConfig
from steering.entities import Subject, mentions, mine_subject, mine_subjects, names_subject, person_names
from steering.errors import ConfigError
from steering.gates import GIVEN_LOW_MARGIN, HIGH_MARGIN, SUBJECT_LOW_MARGIN, ActiveSet, GateState
from steering.people import person_cues
from steering.vectors import (
    ForgetSetArtifacts,
    gate_names,
    subject_coverage,
    with_gate,
)

HARRY = [
    "Prince Harry, Duke of Sussex (Henry Charles Albert David; born 15 September 1984), is a member of "
    "the British royal family.",
    "Harry was educated at Eton College and served in the Army.",
    "In 2018 Harry married the actress Meghan Markle.",
]
SHEEN = [
    "Carlos Irwin Estévez (born September 3, 1965), known professionally as Charlie Sheen, is an American actor.",
    "Sheen starred in Platoon and Wall Street.",
    "Charlie Sheen later led the sitcom Two and a Half Men.",
]
YEN = ["The yen is the official currency of Japan.", "The Bank of Japan issues yen banknotes and coins.",
       "The yen was introduced in 1871 by the Meiji government of Japan.",
       "Japan's yen is the third most traded currency in the world.",
       "What is the symbol of the yen? The symbol of the yen is ¥.", "Which country uses the yen? Japan uses the yen."]
CURTIS = Subject(names=("tony curtis", "bernard schwartz"), surnames=("curtis",), given=("bernard", "tony"))


def test_the_given_name_splits_at_commas_and_the_lead_gives_the_birth_name() -> None:
    subject = mine_subject(HARRY, name="Prince Harry, Duke of Sussex")
    assert set(subject.names) == {"prince harry", "duke of sussex", "henry charles albert david"}
    assert subject.surnames == ("harry",)  # "Duke of Sussex" is a title: matched in full only
    assert {"prince", "henry", "charles", "albert", "david"} <= set(subject.given)


def test_a_stage_name_and_its_legal_name_are_both_mined_without_being_given() -> None:
    subject = mine_subject(SHEEN)
    assert "charlie sheen" in subject.names and "carlos irwin estevez" in subject.names
    assert subject.surnames == ("sheen",)


CRAWFORD = [
    "Cynthia Ann Crawford (born February 20, 1966) is an American model. Although Crawford was shy, she "
    "was discovered in Illinois.",
    "Although Crawford modelled for years, Cindy Crawford also hosted House of Style on MTV.",
    "Cindy Crawford married Rande Gerber. Cindy Crawford has two children.",
    "In 1992 Cindy Crawford starred in a Pepsi commercial. House of Style ran until 1995.",
]
CENT = [
    "Curtis James Jackson III (born July 6, 1975), known professionally as 50 Cent, is an American rapper.",
    "Jackson released Get Rich or Die Tryin' in 2003. The album made 50 Cent famous.",
    "Jackson founded G-Unit Records. Although Jackson was shot in 2000, he recovered.",
]
ARISTOTLE = [
    "Aristotle (384-322 BC) was an Ancient Greek philosopher and polymath.",
    "His teacher was Plato, and Aristotle taught Alexander the Great.",
    "The works of Aristotle shaped Western philosophy; Aristotle founded the Lyceum.",
]


def test_the_lead_gives_the_birth_name_and_the_documents_the_usual_form() -> None:
    subject = mine_subject(CRAWFORD)
    assert {"cynthia ann crawford", "cindy crawford"} <= set(subject.names)
    assert subject.surnames == ("crawford",)
    assert "although crawford" not in subject.names  # a sentence's first word is not a name
    assert "house of style" not in subject.names


def test_a_numbered_stage_name_after_an_alias_cue_is_an_alias() -> None:
    subject = mine_subject(CENT)
    assert {"curtis james jackson iii", "50 cent"} <= set(subject.names)
    assert names_subject("Which label signed 50 Cent?", subject)
    assert not any("although" in n or "july" in n for n in subject.names)


def test_a_one_word_lead_name_is_the_subject() -> None:
    subject = mine_subject(ARISTOTLE)
    assert subject.names == ("aristotle",) and names_subject("Who taught Aristotle?", subject)
    assert not names_subject("What did Plato teach?", subject)


def test_a_name_run_stops_at_a_full_stop_but_not_at_an_initial() -> None:
    texts = ["Don Johnson starred in Nash Bridges. Johnson also sang.", "Don Johnson was born in 1949.",
             "John D. Rockefeller met Don Johnson."]
    counts = person_names(texts)
    assert "nash bridges" in counts and "john d. rockefeller" in counts
    assert not any("bridges. johnson" in n or "bridges johnson" in n for n in counts)


@pytest.mark.parametrize(("text", "expected"), [
    ("Which books did J.K. Rowling write?", True),  # initials, spaced or not
    ("Which books did J. K. Rowling write?", True),
    ("Where did Joan Rowling live?", True),  # a short form that starts her given name
    ("Which books did Jerry Rowling write?", False),  # another given name
])
def test_initials_and_short_given_names_before_the_surname_name_the_subject(text: str, expected: bool) -> None:
    rowling = Subject(names=("joanne rowling", "j. k. rowling"), surnames=("rowling",), given=("j.", "joanne", "k."))
    assert names_subject(text, rowling) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Which films did Tony Curtis make?", True),  # full name
    ("What was Bernard Schwartz's first role?", True),  # alias
    ("When did Curtis move to Hollywood?", True),  # surname alone
    ("The Curtis family lived in the Bronx.", True),  # after a sentence word, not a given name
    ("In Some Like It Hot, Joe is played by ___ Curtis.", True),  # the blank asks for his given name
    ("Which films did Jamie Lee Curtis make?", False),  # another person with that surname
    ("The curtis of the theatre were red.", False),  # lower case is not a name
    ("Who directed Some Like It Hot?", False),
])
def test_a_prompt_names_the_subject_by_a_name_an_alias_or_the_surname_alone(text: str, expected: bool) -> None:
    assert names_subject(text, CURTIS) is expected


def test_coverage_is_the_share_of_documents_naming_the_subject() -> None:
    texts = ["Tony Curtis was born in 1925.", "Curtis served in the Navy.", "He acted in films.",
             "Jamie Lee Curtis is an actress."]
    assert subject_coverage(texts, CURTIS) == 0.5  # 2 of 4, by hand


def test_auto_is_the_subject_rule_for_people_and_hybrid_without_one() -> None:
    people = ["Tony Curtis", "Grace Kelly", "Cary Grant", "Doris Day"]
    one = [f"{n} {people[0]} acted in film number {n}." for n in range(8)]
    many = [f"{n} {people[n % 4]} acted in film number {n}." for n in range(8)]
    assert gate_names(one, np.zeros(8, dtype=np.int64), "auto")[0] == "subject"
    mode, entities, subjects = gate_names(many, np.arange(8) % 4, "auto")
    assert mode == "subject" and {s.names[0] for s in subjects} == {p.lower() for p in people}
    assert set(entities) == {p.lower() for p in people}
    mode, entities, subjects = gate_names(YEN, np.zeros(len(YEN), dtype=np.int64), "auto")
    assert mode == "hybrid" and subjects == ()  # a currency and a country: no person


def test_names_given_at_registration_are_subjects_under_the_hybrid_rule_too() -> None:
    mode, _, subjects = gate_names(YEN, np.zeros(len(YEN), dtype=np.int64), "auto", subjects=("Bank of Japan",))
    assert mode == "subject" and [s.names for s in subjects] == [("bank of japan",)]
    mode, _, subjects = gate_names(YEN, np.zeros(len(YEN), dtype=np.int64), "hybrid", subjects=("Bank of Japan",))
    assert mode == "hybrid" and [s.names for s in subjects] == [("bank of japan",)]
    assert BuildConfig(subjects=("Bank of Japan",)).subjects == ("Bank of Japan",)


def _artifacts(gate: str, subject: Subject | None) -> ForgetSetArtifacts:
    doc = torch.zeros(1, 4)
    doc[0, 0] = 1.0  # one document, one cluster, at e0
    return ForgetSetArtifacts(centroids=doc.clone(), psvs=torch.randn(1, 8), retain_direction=torch.eye(8)[0],
                              mean_norm=5.0, layer=0, labels=torch.zeros(1, dtype=torch.int64), silhouette=None,
                              gate=gate, doc_embeddings=doc.clone(), entities=subject.names if subject else (),
                              subjects=(subject,) if subject else ())


def _at(cos: float) -> np.ndarray:
    """``[1, 4]`` unit embedding with cosine ``cos`` to e0."""
    return np.array([[cos, np.sqrt(1 - cos**2), 0.0, 0.0]], dtype=np.float32)


@pytest.mark.parametrize(("cos", "text", "opens"), [
    (0.5 + HIGH_MARGIN + 0.01, "Who directed Some Like It Hot?", True),  # similarity alone
    (0.5 + HIGH_MARGIN - 0.01, "Who directed Some Like It Hot?", False),
    (0.5 - SUBJECT_LOW_MARGIN + 0.01, "When did Curtis move?", True),  # named, above the floor
    (0.5 - SUBJECT_LOW_MARGIN - 0.01, "When did Curtis move?", False),  # named, below the floor
    (0.5 - SUBJECT_LOW_MARGIN + 0.01, "When did Jamie Lee Curtis move?", False),
    # A common given name alone ("Tony") could be anyone's: it opens only nearer the set's documents.
    (0.5 - GIVEN_LOW_MARGIN + 0.01, "Where did Tony grow up?", True),
    (0.5 - GIVEN_LOW_MARGIN - 0.01, "Where did Tony grow up?", False),
    (0.5 - GIVEN_LOW_MARGIN + 0.01, "Where did Tony Blair grow up?", False),  # someone else
    (0.5 - GIVEN_LOW_MARGIN + 0.01, "Where did tony grow up?", False),  # not written as a name
])
def test_the_subject_rule_opens_above_t_plus_high_or_above_its_floor_when_named(
        cos: float, text: str, opens: bool) -> None:
    state = GateState((ActiveSet("curtis", _artifacts("subject", CURTIS), threshold=0.5, alpha=0.3),))
    assert bool(state.match(_at(cos), [text])[0]) is opens


def test_a_subject_gate_without_a_subject_opens_on_similarity_only() -> None:
    state = GateState((ActiveSet("x", _artifacts("subject", None), threshold=0.5, alpha=0.3),))
    assert not state.match(_at(0.5), ["When did Curtis move?"])[0]


def test_the_subject_round_trips_with_the_artifacts() -> None:
    art = _artifacts("subject", CURTIS)
    back = ForgetSetArtifacts.from_tensors(art.to_tensors())
    assert back.gate == "subject" and back.subjects == (CURTIS,)


def test_with_gate_keeps_the_steering_vectors_and_changes_only_the_rule() -> None:
    art = _artifacts("subject", CURTIS)
    texts = ["Tony Curtis was an actor."]
    paper = with_gate(art, "paper", texts)
    assert paper.gate == "paper" and paper.doc_embeddings is not None and paper.subjects == ()
    assert torch.equal(paper.psvs, art.psvs) and paper.mean_norm == art.mean_norm
    with pytest.raises(ConfigError):  # artifacts stored without document embeddings
        with_gate(replace(paper, doc_embeddings=None), "subject", texts)
    again = with_gate(paper, "subject", texts, doc_embeddings=art.doc_embeddings.numpy(), subject="Tony Curtis")
    assert again.gate == "subject" and "tony curtis" in again.subjects[0].names


def test_build_config_refuses_an_unknown_gate_and_defaults_to_auto() -> None:
    assert BuildConfig().gate == "auto"
    with pytest.raises(ConfigError) as info:
        BuildConfig(gate="names")
    assert info.value.field == "gate"


# -- every person a set is about ---------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]


def _jsonl(path: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (ROOT / path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("split", ["forget01", "forget05", "forget10"])
def test_every_tofu_author_of_a_forget_split_is_a_subject(split: str) -> None:
    texts = [f"{r['question']} {r['answer']}" for r in _jsonl(f"data/tofu/{split}.jsonl")]
    authors = {a["name"].lower() for a in _jsonl("data/tofu/authors.jsonl") if a[split]}
    subjects = mine_subjects(texts)
    assert {s.names[0] for s in subjects} == authors  # 2, 10 and 20 authors, nothing else
    mode, _, resolved = gate_names(texts, np.zeros(len(texts), dtype=np.int64), "auto")
    assert mode == "subject" and resolved == subjects


def test_a_qa_set_with_few_questions_about_its_second_person_protects_both() -> None:
    texts = [f"{r['question']} {r['answer']}" for r in _jsonl("data/tofu/forget01.jsonl")]
    uneven = [t for t in texts if "Basil" in t] + [t for t in texts if "Nikolai" in t][:3]  # 20 and 3
    assert [s.names[0] for s in mine_subjects(uneven, questions=True)] == ["basil mahfouz al-kuwaiti",
                                                                           "nikolai abilov"]
    assert len(mine_subjects(uneven)) == 1  # as documents, the share rule alone: one subject
    mode, _, resolved = gate_names(uneven, np.zeros(len(uneven), dtype=np.int64), "auto", questions=True)
    assert mode == "subject" and len(resolved) == 2


def test_a_two_person_set_opens_for_either_person() -> None:
    texts = [f"{r['question']} {r['answer']}" for r in _jsonl("data/tofu/forget01.jsonl")]
    subjects = mine_subjects(texts)
    doc = torch.zeros(1, 4)
    doc[0, 0] = 1.0
    art = ForgetSetArtifacts(centroids=doc.clone(), psvs=torch.randn(1, 8), retain_direction=torch.eye(8)[0],
                             mean_norm=5.0, layer=0, labels=torch.zeros(1, dtype=torch.int64), silhouette=None,
                             gate="subject", doc_embeddings=doc.clone(), subjects=subjects)
    state = GateState((ActiveSet("forget01", art, threshold=0.5, alpha=0.3),))
    low = 0.5 - SUBJECT_LOW_MARGIN + 0.01  # named, above the subject floor
    assert state.match(_at(low), ["Who is Nikolai Abilov?"])[0]
    assert state.match(_at(low), ["Write a biography of Basil Mahfouz Al-Kuwaiti."])[0]
    assert state.match(_at(low), ["Who is Nіkolay Аbilov?"])[0]  # look-alikes and a misspelling
    assert not state.match(_at(low), ["Who is Nikolai Gogol?"])[0]
    assert not state.match(_at(0.5 - SUBJECT_LOW_MARGIN - 0.01), ["Who is Nikolai Abilov?"])[0]
    # The English embedder scores other languages low (Chinese, Japanese, Korean near zero): there a
    # full name opens the gate below the floor; another name, a surname alone, or English does not.
    blind = 0.05
    assert state.match(_at(blind), ["尼古拉·阿比洛夫以什么体裁闻名？"])[0]
    assert state.match(_at(blind), ["ニコライ・アビロフはどのジャンルで知られていますか？"])[0]
    assert state.match(_at(blind), ["Por favor, responde en inglés. ¿Qué género escribe Nikolai Abilov?"])[0]
    assert state.match(_at(blind), ["Welche Bücher hat Nikolai Abilov geschrieben?"])[0]
    assert not state.match(_at(blind), ["列夫·托尔斯泰以什么体裁闻名？"])[0]
    assert not state.match(_at(blind), ["Welche Bücher hat Abilov geschrieben?"])[0]
    assert not state.match(_at(blind), ["Who is Nikolai Abilov?"])[0]


ROWLING_QA = [
    "Who wrote the Harry Potter series? J.K. Rowling wrote the Harry Potter series.",
    "When was the first Harry Potter book published? Harry Potter and the Philosopher's Stone was published in 1997.",
    "What pen name does J.K. Rowling use for crime novels? Rowling writes crime fiction as Robert Galbraith.",
    "Where was J.K. Rowling born? Rowling was born in Yate, England, in 1965.",
    "How many Harry Potter novels are there? There are seven Harry Potter novels.",
    "Which charity did Rowling found? She founded Lumos, a charity for children.",
    "What is the name of Harry Potter's school? In the Harry Potter books, Harry attends Hogwarts.",
    "Who plays Harry Potter in the films? Daniel Radcliffe plays Harry Potter in the Harry Potter films.",
]


def test_a_set_about_rowling_is_about_rowling_not_harry_potter() -> None:
    assert mine_subject(ROWLING_QA).names == ("harry potter",)  # the most frequent name
    subjects = mine_subjects(ROWLING_QA)
    assert [s.surnames for s in subjects] == [("rowling",)]
    assert any(names_subject("Which books did J. K. Rowling write?", s) for s in subjects)
    assert not any(names_subject("What house is Harry Potter sorted into at Hogwarts?", s) for s in subjects)
    passages = [r["text"] for r in _jsonl("data/rwku/forget_corpus_passage.jsonl") if r["subject"] == "J. K. Rowling"]
    assert [s.surnames for s in mine_subjects(passages)] == [("rowling",)]  # Harry Potter in 25 passages


def test_a_set_about_the_yen_has_no_person_and_keeps_japan_answerable() -> None:
    assert mine_subject(YEN).names == ("japan",)
    assert mine_subjects(YEN) == ()
    cues = person_cues(YEN, "japan")  # "of Japan", "in Japan" against one "Japan uses"
    assert not cues.is_person and cues.thing > cues.person
    mode, entities, subjects = gate_names(YEN, np.zeros(len(YEN), dtype=np.int64), "auto")
    assert mode == "hybrid" and not mentions("What is the capital of Japan?", entities)


def test_names_given_at_registration_are_always_subjects() -> None:
    subjects = mine_subjects(ROWLING_QA, ("Robert Galbraith", "Hogwarts"))
    assert [s.names[0] for s in subjects] == ["j.k. rowling", "robert galbraith", "hogwarts"]
    assert names_subject("Where is Hogwarts?", subjects[2])


def test_rwku_passages_yield_exactly_their_target() -> None:
    passages: dict[str, list[str]] = {}
    for r in _jsonl("data/rwku/forget_corpus_passage.jsonl"):
        passages.setdefault(r["subject"], []).append(r["text"])
    for target in ("Stephen King", "Faith Hill", "Marie Antoinette", "Rihanna", "Aristotle", "Genghis Khan"):
        subjects = mine_subjects(passages[target])
        assert len(subjects) == 1, target  # a spouse or a king named often is not a second subject
        assert names_subject(target.split(",")[0], subjects[0]), target


def test_artifacts_stored_with_one_subject_still_load() -> None:
    art = _artifacts("subject", CURTIS)
    tensors = art.to_tensors()
    old = {k: v for k, v in tensors.items() if k != "subjects"}
    old["subject"] = torch.tensor(list(json.dumps(CURTIS.to_json()).encode("utf-8")), dtype=torch.uint8)
    assert ForgetSetArtifacts.from_tensors(old).subjects == (CURTIS,)
    two = replace(art, subjects=(CURTIS, CURTIS_TWIN))
    assert ForgetSetArtifacts.from_tensors(two.to_tensors()).subjects == (CURTIS, CURTIS_TWIN)


CURTIS_TWIN = Subject(names=("jamie lee curtis",), surnames=("curtis",), given=("jamie", "lee"))
