"""Fakes for tests: an OpenAI-compatible upstream that misbehaves on request."""
