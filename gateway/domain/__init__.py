"""The domain: message types, identities and contacts, consent, conversation state, threads, timers and the rules around them.

Each concept has one owner module here; nothing in this package talks to a provider or serves HTTP.
"""
