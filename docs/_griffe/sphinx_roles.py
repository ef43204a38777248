"""A griffe extension for the API reference: turns the Sphinx roles of the docstrings into links.

The docstrings are Google style with Sphinx roles (``:class:`~pkg.mod.Name```, ``:meth:`get```).
mkdocstrings renders Markdown, where a role would show as its raw text, so each role becomes an
optional cross-reference: a link when its target is rendered in the reference, plain code when
it is not (``msgspec.convert``, a private helper), never a warning. RST literal-block markers
(``text::``) become a plain colon, and doctest paragraphs (``>>> ...``, which Markdown would
take for nested quotes) become ``pycon`` code blocks. Loaded by ``mkdocs.yml``; not part of the package.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):`(~?)([^`<>]+?)(?:\(\))?`")
_LITERAL_BLOCK = re.compile(r"(\S)::\n")
_DOCTEST = re.compile(r"^(?P<indent>[ \t]*)>>> .*(?:\n(?P=indent)\S.*)*", re.MULTILINE)


def _scopes(obj: griffe.Object) -> list[griffe.Object]:
    """Return the objects a short name is looked up in: the object itself, then its parents."""
    scopes: list[griffe.Object] = []
    current: griffe.Object | None = obj
    while current is not None:
        scopes.append(current)
        current = current.parent
    return scopes


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """Return the canonical path of ``target`` as seen from ``obj``, or ``None``."""
    root = obj.package
    candidates: list[Any] = []
    for scope in _scopes(obj):
        try:
            candidates.append(scope[target])
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        break
    if target.startswith(f"{root.name}."):
        with contextlib.suppress(KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            candidates.append(root[target.removeprefix(f"{root.name}.")])
    for found in candidates:
        try:
            return str(found.final_target.path if found.is_alias else found.path)
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
    return None


def _convert(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if short else target
        path = _resolve(obj, target)
        if path is None:
            return f"`{shown}`"
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'

    def fence(match: re.Match[str]) -> str:
        indent = match.group("indent")
        return f"{indent}```pycon\n{match.group(0)}\n{indent}```"

    return _DOCTEST.sub(fence, _LITERAL_BLOCK.sub(r"\1:\n", _ROLE.sub(replace, text)))


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Walk the package once it is loaded (every name is then resolvable)."""
        pending: list[griffe.Object] = [pkg]
        while pending:
            obj = pending.pop()
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj, obj.docstring.value)
            pending.extend(member for member in obj.members.values() if isinstance(member, griffe.Object))
