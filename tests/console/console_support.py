"""Helpers of the console tests: a browser-like HTTP client (cookie jar) and an admin client."""
from __future__ import annotations

import aiohttp
from yarl import URL

ADMIN_TOKEN = "admin-test-token"
PASSWORD = "correct horse battery"


class Browser:
    """An HTTP client that keeps cookies like a browser and sends the CSRF header when told to."""

    def __init__(self, url: str):
        self.url = url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None

    async def close(self) -> None:
        await self.http.close()

    def cookie(self, name: str) -> str | None:
        found = self.http.cookie_jar.filter_cookies(URL(self.url)).get(name)
        return found.value if found else None

    async def call(self, method: str, path: str, *, json=None, csrf: bool = True, headers: dict | None = None):
        h = dict(headers or {})
        if csrf and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        async with self.http.request(method, self.url + path, json=json, headers=h) as resp:
            data = await resp.json() if "json" in resp.headers.get("Content-Type", "") else await resp.read()
            return resp.status, data, resp

    async def sign_in(self, email: str, password: str = PASSWORD):
        status, data, resp = await self.call("POST", "/api/v1/session", json={"email": email, "password": password})
        if status == 200:
            self.csrf = data["csrf_token"]
        return status, data, resp


async def admin(http: aiohttp.ClientSession, url: str, method: str, path: str, json=None, expect=(200, 201)):
    async with http.request(method, url + path, json=json, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        data = await r.json() if "json" in r.headers.get("Content-Type", "") else await r.text()
        assert r.status in (expect if isinstance(expect, tuple) else (expect,)), (method, path, r.status, data)
        return data
