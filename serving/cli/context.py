"""What one ``enclave`` invocation shares between its commands' parts: the settings,
parsed once, and the container built from them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from backends.container import Container


class Invocation:
    """The settings of this invocation (read from the environment once, on first use) and
    a factory of containers on them."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = get_settings()
            except ValidationError as exc:
                problems = "; ".join(
                    f"ENCLAVE_{'__'.join(str(p).upper() for p in e['loc'])}: {e['msg']}"
                    for e in exc.errors()
                )
                raise ConfigError(f"invalid settings: {problems}") from exc
        return self._settings

    def container(self, settings: Settings | None = None) -> Container:
        """A container on these settings (the caller closes it)."""
        from backends.container import build_container

        return build_container(settings or self.settings())
