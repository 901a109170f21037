"""The HTTP session of the transport: a ``requests.Session`` that keeps the keys at home.

requests strips only ``Authorization`` when a redirect leaves the host
(``Session.rebuild_auth``); fi_evals authenticates with ``X-Api-Key`` and ``X-Secret-Key``,
which requests forwards to any host a redirect names. :class:`KeySafeSession` drops them as
soon as a redirect leaves the origin. The transport itself never follows redirects (see
``fi_evals._transport``): this is the second line, for any code that does.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from fi_evals._constants import HEADER_API_KEY, HEADER_SECRET_KEY

__all__ = ["KEY_HEADERS", "KeySafeSession"]

KEY_HEADERS = (HEADER_API_KEY, HEADER_SECRET_KEY)
"""Headers that carry credentials: never sent to another origin."""


class KeySafeSession(requests.Session):
    """A ``requests.Session`` that drops the key headers on a redirect to another origin.

    The origin is requests' own (scheme, host and port, a scheme's default port counting as
    that port), with no exception for an http to https upgrade.
    """

    def should_strip_auth(self, old_url: str, new_url: str) -> bool:
        """True when ``new_url`` is another origin than ``old_url``.

        requests' test, plus a change of scheme: requests keeps credentials on an http to https
        upgrade of the same host, but a different scheme is a different origin all the same.
        """
        return (super().should_strip_auth(old_url, new_url)
                or urlsplit(old_url).scheme != urlsplit(new_url).scheme)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest,
                     response: requests.Response) -> None:
        """requests' handling of ``Authorization``, then the same for the key headers."""
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url or "", prepared_request.url or ""):
            for name in KEY_HEADERS:
                prepared_request.headers.pop(name, None)
