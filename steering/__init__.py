"""GUARD-IT: inference-time unlearning by gated activation redirection (arXiv 2605.12765).

The method as a library: build forget sets into gate centroids and prototype steering vectors,
gate each request, and redirect the residual stream with Eq. 8. No web stack, no environment reads.
"""

from steering.config import DEFAULT_ALPHA, DEFAULT_THRESHOLD, BuildConfig, default_layer
from steering.errors import (
    ConfigError,
    ForgetSetError,
    ModelLoadError,
    SteeringError,
    UnknownForgetSetError,
    UnsupportedModelError,
)
from steering.forget_set import ForgetDocuments, QAPair, make_documents, read_forget_file
from steering.gates import ActiveSet, GateMatch, GateState, build_plans
from steering.guard import Generation, Guard, SamplingParams
from steering.hooks import ResidualHooks, SteeringPlan, steered
from steering.loading import EMBEDDED_EMBEDDER, EMBEDDED_MODEL, LoadedModel, load_embedder, load_model
from steering.vectors import ForgetSetArtifacts, build_artifacts

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_THRESHOLD",
    "EMBEDDED_EMBEDDER",
    "EMBEDDED_MODEL",
    "ActiveSet",
    "BuildConfig",
    "ConfigError",
    "ForgetDocuments",
    "ForgetSetArtifacts",
    "ForgetSetError",
    "GateMatch",
    "GateState",
    "Generation",
    "Guard",
    "LoadedModel",
    "ModelLoadError",
    "QAPair",
    "ResidualHooks",
    "SamplingParams",
    "SteeringError",
    "SteeringPlan",
    "UnknownForgetSetError",
    "UnsupportedModelError",
    "build_artifacts",
    "build_plans",
    "default_layer",
    "load_embedder",
    "load_model",
    "make_documents",
    "read_forget_file",
    "steered",
]
