"""Enclave core: settings, domain types, protocols, errors and logging. Imports nothing heavy."""
