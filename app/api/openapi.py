"""The OpenAPI 3.1 document of the management API, made from the operations declared in
``app.api.manage`` and the pydantic models that validate their requests."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, jsonify, send_from_directory
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.api import bp, operations, schemas

REF = "#/components/schemas/{model}"
ERRORS = {
    400: "The body is not JSON, or not an object.",
    401: "No API key, or not a valid one.",
    403: "The key belongs to another product or lacks the scope.",
    404: "No such note, translation or end user in this product.",
    409: "Not possible in the note's state, such as publishing an archived note.",
    413: "The file is over 2 MB.",
    422: "A field is not valid; `errors` names each.",
    429: "Too many calls with this key; see the X-RateLimit-* headers.",
}
RATE_HEADERS = {
    "X-RateLimit-Limit": "Calls allowed in the current window.",
    "X-RateLimit-Remaining": "Calls left in the current window.",
    "X-RateLimit-Reset": "When the window resets, in Unix seconds.",
}


def _path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: <id:note_id> -> {note_id}."""
    return "/api/v1" + re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def _parameters(spec: operations.Operation, schema_of: dict[type[BaseModel], Any]) -> list[Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": "slug",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
            "description": "The product, as in its public page's address.",
        }
    ]
    if "note_id" in spec.rule:
        parameters.append(
            {
                "name": "note_id",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
            }
        )
    if "<locale>" in spec.rule:
        parameters.append(
            {
                "name": "locale",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,35}$"},
                "description": "A language of the product other than its default, as a "
                "BCP 47 tag (fr, fr-CA, pt-BR; fr_CA is read as fr-CA).",
            }
        )
    if "external_id>" in spec.rule:
        parameters.append(
            {
                "name": "external_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "The end user's id in your app, as the widget is given it. "
                "It may hold a slash (team/42), as it is or percent-encoded (team%2F42).",
            }
        )
    if spec.query is not None:
        query = schema_of[spec.query]
        for name, prop in query["properties"].items():
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {k: v for k, v in prop.items() if k != "description"},
                    "description": prop.get("description", ""),
                }
            )
    return parameters


def _operation(spec: operations.Operation, schema_of: dict[type[BaseModel], Any]) -> dict[str, Any]:
    headers = {
        name: {"description": text, "schema": {"type": "integer"}}
        for name, text in RATE_HEADERS.items()
    }
    ok: dict[str, Any] = {"description": "Done.", "headers": headers}
    if spec.answer is not None:
        ok["content"] = {"application/json": {"schema": schema_of[spec.answer]}}
    error = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    responses: dict[str, Any] = {str(spec.status): ok}
    for status in sorted({401, 403, 429, *spec.errors}):
        responses[str(status)] = {"description": ERRORS[status], "content": error}
    document: dict[str, Any] = {
        "operationId": spec.name,
        "summary": spec.summary,
        "description": f"Needs a key with the `{spec.scope.value}` scope.",
        "parameters": _parameters(spec, schema_of),
        "responses": responses,
        "security": [{"apiKey": []}],
        "tags": [spec.rule.split("/")[3]],
    }
    if spec.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema_of[spec.body]}},
        }
    if spec.form is not None:
        form_schema = {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "CHANGELOG.md, or git-cliff --context JSON.",
                },
                **schema_of[spec.form].get("properties", {}),
            },
        }
        document["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": form_schema}},
        }
    return document


def document() -> dict[str, Any]:
    requests: list[type[BaseModel]] = [
        m for s in operations.OPERATIONS for m in (s.body, s.query, s.form) if m
    ]
    answers: list[type[BaseModel]] = [
        schemas.Error,
        *(s.answer for s in operations.OPERATIONS if s.answer),
    ]
    inline = [m for s in operations.OPERATIONS for m in (s.query, s.form) if m]
    keyed, definitions = models_json_schema(
        [(model, "validation") for model in dict.fromkeys(requests)]
        + [(model, "serialization") for model in dict.fromkeys(answers)],
        ref_template=REF,
    )
    schema_of: dict[type[BaseModel], Any] = {}
    for (model, _), reference in keyed.items():
        assert issubclass(model, BaseModel)  # noqa: S101 - only models were given; for mypy
        name = reference["$ref"].rsplit("/", 1)[1]
        schema_of[model] = definitions["$defs"][name] if model in inline else reference
    components = {
        name: schema
        for name, schema in definitions["$defs"].items()
        if name not in {m.__name__ for m in inline}
    }
    paths: dict[str, dict[str, Any]] = {}
    for spec in operations.OPERATIONS:
        paths.setdefault(_path(spec.rule), {})[spec.method.lower()] = _operation(spec, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings management API",
            "version": "1",
            "description": (
                "Write, publish and translate release notes, import changelogs and read "
                "subscribers from your pipelines. Create a key on a product's API keys page in "
                "the console (or `flask api-keys create`) and send it as "
                "`Authorization: Bearer <key>`."
            ),
        },
        "servers": [{"url": current_app.config["BASE_URL"]}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return jsonify(document())


@bp.get("/docs")
def docs() -> ResponseReturnValue:
    """A readable page of the document, served from static/ (no CDN)."""
    return send_from_directory(current_app.static_folder or "static", "api/docs.html")
