"""Typed asyncio client for the HashiCorp Boundary controller API."""
