"""User-facing errors: each says what is wrong and how to fix it.

The CLI prints `UserError`s as one clean message (no traceback) and exits with status 2; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (arguments, files, configs). `fix` tells them what to do instead."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")
