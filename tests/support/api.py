"""The call log's JSON API asked as a client asks it: over HTTP, with a bearer key."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def get_json(url: str, key: str | None) -> tuple[int, Any]:
    """GET ``url`` (``Authorization: Bearer <key>`` unless ``key`` is None): the status and the
    decoded JSON body, an error's too."""
    request = urllib.request.Request(url)  # noqa: S310 - the tests' own http://127.0.0.1
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
