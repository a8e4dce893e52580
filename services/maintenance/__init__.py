"""Operator tasks on a whole installation: backup, restore and secret-key rotation."""
