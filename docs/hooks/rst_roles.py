"""A griffe extension for the API reference: reST roles in docstrings become inline code.

taskgate's docstrings name other objects the Sphinx way (``:class:`~taskgate.errors.ConfigError```,
``:meth:`get_result```), which also reads well in ``help()``. mkdocstrings renders Markdown,
where such a role would show as raw text, so each one becomes inline code of the name as
Sphinx would print it: the last component with ``~``, the full path otherwise. (Cross-links
are not made: a role may name an object the reference does not show, which a strict build
would reject.)
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")


def _plain(match: re.Match[str]) -> str:
    target = match["target"]
    if target.endswith(">") and " <" in target:  # :meth:`title <path>`: the title is shown
        return f"`{target.split(' <', 1)[0]}`"
    if match["tilde"]:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class RstRoles(griffe.Extension):
    """Rewrites reST roles in every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the roles of one object's docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_plain, obj.docstring.value)
