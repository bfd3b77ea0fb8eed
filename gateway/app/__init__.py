"""The application: command line, settings, the typed runtime, plugins, logging, metrics and the embedded servers.
"""
