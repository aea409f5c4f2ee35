"""Parameters of GUARD-IT (arXiv 2605.12765) as frozen value objects; no environment reads here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

from steering.errors import ConfigError

#: Gate rules a built forget set uses (``steering.gates``); the order is the index stored with the
#: artifacts, so a rule is only ever appended.
GateRule = Literal["paper", "hybrid", "subject"]
#: A rule as asked for: one of the rules, or ``auto`` (resolved once per set by
#: ``steering.vectors.build_gate``).
GateSetting = Literal["paper", "hybrid", "subject", "auto"]
PAPER: Final = "paper"
HYBRID: Final = "hybrid"
SUBJECT: Final = "subject"
AUTO: Final = "auto"
GATE_RULES: tuple[GateRule, ...] = get_args(GateRule)
GATE_SETTINGS: tuple[GateSetting, ...] = get_args(GateSetting)
#: Rules that compare the prompt with every document (they keep the document embeddings).
DOC_GATES: tuple[GateRule, ...] = (HYBRID, SUBJECT)

#: Paper defaults (METHOD.md step 6 and Eq. 8).
DEFAULT_THRESHOLD = 0.55
DEFAULT_ALPHA = 0.2

#: Strength calibrated per model (METHOD.md "calibrated strength"): the paper's 0.2 was tuned on
#: Llama-3.2 1B-8B and leaves SmolLM2-135M's answers intact; the measurements behind the value are
#: in docs/results/calibration.md.
CALIBRATED_ALPHA: dict[str, float] = {"smollm2-135m-instruct": 0.3}


def _alternatives(names: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``: the names as an error message lists them."""
    quoted = [repr(n) for n in names]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def default_alpha(model_id: str) -> float:
    """The calibrated strength of a known model, else the paper's 0.2."""
    return CALIBRATED_ALPHA.get(model_id, DEFAULT_ALPHA)


def default_layer(n_layers: int) -> int:
    """The first-quartile layer of a model with ``n_layers`` decoder blocks.

    Layer ``L`` names the output of decoder block ``L`` (0-based), i.e. ``hidden_states[L + 1]``
    in transformers and ``blocks.L.hook_resid_post`` in TransformerLens. The residual after
    ``round(n_layers / 4)`` blocks (half rounded up) is the output of block ``round(n/4) - 1``:
    block 7 of SmolLM2's 30, block 0 of a 2-layer test model.
    """
    return max(0, math.floor(n_layers / 4 + 0.5) - 1)


def check_threshold(threshold: float, *, field: str = "threshold") -> float:
    """Validate a cosine threshold: a float in [-1, 1]."""
    if not isinstance(threshold, int | float) or math.isnan(threshold) or not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"expected {field} in [-1, 1], found {threshold!r}", field=field)
    return float(threshold)


#: Strongest accepted alpha: Eq. 8 with alpha * mu far above ||h|| only turns h around (collapse).
MAX_ALPHA = 4.0


def check_alpha(alpha: float, *, field: str = "alpha") -> float:
    """Validate a redirection strength: a finite float in [0, ``MAX_ALPHA``]."""
    if (isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha)
            or not 0 <= alpha <= MAX_ALPHA):
        raise ConfigError(f"expected {field} in [0, {MAX_ALPHA:g}], found {alpha!r}", field=field)
    return float(alpha)


def check_layer(layer: int, n_layers: int, *, field: str = "layer") -> int:
    """Validate a layer index against the model depth."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise ConfigError(
            f"expected {field} an integer in [0, {n_layers - 1}] for this {n_layers}-layer model, "
            f"found {layer!r}",
            field=field,
        )
    return layer


@dataclass(frozen=True)
class BuildConfig:
    """How a forget set is turned into gate centroids and steering vectors (METHOD.md steps 1-5).

    Attributes:
        layer: decoder block whose output is read and steered; None = first quartile.
        threshold: gate cosine threshold T stored with the set.
        alpha: redirection strength stored with the set.
        k_max: largest k tried by the silhouette search.
        seed: k-means seed (clustering is deterministic under it).
        max_documents: forget sets above this size are refused.
        max_doc_tokens: documents are truncated to this many tokens for PSV pooling.
        batch_size: documents per forward pass while pooling activations.
        gate: ``"auto"`` (default: ``"subject"`` when the documents are about one person, else
            ``"hybrid"``; resolved by ``steering.vectors.build_gate``), ``"hybrid"`` (per-document
            similarity plus mined names, see ``steering.gates``), ``"subject"`` (per-document
            similarity plus the one person's names and surname) or ``"paper"`` (cluster centroids
            against T, exactly as the paper).
        subject: the name of whom the set is about (e.g. the forget set's name), for the
            ``"subject"`` gate; None mines it from the documents.
        subjects: names given at registration (people or trigger names), each a subject of the
            set under every rule but ``"paper"``, in addition to the people mined.
    """

    layer: int | None = None
    threshold: float = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    k_max: int = 32
    seed: int = 0
    max_documents: int = 5000
    max_doc_tokens: int = 512
    batch_size: int = 8
    gate: GateSetting = AUTO
    subject: str | None = None
    subjects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.gate not in GATE_SETTINGS:
            raise ConfigError(f"expected gate {_alternatives(GATE_SETTINGS)}, found {self.gate!r}", field="gate")
        check_threshold(self.threshold)
        check_alpha(self.alpha)
        if self.k_max < 1:
            raise ConfigError(f"expected k_max >= 1, found {self.k_max}", field="k_max")
        if self.max_documents < 1:
            raise ConfigError(f"expected max_documents >= 1, found {self.max_documents}")
