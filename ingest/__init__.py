"""Ingestion: parse (unstructured) -> chunk (LangChain splitters) -> embed -> upsert, incrementally."""
