"""SQL in one place: the engine, the one schema, its migrations, the registry and the application database."""
