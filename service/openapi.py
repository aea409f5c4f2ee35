"""OpenAPI for routes that parse their JSON body themselves (after the scope check, so an
unauthorised caller learns nothing about the schema): their request models are added to
``/openapi.json`` by hand.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the route's required JSON request body.

    Args:
        model: the pydantic request model the route validates with.

    Returns:
        The OpenAPI operation fragment.
    """
    _BODY_MODELS[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def install_openapi(app: FastAPI, *, description: str) -> None:
    """Serve ``/openapi.json`` with the hand-declared request models among the component schemas."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=description,
                                 routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _BODY_MODELS.items():
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for sub, sub_schema in body.pop("$defs", {}).items():
                    components.setdefault(sub, sub_schema)
                components.setdefault(name, body)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]
