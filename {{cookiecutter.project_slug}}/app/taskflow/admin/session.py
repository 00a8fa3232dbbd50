"""The dashboard's session: a signed cookie (itsdangerous) naming the user and a CSRF nonce.

Nothing secret is stored in it: the signature (keyed by the admin's secret_key) makes it
tamper-proof, the timestamp bounds its life, and a fingerprint of the user's password ends every
session when the password changes. Each session has an id, so logout can end it on every
instance (limits.py keeps the ended ids in the database).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "taskflow_session"


@dataclass(frozen=True)
class Session:
    username: str | None  # None: an anonymous session (open admin), only carrying a CSRF nonce
    csrf: str
    fingerprint: str
    session_id: str = ""


class SessionSigner:
    def __init__(self, secret_key: str, *, path: str, max_age: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="taskflow-admin-session")
        self._secret = secret_key.encode()
        self.path = path
        self.max_age = max_age

    def fingerprint(self, password: str) -> str:
        return hmac.new(self._secret, password.encode(), hashlib.sha256).hexdigest()[:16]

    def load(self, request: Request) -> Session | None:
        token = request.cookies.get(COOKIE_NAME)
        if not token:
            return None
        try:
            data = self._serializer.loads(token, max_age=self.max_age)
        except BadSignature:  # also covers expired (SignatureExpired is a subclass)
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        return Session(
            username=data.get("u"),
            csrf=data["c"],
            fingerprint=str(data.get("f", "")),
            session_id=str(data.get("s", "")),
        )

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def issue(
        self,
        request: Request,
        response: Response,
        *,
        username: str | None,
        password: str | None,
        csrf: str | None = None,
    ) -> Session:
        session = Session(
            username=username,
            csrf=csrf or self.new_nonce(),
            fingerprint=self.fingerprint(password) if password is not None else "",
            session_id=self.new_nonce(),
        )
        token = self._serializer.dumps(
            {"u": session.username, "c": session.csrf, "f": session.fingerprint, "s": session.session_id}
        )
        response.set_cookie(
            COOKIE_NAME,
            token,
            max_age=self.max_age,
            path=self.path,
            httponly=True,  # scripts never need it; the CSRF nonce is given to pages separately
            samesite="lax",  # not sent on cross-site POSTs
            secure=request.url.scheme == "https",
        )
        return session

    def clear(self, response: Response) -> None:
        response.delete_cookie(COOKIE_NAME, path=self.path, httponly=True, samesite="lax")
