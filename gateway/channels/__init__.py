"""Channel adapters: one package per channel (verify, parse, render, send, parse status)."""
