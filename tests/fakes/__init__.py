"""Test doubles for external services (model provider, Slack)."""
