"""The OpenAPI document: request models of routes that parse their JSON body themselves (after the
scope check, so an unauthorised caller learns nothing about the schema), the bearer security scheme
and each route's required scope (OpenAPI 3.1 lets a non-OAuth requirement name roles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

_BODY_MODELS: dict[str, type[BaseModel]] = {}
SCHEME = "bearerAuth"


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


def _scope(route: APIRoute) -> str | None:
    """The scope the route's ``require_scope`` dependency demands, if any."""
    pending = list(route.dependant.dependencies)
    while pending:
        dep = pending.pop()
        scope = getattr(dep.call, "scope", None)
        if isinstance(scope, str):
            return scope
        pending.extend(dep.dependencies)
    return None


def _secure(routers: Sequence[APIRouter], schema: dict[str, Any]) -> None:
    schema["components"].setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http", "scheme": "bearer",
        "description": "an API key from GUARDIT_API_KEYS; each operation names the scope it needs "
                       "(admin implies every scope)"}
    for route in (r for router in routers for r in router.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        scope = _scope(route)
        if scope is None:
            continue
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                operation["security"] = [{SCHEME: [scope]}]
                operation["x-guardit-scope"] = scope


def install_openapi(app: FastAPI, routers: Sequence[APIRouter], *, description: str) -> None:
    """Serve ``/openapi.json`` with the hand-declared request models and the security scheme.

    Args:
        app: the application.
        routers: the routers included in ``app`` (their routes name the scopes they require).
        description: the document's description.
    """

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
            _secure(routers, schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]
