from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse

from portal.errors import error_response

logger = logging.getLogger("api")

API_PREFIX = "/api/"


class ApiErrorShapeMiddleware:
    """Under /api/, an error response that is not already JSON (Django's 404/400/413/500
    pages, CSRF failures outside DRF, a crash in other middleware) is replaced by the API's
    error shape, so clients parse one format whatever went wrong."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIX) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        shaped = error_response(response.status_code)
        for header in ("Retry-After", "WWW-Authenticate", "Allow", "X-Request-ID"):
            if header in response:
                shaped[header] = response[header]
        return shaped

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None

        if isinstance(exception, Http404):
            return error_response(404)
        if isinstance(exception, PermissionDenied):
            return error_response(403)
        if isinstance(exception, RequestDataTooBig):
            return error_response(413)
        if isinstance(exception, (TooManyFieldsSent, SuspiciousOperation)):
            return error_response(400)
        logger.exception("unhandled error under /api/", exc_info=exception)
        return error_response(500)
