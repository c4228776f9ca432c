"""Access control of the serving application: hashed API keys mapped to roles."""
