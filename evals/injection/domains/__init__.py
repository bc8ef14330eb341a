"""The built-in domains: each a module with seed records, tools, user tasks and attacker goals."""
