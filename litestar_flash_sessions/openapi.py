"""How the session cookie is documented in the OpenAPI schema.

Two pieces: :func:`documented_config` adds the cookie's security scheme to a *copy* of the app's
``OpenAPIConfig``, and :func:`session_operation` makes the operations of handlers that take the
session document the cookie: an optional cookie parameter, ``Set-Cookie`` on 2xx/3xx responses,
and a ``security`` under which the cookie is optional on top of whatever the operation already
requires.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar.enums import ParamType
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIResponse,
    Operation,
    Parameter,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from litestar.openapi import OpenAPIConfig
    from litestar.openapi.spec import Reference, SecurityRequirement

__all__ = ("SECURITY_SCHEME", "documented_config", "optional_cookie_security", "session_operation")

SECURITY_SCHEME = "sessionCookie"
"""The name of the cookie's security scheme, unless another scheme already took that name."""

# Litestar's own SessionAuth registers its cookie as "sessionCookie" too; when that scheme
# documents a different cookie, ours is registered under the first free of these names instead.
_FALLBACK_SCHEME = "flashSessionCookie"


def documented_config(config: OpenAPIConfig, cookie_name: str) -> OpenAPIConfig:
    """Return a copy of ``config`` whose components also hold the session cookie's security scheme.

    A copy, never ``config`` changed in place: Litestar shares one default ``OpenAPIConfig``
    (``litestar.app.DEFAULT_OPENAPI_CONFIG``) between apps, and an app without the plugin must not
    document the cookie.

    The scheme is named :data:`SECURITY_SCHEME` (``sessionCookie``). When ``config`` already has a
    cookie scheme for ``cookie_name`` (say, Litestar's ``SessionAuth`` over the same cookie), that one
    is kept as it is and nothing is added; when ``sessionCookie`` is taken by a scheme for another
    cookie, ours is added as ``flashSessionCookie`` rather than overwriting it.
    """
    documented = copy.copy(config)  # not dataclasses.replace: it would read deprecated fields
    # copy.copy shares the lists: a later on_app_init hook appending to the copy's ``security``
    # (Litestar's SessionAuth does) would otherwise append to the shared default's as well.
    documented.security = None if config.security is None else list(config.security)
    components = _listed(config.components)
    documented.components = list(components)
    schemes = _merged_schemes(components)
    if _scheme_for(schemes, cookie_name) is None:
        name = _free_scheme_name(schemes)
        scheme = SecurityScheme(
            type="apiKey",
            name=cookie_name,
            security_scheme_in="cookie",
            description="The session cookie set by litestar-flash-sessions.",
        )
        documented.components.append(Components(security_schemes={name: scheme}))
    return documented


def optional_cookie_security(
    requirements: Sequence[SecurityRequirement] | None, scheme: str = SECURITY_SCHEME
) -> list[SecurityRequirement]:
    """Return ``requirements`` with the cookie ``scheme`` added as optional to each alternative.

    Each requirement object is kept, followed by the same object with ``scheme`` added, so what
    was required stays required and the cookie may come along; ``None`` or an empty list (nothing
    required) becomes ``[{}, {scheme: []}]``. An alternative already naming ``scheme`` (the cookie is
    required there) is kept as it is, and duplicates are dropped.
    """
    result: list[SecurityRequirement] = []
    for requirement in requirements or [{}]:
        # Never a bare {scheme: []} next to {"bearer": []}: alternatives are OR-ed, and that one
        # would document the cookie as a substitute for the bearer token.
        with_cookie = requirement if scheme in requirement else {**requirement, scheme: []}
        for alternative in (requirement, with_cookie):
            copied = {name: list(scopes) for name, scopes in alternative.items()}  # no aliasing the config's
            if copied not in result:
                result.append(copied)
    return result


def session_operation(
    base: type[Operation], cookie_name: str, *, openapi_config: OpenAPIConfig | None = None
) -> type[Operation]:
    """Return a subclass of ``base`` whose operations document the session cookie.

    Args:
        base: The handler's operation class.
        cookie_name: The session cookie's name.
        openapi_config: The app's ``OpenAPIConfig`` (the one :func:`documented_config` returned).
            An operation without its own ``security`` falls under the config's top-level one, and
            writing an operation-level ``security`` would drop it: with the config, such an
            operation starts from the top-level requirements, and the cookie's scheme is looked
            up by cookie name among the config's components. Read when the schema is built, so
            later changes to the config count. Without it, only the operation's own ``security``
            is merged and the scheme is :data:`SECURITY_SCHEME`.
    """
    cookie = Parameter(
        name=cookie_name,
        param_in=ParamType.COOKIE,
        required=False,
        schema=Schema(type=OpenAPIType.STRING),
        description="The session cookie. Invalid, unknown or expired values start a fresh session.",
    )
    set_cookie = OpenAPIHeader(
        schema=Schema(type=OpenAPIType.STRING),
        description=f"Sets, refreshes or expires the {cookie_name!r} session cookie when the session changed.",
    )

    @dataclass
    class SessionOperation(base):  # type: ignore[valid-type,misc]
        def __post_init__(self) -> None:
            parent: Any = super()
            if hasattr(parent, "__post_init__"):
                parent.__post_init__()
            operation: Operation = self
            if not any(_is_cookie(parameter, cookie_name) for parameter in operation.parameters or []):
                operation.parameters = [*(operation.parameters or []), cookie]
            requirements = operation.security
            scheme = SECURITY_SCHEME
            if openapi_config is not None:
                # None means "inherit the top-level security"; an explicit [] means "none", as in OpenAPI.
                if requirements is None:
                    requirements = openapi_config.security
                scheme = _scheme_for(_merged_schemes(_listed(openapi_config.components)), cookie_name) or scheme
            operation.security = optional_cookie_security(requirements, scheme)
            for status, response in (operation.responses or {}).items():
                if status[:1] in ("2", "3") and isinstance(response, OpenAPIResponse):
                    response.headers = {"Set-Cookie": set_cookie, **(response.headers or {})}

    SessionOperation.__name__ = SessionOperation.__qualname__ = f"Session{base.__name__}"
    return SessionOperation


def _listed(components: Components | list[Components]) -> list[Components]:
    """Return the config's components as a list: a list until the first schema build merges it into one."""
    return components if isinstance(components, list) else [components]


def _merged_schemes(components: Iterable[Components]) -> dict[str, SecurityScheme | Reference]:
    """Return the security schemes the schema will hold: later components win, as in Litestar's merge."""
    schemes: dict[str, SecurityScheme | Reference] = {}
    for component in components:
        schemes.update(component.security_schemes or {})
    return schemes


def _documents(scheme: SecurityScheme | Reference, cookie_name: str) -> bool:
    """Tell whether ``scheme`` is an API key sent in the cookie ``cookie_name``."""
    return (
        isinstance(scheme, SecurityScheme)
        and scheme.type == "apiKey"
        and scheme.security_scheme_in == "cookie"
        and scheme.name == cookie_name
    )


def _scheme_for(schemes: dict[str, SecurityScheme | Reference], cookie_name: str) -> str | None:
    """Return the scheme documenting ``cookie_name``, :data:`SECURITY_SCHEME` first; ``None`` if none does."""
    if SECURITY_SCHEME in schemes and _documents(schemes[SECURITY_SCHEME], cookie_name):
        return SECURITY_SCHEME
    return next((name for name, scheme in schemes.items() if _documents(scheme, cookie_name)), None)


def _free_scheme_name(schemes: dict[str, SecurityScheme | Reference]) -> str:
    """Return :data:`SECURITY_SCHEME` if no scheme has it, else the first free ``flashSessionCookie[N]``."""
    if SECURITY_SCHEME not in schemes:
        return SECURITY_SCHEME
    name, number = _FALLBACK_SCHEME, 1
    while name in schemes:
        number += 1
        name = f"{_FALLBACK_SCHEME}{number}"
    return name


def _is_cookie(parameter: Parameter | Reference, cookie_name: str) -> bool:
    """Tell whether ``parameter`` already documents the cookie (a handler may read it itself)."""
    return isinstance(parameter, Parameter) and parameter.param_in == ParamType.COOKIE and parameter.name == cookie_name
