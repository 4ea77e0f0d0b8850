"""Concrete adapters behind the protocols in ``core.protocols``, and the container factory."""
