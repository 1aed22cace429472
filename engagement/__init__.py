"""Shared pieces of the engagement pipeline: settings, the event contract, the command line."""
