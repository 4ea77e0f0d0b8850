"""Serving: the root CLI (and, later, the FastAPI app)."""
