"""OpenAI-style error responses: `{"error": {"message", "type", "param", "code"}}` with a 4xx/5xx status, for every
failure a client can cause (bad JSON, missing or invalid fields, unknown model, too-long prompt, a bad API key)."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ServeError(Exception):
    """A request the server refuses: its HTTP status and the fields of OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: Optional[str] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def error_response(
    status: int, message: str, type: str = "invalid_request_error", param: Optional[str] = None, code: Optional[str] = None
) -> JSONResponse:
    """The JSON body OpenAI's clients parse into their APIError (message, type, param, code)."""
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}}, status_code=status)


def _validation_response(ex: RequestValidationError) -> JSONResponse:
    """Pydantic's first complaint as one line: invalid JSON, a missing field, a value out of range."""
    first: dict[str, Any] = ex.errors()[0] if ex.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    if first.get("type") == "json_invalid":
        return error_response(
            400, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})", code="invalid_json"
        )
    text = str(first.get("msg", "invalid value")).removeprefix("Value error, ")  # our validators' own words
    message = f"{param}: {text}" if param else text
    return error_response(400, message, param=param, code=str(first.get("type", "invalid_value")))


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal leaves the app as OpenAI's error JSON (FastAPI's own 422 becomes a 400, as OpenAI answers)."""

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, ex: ServeError) -> JSONResponse:
        return error_response(ex.status, ex.message, ex.type, ex.param, ex.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, ex: RequestValidationError) -> JSONResponse:
        return _validation_response(ex)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, ex: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(ex.status_code)
        message = f"no route {request.method} {request.url.path}" if ex.status_code in (404, 405) else str(ex.detail)
        return error_response(ex.status_code, message, code=code)
