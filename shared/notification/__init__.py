"""Event handlers with the UserNotification module: vocabulary, conditions, mail rendering.

Used by the api (validation at save time, dry runs, test mails) and the notifier (delivery).
"""
