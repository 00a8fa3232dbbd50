"""Extra checks on every mutation: the role may act, the request is same-origin, the CSRF token matches.

Browsers attach cookies (and cached Basic credentials) to cross-site requests, so a mutation is
refused when the browser says it is cross-site (`Sec-Fetch-Site`) or when its Origin/Referer
names another host. Pages also send a per-session CSRF token (form field or `X-CSRF-Token`
header); API clients that authenticate with Basic credentials and no cookie don't need one.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status

from .auth import Principal, get_admin, require_principal

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def _forbidden(detail: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=detail)


def check_same_origin(request: Request, trusted: frozenset[str]) -> None:
    fetch_site = request.headers.get("sec-fetch-site")
    # "same-site" is refused too: a sibling subdomain is not necessarily ours.
    if fetch_site is not None and fetch_site not in {"same-origin", "none"}:
        raise _forbidden(f"cross-site request refused (Sec-Fetch-Site: {fetch_site})")
    host = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value is None:
            continue
        netloc = urlsplit(value).netloc if value != "null" else "null"
        if netloc != host and value.rstrip("/") not in trusted:
            raise _forbidden(f"cross-origin request refused ({header} does not match the host)")
        return  # Origin is authoritative when present; Referer is the fallback


async def _submitted_token(request: Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)  # cached: the endpoint can read the form again
        token = value if isinstance(value, str) else None
    return token


async def check_csrf(request: Request, principal: Principal) -> None:
    """Same origin, and for a session the page's CSRF token (403 on failure)."""
    check_same_origin(request, get_admin(request).trusted_origins)
    if principal.via == "session":
        token = await _submitted_token(request)
        if not token or principal.csrf is None or not secrets.compare_digest(token, principal.csrf):
            raise _forbidden("missing or invalid CSRF token; reload the page and try again")


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class OpenAdminHosts:
    """Where an admin without credentials accepts actions from."""

    names: frozenset[str]
    loopback_clients_only: bool

    @classmethod
    def build(cls, allowed_hosts: Sequence[str] | None) -> OpenAdminHosts:
        if allowed_hosts is None:
            return cls(LOOPBACK_NAMES, loopback_clients_only=True)
        return cls(frozenset(host.lower().strip("[]") for host in allowed_hosts), loopback_clients_only=False)

    def describe(self) -> str:
        if self.loopback_clients_only:
            return "this machine"
        return "any host" if "*" in self.names else "hosts " + ", ".join(sorted(self.names))

    def refusal(self, request: Request) -> str | None:
        host = (urlsplit("//" + request.headers.get("host", "")).hostname or "").lower()
        client = request.client.host if request.client else ""
        if "*" not in self.names and host not in self.names:
            return f"the admin has no credentials, so it accepts actions only for {self.describe()}, not Host {host!r}"
        if self.loopback_clients_only and not _is_loopback(client):
            return f"the admin has no credentials, so it accepts actions only from this machine, not {client!r}"
        return None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def require_actor(request: Request, principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    """Dependency of every mutating route (403 on failure)."""
    if not principal.can_act:
        raise _forbidden(f"user {principal.username!r} is read-only")
    admin = get_admin(request)
    if admin.open:
        refusal = admin.allowed_hosts.refusal(request)
        if refusal is not None:
            raise _forbidden(f"{refusal}; configure username= and password=, or TaskAdmin(allowed_hosts=[...])")
    await check_csrf(request, principal)
    return principal


ActorDep = Annotated[Principal, Depends(require_actor)]
