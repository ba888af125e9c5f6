"""Helpers every stage's commands share: running a command, checked files, child processes, reporting."""
