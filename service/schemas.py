"""Names the CLI and the health routes still import from here; the models live in
``service.protocol`` (one module per feature). Import from there in new code."""

from service.protocol.common import ErrorResponse, HealthResponse
from service.protocol.compare import compare_response, gate_response
from service.protocol.forget import forget_set_response
from service.protocol.generate import generate_response

__all__ = ["ErrorResponse", "HealthResponse", "compare_response", "forget_set_response", "gate_response",
           "generate_response"]
