"""A second job module: tests register it by rewriting the config and sending SIGHUP."""

from __future__ import annotations


def reverse(text: str) -> str:
    return text[::-1]
