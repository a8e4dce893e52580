"""The web UI settings privacyIDEA's login answer carries, with certtoken's values (pure).

certtoken has no ``webui`` policies: each setting is privacyIDEA's default, except where
certtoken knows better (the only token type is ``certificate``; the log level is the
server's). The keys and value types are privacyIDEA 3.14's.
"""

from __future__ import annotations

import logging
from typing import Any

DEFAULT_TOKENTYPE = "certificate"
PAGE_SIZE = 15


def ui_settings(log_level: str) -> dict[str, Any]:
    """The UI settings of a login answer for a server logging at *log_level*."""
    level = logging.getLevelName(log_level.upper())
    return {
        "admin_dashboard": False,
        "audit_page_size": 10,
        "auth": True,
        "container_wizard": {"enabled": False},
        "default_container_type": "generic",
        "default_tokentype": DEFAULT_TOKENTYPE,
        "deletion_confirmation": False,
        "dialog_no_token": False,
        "hide_buttons": False,
        "hide_welcome": False,
        "log_level": level if isinstance(level, int) else logging.INFO,
        "logout_redirect_url": "",
        "logout_time": 120,
        "policy_template_url": "",
        "qr_image_android": None,
        "qr_image_custom": None,
        "qr_image_ios": None,
        "require_description": [],
        "rss_age": 180,
        "search_on_enter": False,
        "session_persistence": "tab",
        "show_node": "",
        "show_seed": False,
        "subscription_status": 0,
        "timeout_action": "lockscreen",
        "token_page_size": PAGE_SIZE,
        "token_rollover": {},
        "token_wizard": False,
        "token_wizard_2nd": False,
        "user_details": False,
        "user_page_size": PAGE_SIZE,
    }
