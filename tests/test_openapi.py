"""The OpenAPI schema tells the truth about the session cookie.

Handlers that take the session may use the cookie: it is documented as optional, on top of
whatever the operation (or the app, globally) already requires, never instead of it; handlers
that do not take the session are documented exactly as without the plugin; and Litestar's
shared default ``OpenAPIConfig`` is never changed.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

import pytest
from litestar import Litestar, get
from litestar.app import DEFAULT_OPENAPI_CONFIG
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, OpenAPIResponse, Operation, SecurityScheme
from litestar.params import CookieParameter
from litestar.response import Redirect
from litestar.security.session_auth import SessionAuth

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.openapi import documented_config, optional_cookie_security, session_operation
from litestar_flash_sessions.stores import CookieStore, MemoryStore, SessionBackend
from tests.app import build_app
from tests.harness import SECRET

OPTIONAL = [{}, {"sessionCookie": []}]
BEARER = {"bearer": SecurityScheme(type="http", scheme="bearer")}


def openapi(app: Litestar) -> dict[str, Any]:
    return app.openapi_schema.to_schema()


@get("/mine")
async def mine(session: Session) -> None:
    session.get("user")


@get("/mine-with-bearer", security=[{"bearer": []}])
async def mine_with_bearer(session: Session) -> None:
    session.get("user")


@get("/plain")
async def plain() -> None:
    return None


@get("/plain-with-bearer", security=[{"bearer": []}])
async def plain_with_bearer() -> None:
    return None


FromSessionCookie = Annotated[str | None, CookieParameter(name="session")]


def bearer_config(**kwargs: Any) -> OpenAPIConfig:
    return OpenAPIConfig(title="t", version="1", components=Components(security_schemes=BEARER), **kwargs)


def test_the_shared_default_config_is_never_changed_by_an_app_with_the_plugin() -> None:
    components = DEFAULT_OPENAPI_CONFIG.components
    before = copy.deepcopy(components)
    security = DEFAULT_OPENAPI_CONFIG.security

    with_plugin = build_app(SessionConfig())
    assert with_plugin.openapi_config is not DEFAULT_OPENAPI_CONFIG
    assert "sessionCookie" in openapi(with_plugin)["components"]["securitySchemes"]

    without = Litestar([plain])
    assert without.openapi_config is DEFAULT_OPENAPI_CONFIG
    assert "sessionCookie" not in openapi(without).get("components", {}).get("securitySchemes", {})
    assert DEFAULT_OPENAPI_CONFIG.components is components
    assert components == before
    assert DEFAULT_OPENAPI_CONFIG.security is security is None


def test_a_config_of_ones_own_is_copied_too_down_to_its_security_list() -> None:
    config = bearer_config(security=[{"bearer": []}])
    components, security = config.components, config.security
    assert security is not None

    app = Litestar([mine], openapi_config=config, plugins=[SessionPlugin()])
    openapi(app)
    assert config.components is components
    assert components == Components(security_schemes=BEARER)
    assert config.security is security
    assert security == [{"bearer": []}]

    # What Litestar's SessionAuth does to the config it is handed: append to its security list.
    documented = documented_config(config, "session")
    assert documented.security is not None
    documented.security.append({"sessionCookie": []})
    assert security == [{"bearer": []}]
    assert "sessionCookie" not in openapi(Litestar([plain], openapi_config=config))["components"]["securitySchemes"]


@pytest.mark.parametrize(("store", "name"), [(MemoryStore(), "session"), (CookieStore(SECRET), "session_data")])
def test_openapi_documents_the_cookie_only_where_it_is_used(store: SessionBackend, name: str) -> None:
    schema = openapi(build_app(SessionConfig(store=store)))
    scheme = schema["components"]["securitySchemes"]["sessionCookie"]
    assert scheme["type"] == "apiKey"
    assert scheme["in"] == "cookie"
    assert scheme["name"] == name

    read = schema["paths"]["/read/{key}"]["get"]
    cookie_params = [p for p in read["parameters"] if p["in"] == "cookie"]
    assert cookie_params == [
        {
            "name": name,
            "in": "cookie",
            "schema": {"type": "string"},
            "description": "The session cookie. Invalid, unknown or expired values start a fresh session.",
            "required": False,
            "deprecated": False,
        }
    ]
    assert read["security"] == OPTIONAL
    assert "Set-Cookie" in read["responses"]["200"]["headers"]
    through = schema["paths"]["/through-dependency"]["get"]
    assert through["security"] == OPTIONAL, "a session taken through a dependency counts"

    plain = schema["paths"]["/plain"]["get"]
    assert "security" not in plain
    assert not [p for p in plain.get("parameters", []) if p["in"] == "cookie"]
    assert "Set-Cookie" not in plain["responses"]["200"].get("headers", {})


def test_set_cookie_is_documented_on_3xx_responses_too() -> None:
    @get("/away", status_code=302)
    async def away(session: Session) -> Redirect:
        session.flash("message", "moved")
        return Redirect("/mine")

    responses = openapi(Litestar([away], plugins=[SessionPlugin()]))["paths"]["/away"]["get"]["responses"]
    assert "Set-Cookie" in responses["302"]["headers"]
    assert "location" in responses["302"]["headers"], "the response's own headers are kept"


def test_a_route_that_may_use_the_session_documents_the_cookie_as_optional() -> None:
    schema = openapi(Litestar([mine], plugins=[SessionPlugin()]))
    operation = schema["paths"]["/mine"]["get"]
    assert operation["security"] == [{}, {"sessionCookie": []}], "{} is the anonymous alternative: no cookie needed"
    assert [p["required"] for p in operation["parameters"] if p["in"] == "cookie"] == [False]


def test_an_operation_requirement_stays_required_with_the_cookie_added_to_it() -> None:
    schema = openapi(Litestar([mine_with_bearer], openapi_config=bearer_config(), plugins=[SessionPlugin()]))
    security = schema["paths"]["/mine-with-bearer"]["get"]["security"]
    assert security == [{"bearer": []}, {"bearer": [], "sessionCookie": []}]
    assert {"sessionCookie": []} not in security, "the cookie must not stand in for the bearer token"
    assert {} not in security


def test_each_alternative_of_an_app_layer_requirement_gets_the_cookie() -> None:
    schemes = {**BEARER, "key": SecurityScheme(type="apiKey", name="X-Key", security_scheme_in="header")}
    config = OpenAPIConfig(title="t", version="1", components=Components(security_schemes=schemes))
    app = Litestar(
        [mine, plain],
        openapi_config=config,
        security=[{"bearer": []}, {"key": []}],  # the app layer: Litestar copies it onto every operation
        plugins=[SessionPlugin()],
    )
    schema = openapi(app)
    assert schema["paths"]["/mine"]["get"]["security"] == [
        {"bearer": []},
        {"bearer": [], "sessionCookie": []},
        {"key": []},
        {"key": [], "sessionCookie": []},
    ]
    assert schema["paths"]["/plain"]["get"]["security"] == [{"bearer": []}, {"key": []}]


def test_a_global_requirement_is_kept_on_routes_that_take_the_session() -> None:
    app = Litestar([mine, plain], openapi_config=bearer_config(security=[{"bearer": []}]), plugins=[SessionPlugin()])
    schema = openapi(app)
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/mine"]["get"]["security"] == [{"bearer": []}, {"bearer": [], "sessionCookie": []}]
    assert "security" not in schema["paths"]["/plain"]["get"], "still inherits the global requirement"


def test_one_plugin_in_two_apps_documents_each_app_its_own_global_requirement() -> None:
    plugin = SessionPlugin()
    first = openapi(Litestar([mine], openapi_config=bearer_config(security=[{"bearer": []}]), plugins=[plugin]))
    second = openapi(Litestar([mine], plugins=[plugin]))
    assert first["paths"]["/mine"]["get"]["security"] == [{"bearer": []}, {"bearer": [], "sessionCookie": []}]
    assert second["paths"]["/mine"]["get"]["security"] == OPTIONAL


def test_a_global_requirement_is_the_starting_point_for_an_operation_without_its_own() -> None:
    # What the plugin does once wired: the operation class reads the config's top-level security.
    config = documented_config(bearer_config(security=[{"bearer": []}]), "session")
    operation_class = session_operation(Operation, "session", openapi_config=config)
    responses: dict[str, Any] = {"200": OpenAPIResponse(description="ok")}
    assert operation_class(responses=responses).security == [{"bearer": []}, {"bearer": [], "sessionCookie": []}]
    own = operation_class(responses=responses, security=[{"key": []}])
    assert own.security == [{"key": []}, {"key": [], "sessionCookie": []}], "an operation's own security overrides"
    assert operation_class(responses=responses, security=[]).security == OPTIONAL, "[] explicitly drops the global"
    config.security = None  # read when the schema is built, not when the class is made
    assert operation_class(responses=responses).security == OPTIONAL


def test_merging_keeps_every_alternative_and_adds_no_duplicates() -> None:
    assert optional_cookie_security(None) == OPTIONAL
    assert optional_cookie_security([]) == OPTIONAL
    assert optional_cookie_security([{}]) == OPTIONAL
    assert optional_cookie_security(OPTIONAL) == OPTIONAL
    assert optional_cookie_security([{"sessionCookie": []}]) == [{"sessionCookie": []}], "required stays required"
    assert optional_cookie_security([{"oauth": ["read"]}, {}]) == [
        {"oauth": ["read"]},
        {"oauth": ["read"], "sessionCookie": []},
        {},
        {"sessionCookie": []},
    ]
    assert optional_cookie_security([{"bearer": []}], "other") == [{"bearer": []}, {"bearer": [], "other": []}]


def test_merging_copies_rather_than_aliases_the_requirements() -> None:
    requirement = {"oauth": ["read"]}
    merged = optional_cookie_security([requirement])
    merged[0]["oauth"].append("write")
    assert requirement == {"oauth": ["read"]}


@pytest.mark.parametrize("config", [None, bearer_config(security=[{"bearer": []}])], ids=["default", "global"])
def test_routes_without_the_session_are_untouched(config: OpenAPIConfig | None) -> None:
    handlers = [plain, plain_with_bearer]
    kwargs: dict[str, Any] = {} if config is None else {"openapi_config": config}
    without = openapi(Litestar(handlers, **kwargs))
    with_plugin = openapi(Litestar([*handlers, mine], plugins=[SessionPlugin()], **kwargs))
    for path in ("/plain", "/plain-with-bearer"):
        assert with_plugin["paths"][path] == without["paths"][path]
    assert with_plugin.get("security") == without.get("security")


def test_a_cookie_parameter_the_handler_declares_itself_is_not_doubled() -> None:
    @get("/reads-cookie")
    async def reads_cookie(session: Session, raw: FromSessionCookie = None) -> None:
        session.get("user")

    operation = openapi(Litestar([reads_cookie], plugins=[SessionPlugin()]))["paths"]["/reads-cookie"]["get"]
    assert [p["name"] for p in operation["parameters"] if p["in"] == "cookie"] == ["session"]


async def retrieve_user(session: dict[str, Any], connection: Any) -> Any:
    return session.get("user")


def litestar_session_auth(key: str) -> SessionAuth[Any, Any]:
    """Litestar's SessionAuth over Litestar's own server-side sessions, in the cookie ``key``."""
    return SessionAuth(session_backend_config=ServerSideSessionConfig(key=key), retrieve_user_handler=retrieve_user)


def wired_app(*handlers: Any) -> Litestar:
    """An app whose Litestar SessionAuth is backed by the plugin's session (one cookie, ``session``)."""
    plugin = SessionPlugin()
    auth = SessionAuth(retrieve_user_handler=retrieve_user, session_backend_config=plugin.session_backend_config)
    return Litestar(list(handlers), plugins=[plugin], on_app_init=[auth.on_app_init])


def test_session_auth_over_the_plugin_session_keeps_its_scheme_as_litestar_documents_it() -> None:
    schema = openapi(wired_app(mine, plain))
    assert schema["components"]["securitySchemes"] == {
        "sessionCookie": {
            "type": "apiKey",
            "name": "session",
            "in": "cookie",
            "description": "Session cookie authentication.",
        }
    }, "Litestar's scheme, as SessionAuth wrote it: it already documents the plugin's cookie"
    assert schema["security"] == [{"sessionCookie": []}]
    assert "security" not in schema["paths"]["/plain"]["get"], "a route without the session still inherits it"
    cookie_params = [p["name"] for p in schema["paths"]["/mine"]["get"]["parameters"] if p["in"] == "cookie"]
    assert cookie_params == ["session"]


def test_session_auth_security_on_a_session_route_is_not_mangled() -> None:
    schema = openapi(wired_app(mine))
    # SessionAuth requires the cookie (top-level); the route must not make it optional with {}.
    assert schema["paths"]["/mine"]["get"]["security"] == [{"sessionCookie": []}]


def test_session_auth_over_another_cookie_keeps_its_scheme_and_ours_gets_another_name() -> None:
    auth = litestar_session_auth("auth")
    app = Litestar([mine], on_app_init=[auth.on_app_init], plugins=[SessionPlugin()])
    schema = openapi(app)
    schemes = schema["components"]["securitySchemes"]
    assert schemes["sessionCookie"]["name"] == "auth"
    assert schemes["sessionCookie"]["description"] == "Session cookie authentication."
    assert schemes["flashSessionCookie"]["name"] == "session"
    cookie_params = [p["name"] for p in schema["paths"]["/mine"]["get"]["parameters"] if p["in"] == "cookie"]
    assert cookie_params == ["session"]


def test_session_auth_over_another_cookie_stays_required_next_to_ours() -> None:
    auth = litestar_session_auth("auth")
    app = Litestar([mine], on_app_init=[auth.on_app_init], plugins=[SessionPlugin()])
    security = openapi(app)["paths"]["/mine"]["get"]["security"]
    assert security == [{"sessionCookie": []}, {"sessionCookie": [], "flashSessionCookie": []}]
