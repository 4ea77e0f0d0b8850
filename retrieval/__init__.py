"""Retrieval policy: hybrid search, filters and access control over the VectorStore."""
