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
from steering.leakcheck import LeakProfile, LeakVerdict, build_leak_profile, check_output
from steering.loading import EMBEDDED_EMBEDDER, EMBEDDED_MODEL, LoadedModel, load_embedder, load_model
from steering.probes import Probe, make_probes
from steering.vectors import ForgetSetArtifacts, build_artifacts
from steering.verify import VerificationReport, verify_forget_set

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
    "LeakProfile",
    "LeakVerdict",
    "LoadedModel",
    "ModelLoadError",
    "Probe",
    "QAPair",
    "ResidualHooks",
    "SamplingParams",
    "SteeringError",
    "SteeringPlan",
    "UnknownForgetSetError",
    "UnsupportedModelError",
    "VerificationReport",
    "build_artifacts",
    "build_leak_profile",
    "build_plans",
    "check_output",
    "default_layer",
    "load_embedder",
    "load_model",
    "make_documents",
    "make_probes",
    "read_forget_file",
    "steered",
    "verify_forget_set",
]
