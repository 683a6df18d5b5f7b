"""The streams worker's Kafka connection for Faust (aiokafka): the same
:class:`continuum.kafka.Connection` the confluent-kafka clients use, as Faust credentials."""

from __future__ import annotations

import time
from typing import Any

import httpx
from aiokafka.conn import AbstractTokenProvider
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials

from continuum.kafka import Connection


class OidcTokenProvider(AbstractTokenProvider):
    """OAUTHBEARER tokens from an OIDC token endpoint (client-credentials grant), cached until
    30 s before they expire; what librdkafka's ``sasl.oauthbearer.method=oidc`` does for the
    confluent-kafka clients."""

    def __init__(self, conn: Connection, *, margin_s: float = 30.0) -> None:
        self.conn = conn
        self.margin_s = margin_s
        self._token = ""
        self._expires = 0.0

    async def token(self) -> str:
        if self._token and time.monotonic() < self._expires:
            return self._token
        form = {"grant_type": "client_credentials"}
        if self.conn.oauth_scope:
            form["scope"] = self.conn.oauth_scope
        verify: Any = self.conn.ssl_ca_location or True
        async with httpx.AsyncClient(timeout=10, verify=verify) as http:
            resp = await http.post(
                self.conn.oauth_token_url,
                data=form,
                auth=(self.conn.oauth_client_id, self.conn.oauth_client_secret),
            )
        if resp.status_code != 200:
            # The body may echo the request; only the status and the endpoint are reported.
            raise RuntimeError(
                f"OIDC token endpoint {self.conn.oauth_token_url} answered {resp.status_code}"
            )
        body = resp.json()
        self._token = str(body["access_token"])
        lifetime = float(body.get("expires_in", 300))
        self._expires = time.monotonic() + max(0.0, lifetime - self.margin_s)
        return self._token


def faust_credentials(conn: Connection) -> Any:
    """``broker_credentials`` for ``faust.App`` (None for plaintext)."""
    ctx = conn.ssl_context()
    if conn.sasl:
        if conn.sasl_mechanism == "OAUTHBEARER":
            return OAuthCredentials(oauth_cb=OidcTokenProvider(conn), ssl_context=ctx)
        return SASLCredentials(
            username=conn.sasl_username,
            password=conn.sasl_password,
            ssl_context=ctx,
            mechanism=conn.sasl_mechanism,
        )
    if ctx is not None:
        return SSLCredentials(ctx)
    return None
