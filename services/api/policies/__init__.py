"""privacyIDEA-style policies: what they decide for enrollment and which actions a role may take.

The routes call only what this package exports; how policies are stored and matched is inside.
"""

from __future__ import annotations

from services.api.policies.decisions import (
    Action,
    EnrollRules,
    check_token_limits,
    choose_ca_template,
    enroll_rules,
    require_action,
    token_limit,
)
from services.api.policies.rights import menus, rights_of

__all__ = [
    "Action",
    "EnrollRules",
    "check_token_limits",
    "choose_ca_template",
    "enroll_rules",
    "menus",
    "require_action",
    "rights_of",
    "token_limit",
]
