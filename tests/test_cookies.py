"""The session cookie's attributes (SPEC section 6), on HTTP and HTTPS, for both cookie kinds."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Response, get
from litestar.params import FromPath

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.cookies import CookieJar
from litestar_flash_sessions.stores import CookieStore, MemoryStore, SessionBackend
from tests.app import build_app
from tests.conftest import in_loop_client
from tests.harness import SECRET

STORES = {"memory": MemoryStore, "cookie": lambda: CookieStore(SECRET)}


def named(store: str, name: str) -> tuple[SessionBackend, dict[str, Any]]:
    """A store of this kind whose cookie is called ``name``, and the config fields that say so."""
    if store == "cookie":
        return CookieStore(SECRET, cookie_name=name), {}
    return MemoryStore(), {"cookie_name": name}


async def set_cookie_after_login(
    base_url: str, store: str, *, backend: SessionBackend | None = None, data: Any = None, **config: Any
) -> list[str]:
    app = build_app(SessionConfig(store=backend or STORES[store](), **config))
    async with app.lifespan(), in_loop_client(app, base_url) as client:
        response = await client.post("/set", json=data or {"user": "ann"})
        assert response.status_code == 200
        return list(response.headers.get_list("set-cookie"))


async def expiry_after_logout(base_url: str, backend: SessionBackend, **config: Any) -> list[str]:
    app = build_app(SessionConfig(store=backend, **config))
    async with app.lifespan(), in_loop_client(app, base_url) as client:
        [cookie] = (await client.post("/set", json={"user": "ann"})).headers.get_list("set-cookie")
        # Sent by hand: over http the client's cookie jar keeps a Secure cookie to itself.
        response = await client.post("/logout", headers={"cookie": cookie.split(";", 1)[0]})
        return list(response.headers.get_list("set-cookie"))


def attributes(header: str) -> list[str]:
    return [part.strip() for part in header.split(";")[1:]]


@pytest.mark.parametrize("store", sorted(STORES))
async def test_defaults_over_http(store: str) -> None:
    [header] = await set_cookie_after_login("http://testserver.local", store)
    assert attributes(header) == ["Path=/", "HttpOnly", "SameSite=Lax"]


@pytest.mark.parametrize("store", sorted(STORES))
async def test_defaults_over_https_add_secure(store: str) -> None:
    [header] = await set_cookie_after_login("https://testserver.local", store)
    assert attributes(header) == ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"]


@pytest.mark.parametrize("store", sorted(STORES))
async def test_every_attribute_is_configurable(store: str) -> None:
    [header] = await set_cookie_after_login(
        "http://testserver.local",
        store,
        cookie_path="/set",  # the handler's own path: outside the cookie's path a session is not saved
        cookie_domain="example.com",
        cookie_secure=True,
        cookie_httponly=False,
        cookie_samesite="strict",
        cookie_max_age=3600,
    )
    assert attributes(header) == ["Path=/set", "Domain=example.com", "Max-Age=3600", "SameSite=Strict", "Secure"]


async def test_secure_false_is_kept_over_https() -> None:
    [header] = await set_cookie_after_login("https://testserver.local", "memory", cookie_secure=False)
    assert "Secure" not in attributes(header)


async def test_samesite_none_with_secure() -> None:
    [header] = await set_cookie_after_login(
        "http://testserver.local", "memory", cookie_samesite="none", cookie_secure=True
    )
    assert "SameSite=None" in attributes(header)
    assert "Secure" in attributes(header)


async def test_cookie_name_is_configurable() -> None:
    [header] = await set_cookie_after_login("http://testserver.local", "memory", cookie_name="sid")
    assert header.startswith("sid=")


@pytest.mark.parametrize("store", sorted(STORES))
async def test_logout_expires_the_cookie_with_its_path_and_domain(store: str) -> None:
    app = build_app(SessionConfig(store=STORES[store](), cookie_path="/", cookie_domain="testserver.local"))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        response = await client.post("/logout")
        [header] = response.headers.get_list("set-cookie")
        name = "session_data" if store == "cookie" else "session"
        assert header == (
            f"{name}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; Domain=testserver.local; "
            "HttpOnly; SameSite=Lax"
        ), "the deletion carries the cookie's own flags"
        assert response.headers["vary"] == "Cookie"


@pytest.mark.parametrize("store", sorted(STORES))
async def test_one_set_cookie_per_response_even_when_everything_changes(store: str) -> None:
    app = build_app(SessionConfig(store=STORES[store](), expire_after_seconds=60, cookie_max_age=60))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        await client.post("/flash", json={"m": 1})
        response = await client.post("/rotate-state")
        assert len(response.headers.get_list("set-cookie")) == 1


# --- Secure: always for the cookies browsers only keep when Secure, also over plain http -------


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("name", ["__Host-sid", "__Secure-sid"])
@pytest.mark.parametrize("base_url", ["http://testserver.local", "https://testserver.local"])
async def test_prefixed_cookies_are_always_secure(store: str, name: str, base_url: str) -> None:
    backend, config = named(store, name)
    [header] = await set_cookie_after_login(base_url, store, backend=backend, **config)
    assert header.startswith(f"{name}=")
    assert attributes(header) == ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"]


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("base_url", ["http://testserver.local", "https://testserver.local"])
async def test_samesite_none_is_always_secure(store: str, base_url: str) -> None:
    [header] = await set_cookie_after_login(base_url, store, cookie_samesite="none")
    assert attributes(header) == ["Path=/", "HttpOnly", "SameSite=None", "Secure"]


@pytest.mark.parametrize("store", sorted(STORES))
async def test_the_expiry_of_an_always_secure_cookie_is_secure_too(store: str) -> None:
    # A browser ignores a Set-Cookie for a __Host- name without Secure, even one that deletes it.
    backend, config = named(store, "__Host-sid")
    [header] = await expiry_after_logout("http://testserver.local", backend, **config)
    assert (
        header
        == "__Host-sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; HttpOnly; SameSite=Lax; Secure"
    )


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("base_url", ["http://testserver.local", "https://testserver.local"])
async def test_a_partitioned_cookie_is_secure_and_its_expiry_partitioned_too(store: str, base_url: str) -> None:
    # CHIPS: a deletion reaches the partitioned cookie only if it is partitioned itself.
    config = {"cookie_samesite": "none", "cookie_partitioned": True}
    [header] = await set_cookie_after_login(base_url, store, **config)
    assert attributes(header) == ["Path=/", "HttpOnly", "SameSite=None", "Partitioned", "Secure"]
    [expiry] = await expiry_after_logout(base_url, STORES[store](), **config)
    assert expiry.endswith("; Max-Age=0; Path=/; HttpOnly; SameSite=None; Partitioned; Secure")


def test_a_partitioned_cookie_that_is_not_secure_is_refused() -> None:
    with pytest.raises(ValueError, match="cookie_partitioned=True needs a secure cookie"):
        SessionConfig(cookie_partitioned=True, cookie_secure=False)


@pytest.mark.parametrize("store", sorted(STORES))
async def test_the_expiry_of_a_samesite_none_cookie_says_samesite_none(store: str) -> None:
    # Chrome treats a cookie without SameSite as Lax and refuses to set it from a cross-site
    # response (an iframe, a cross-site fetch): there the deletion would not apply.
    backend = STORES[store]()
    [header] = await expiry_after_logout("https://embed.example", backend, cookie_samesite="none")
    assert header.endswith("; Max-Age=0; Path=/; HttpOnly; SameSite=None; Secure")


async def test_every_chunk_of_an_always_secure_cookie_is_secure() -> None:
    headers = await set_cookie_after_login(
        "http://testserver.local",
        "cookie",
        backend=CookieStore(SECRET, cookie_name="__Host-s"),
        data={"big": "x" * 7000},
    )
    assert [header.split("=", 1)[0] for header in headers] == ["__Host-s", "__Host-s.1", "__Host-s.2"]
    assert all(attributes(header) == ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] for header in headers)


@pytest.mark.parametrize("store", sorted(STORES))
async def test_secure_none_still_follows_the_scheme_for_other_cookies(store: str) -> None:
    [plain] = await set_cookie_after_login("http://testserver.local", store, cookie_samesite="strict")
    [secure] = await set_cookie_after_login("https://testserver.local", store, cookie_samesite="strict")
    assert "Secure" not in attributes(plain)
    assert "Secure" in attributes(secure)


# --- Max-Age per response ------------------------------------------------------------------

HTTP: Any = {"scheme": "http", "headers": []}


def jar_of(**config: Any) -> CookieJar:
    session_config = SessionConfig(**config)
    return CookieJar(session_config, session_config.session_cookie_name)


def test_a_per_response_max_age_replaces_the_configs() -> None:
    jar = jar_of(cookie_domain="example.com", cookie_max_age=3600)
    [(_, default)] = jar.render("v", HTTP)
    [(_, override)] = jar.render("v", HTTP, max_age=120)
    assert default == b"session=v; Path=/; Domain=example.com; Max-Age=3600; HttpOnly; SameSite=Lax"
    assert override == b"session=v; Path=/; Domain=example.com; Max-Age=120; HttpOnly; SameSite=Lax"
    [(_, again)] = jar.render("v", HTTP)
    assert again == default, "the override is for that response only"


def test_a_per_response_max_age_makes_a_browser_session_cookie_persistent() -> None:
    jar = jar_of(cookie_secure=True)
    [(_, header)] = jar.render("v", HTTP, max_age=1_209_600)
    assert header == b"session=v; Path=/; Max-Age=1209600; HttpOnly; SameSite=Lax; Secure"


def test_every_chunk_carries_the_per_response_max_age() -> None:
    store = CookieStore(SECRET)
    jar = jar_of(store=store)
    headers = jar.render("a" * 9000, HTTP, max_age=86_400)
    assert len(headers) == 3
    assert all(value.endswith(b"; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax") for _, value in headers)


@pytest.mark.parametrize("bad", [0, -1, True, 10**10, 1.5, "60"])
def test_a_per_response_max_age_must_be_a_positive_whole_number(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_age must be a positive whole number"):
        jar_of().render("v", HTTP, max_age=bad)


@get("/varies/{on:str}")
async def varies(session: Session, on: FromPath[str]) -> Response[str]:
    session["seen"] = True
    return Response("ok", headers={"Vary": on})


@pytest.mark.parametrize(
    ("handler_vary", "sent"),
    [
        ("Accept-Encoding", "Accept-Encoding, Cookie"),
        ("Accept-Encoding, Cookie", "Accept-Encoding, Cookie"),
        ("cookie", "cookie"),
        ("*", "*"),
    ],
)
async def test_cookie_joins_the_vary_of_the_handler_once(handler_vary: str, sent: str) -> None:
    app = Litestar([varies], plugins=[SessionPlugin()])
    async with app.lifespan(), in_loop_client(app) as client:
        for _ in range(2):  # the first response sets the cookie, the second does not
            response = await client.get(f"/varies/{handler_vary}")
            assert response.headers.get_list("vary") == [sent]


@pytest.mark.parametrize("store", sorted(STORES))
async def test_a_quoted_cookie_value_opens_its_session(store: str) -> None:
    # RFC 6265 lets a cookie's value come in double quotes; some clients and proxies add them.
    app = build_app(SessionConfig(store=STORES[store]()))
    async with app.lifespan(), in_loop_client(app) as client:
        [cookie] = (await client.post("/set", json={"user": "ann"})).headers.get_list("set-cookie")
        name, value = cookie.split(";", 1)[0].split("=", 1)
        client.cookies.clear()
        for header in (f'{name}="{value}"', f'theme=dark; {name}="{value}"; other=1'):
            response = await client.get("/read/user", headers={"cookie": header})
            assert response.json()["value"] == "ann", header
        assert (await client.get("/read/user", headers={"cookie": f'{name}="'})).json()["value"] is None


@pytest.mark.parametrize("store", ["memory", "cookie"])
async def test_a_stale_cookie_of_the_same_name_does_not_hide_the_current_one(store: str) -> None:
    # A cookie left by an older Path or Domain comes first (browsers send the longer path first):
    # the session is the first of the name's cookies that opens one, among the first three.
    app = build_app(SessionConfig(store=STORES[store]()))
    async with app.lifespan(), in_loop_client(app) as client:
        [cookie] = (await client.post("/set", json={"user": "ann"})).headers.get_list("set-cookie")
        name, current = cookie.split(";", 1)[0].split("=", 1)
        [other] = (await client.post("/set", json={"user": "bob"}, headers={"cookie": ""})).headers.get_list(
            "set-cookie"
        )
        bob = other.split(";", 1)[0].split("=", 1)[1]
        client.cookies.clear()
        stale = "S" * len(current)

        async def user_with(*values: str) -> Any:
            header = "; ".join(f"{name}={value}" for value in values)
            return (await client.get("/read/user", headers={"cookie": header})).json()["value"]

        assert await user_with(stale, current) == "ann"
        assert await user_with("not-an-id", stale, current) == "ann"
        assert await user_with(current, bob) == "ann", "the first that opens wins"
        assert await user_with(stale, stale, stale, current) is None, "at most three are tried"


def test_a_cookie_path_under_a_prefix_is_matched_against_the_path_the_browser_asked_for() -> None:
    # Behind a root path, in an app mounted under a prefix, or with a path set percent-encoded,
    # Litestar's path is not the browser's: the session must still be saved there.
    from litestar import Router, asgi
    from litestar.testing import TestClient

    from tests.app import HANDLERS

    def saved(client: TestClient[Any], prefix: str) -> bool:
        set_cookies = client.post(f"{prefix}/set", json={"user": "ann"}).headers.get_list("set-cookie")
        if not set_cookies:
            return False
        # Sent back by hand: behind a root path the client's URL lacks the prefix the browser's has.
        cookie = set_cookies[0].split(";", 1)[0]
        return client.get(f"{prefix}/read/user", headers={"cookie": cookie}).json()["value"] == "ann"

    mounted = build_app(SessionConfig(cookie_path="/sub"))

    @asgi("/sub", is_mount=True, copy_scope=True)
    async def mount(scope: Any, receive: Any, send: Any) -> None:
        await mounted(scope, receive, send)

    with TestClient(Litestar([mount])) as client:
        assert saved(client, "/sub"), "in an app mounted at the cookie's path"
    with TestClient(build_app(SessionConfig(cookie_path="/prefix")), root_path="/prefix") as client:
        assert saved(client, ""), "behind a root path"
    encoded = Litestar(
        [Router("/my app", route_handlers=HANDLERS)], plugins=[SessionPlugin(SessionConfig(cookie_path="/my%20app"))]
    )
    with TestClient(encoded) as client:
        assert saved(client, "/my%20app"), "a path set percent-encoded"
    with TestClient(build_app(SessionConfig(cookie_path="/prefix"))) as client:
        assert not saved(client, ""), "outside the cookie's path: never saved"
    under_a = Litestar(
        [Router("/a", route_handlers=HANDLERS)], plugins=[SessionPlugin(SessionConfig(cookie_path="/a"))]
    )
    with TestClient(under_a) as client:
        assert saved(client, "/a")
        # The same route through an encoded path: the browser would not send the cookie there,
        # and a cookie set there would replace the user's own (a logout).
        assert not saved(client, "/%61"), "matched as browsers match: encoded"


def test_a_cookie_set_at_a_secure_websocket_handshake_is_secure() -> None:
    jar = CookieJar(SessionConfig(), "session")
    for scheme, secure in [("wss", True), ("https", True), ("ws", False), ("http", False)]:
        [(_, header)] = jar.render("v" * 43, {"scheme": scheme})  # type: ignore[typeddict-item]
        assert header.endswith(b"; Secure") is secure, scheme
        [(_, expired)] = jar.render_expired({"scheme": scheme})  # type: ignore[typeddict-item]
        assert expired.endswith(b"; Secure") is secure, scheme
