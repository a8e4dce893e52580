"""What policies decide for a request: enrollment rules, token limits, the role's actions.

The hooks read the cached policies (see ``store``) and hand them to pure functions
(``rules_from``, ``choose_ca_template``, ``limit_problem``, ``refusal``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.api.context import ApiContext
from services.api.errors import Forbidden, ParameterError
from services.api.policies.catalog import (
    CA_CONNECTOR,
    MAX_ACTIVE_TOKEN,
    MAX_TOKEN,
    PKCS12_DELETE,
    REQUIRE_ATTESTATION,
    SUBJECT_COMPONENT,
    TEMPLATE,
    TRUSTED_CA_PATH,
    UPLOAD_REQUIRE_PROOF,
    Action,
    Scope,
)
from services.api.policies.matching import Subject, action_value, applies, matching
from services.api.policies.spec import PolicySpec
from services.api.policies.store import current_policies
from services.api.token_counts import LimitCheck, held_tokens
from shared.attestation import AttestationMode
from shared.security import Identity

__all__ = [
    "Action",
    "EnrollRules",
    "check_token_limits",
    "choose_ca_template",
    "enroll_rules",
    "limit_problem",
    "refusal",
    "require_action",
    "rules_from",
    "token_limit",
]

_VERBS = {
    Action.ENROLL: "enroll certificate tokens",
    Action.REVOKE: "revoke tokens",
    Action.DELETE: "delete tokens",
    Action.DISABLE: "disable tokens",
    Action.ENABLE: "enable tokens",
    Action.DOWNLOAD_PKCS12: "download PKCS#12 files",
}


@dataclass(frozen=True)
class EnrollRules:
    """What the ``enroll`` (and user/admin) policies decide for one enrollment."""

    ca: str | None = None
    template: str | None = None
    subject_components: tuple[str, ...] = ()
    require_attestation: AttestationMode = AttestationMode.IGNORE
    attestation_ca_path: Path | None = None
    max_token_per_user: int | None = None
    max_active_token_per_user: int | None = None
    pkcs12_remove_after_download: bool = False
    # Users only: an admin may import a certificate for a user who holds its key.
    upload_require_proof: bool = False


def rules_from(
    policies: Sequence[PolicySpec],
    caller: Identity,
    owner: tuple[str, str],
    defaults: tuple[AttestationMode, Path | None],
) -> EnrollRules:
    """The rules for *caller* enrolling for *owner* (login, realm); *defaults* are the server's.

    ``enroll`` policies match the owner. The trusted attestation CA path comes from ``user``
    policies when a user enrolls, from ``admin`` policies (matching the admin's realm too)
    when an admin does.
    """
    username, realm = owner
    enroll = matching(policies, Scope.ENROLL, Subject(username, realm))
    if caller.role == "admin":
        role = matching(policies, Scope.ADMIN, Subject(username, realm, caller.realm))
    else:
        role = matching(policies, Scope.USER, Subject(caller.username, caller.realm))
    mode, path = defaults
    chosen_mode = action_value(enroll, REQUIRE_ATTESTATION)
    chosen_path = action_value(role, TRUSTED_CA_PATH)
    components = action_value(enroll, SUBJECT_COMPONENT)
    max_total = action_value(enroll, MAX_TOKEN)
    max_active = action_value(enroll, MAX_ACTIVE_TOKEN)
    return EnrollRules(
        ca=_text(action_value(enroll, CA_CONNECTOR)),
        template=_text(action_value(enroll, TEMPLATE)),
        subject_components=tuple(str(components).split()) if components else (),
        require_attestation=AttestationMode(str(chosen_mode)) if chosen_mode else mode,
        attestation_ca_path=Path(str(chosen_path)) if chosen_path else path,
        max_token_per_user=max_total if isinstance(max_total, int) else None,
        max_active_token_per_user=max_active if isinstance(max_active, int) else None,
        pkcs12_remove_after_download=action_value(enroll, PKCS12_DELETE) is True,
        upload_require_proof=(
            caller.role == "user" and action_value(enroll, UPLOAD_REQUIRE_PROOF) is True
        ),
    )


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str) and value else None


async def enroll_rules(ctx: ApiContext, caller: Identity, username: str, realm: str) -> EnrollRules:
    """The rules for *caller* enrolling a token for *username* in *realm*."""
    defaults = (ctx.settings.require_attestation, ctx.settings.attestation_ca_path)
    policies = await current_policies(ctx.db)
    return rules_from(policies, caller, (username, realm), defaults)


def choose_ca_template(
    rules: EnrollRules, ca: str | None, template: str | None
) -> tuple[str | None, str | None]:
    """The CA connector and template to use: what a policy fixes, else the request's.

    A request naming a different CA connector or template than a policy fixes is refused
    (ParameterError), never silently redirected.
    """
    if rules.ca and ca and ca != rules.ca:
        raise ParameterError(
            f"ca: policy {CA_CONNECTOR} fixes the CA connector to {rules.ca!r}; "
            f"the request asked for {ca!r}"
        )
    if rules.template and template and template != rules.template:
        raise ParameterError(
            f"template: policy {TEMPLATE} fixes the template to {rules.template!r}; "
            f"the request asked for {template!r}"
        )
    return rules.ca or ca, rules.template or template


def limit_problem(
    rules: EnrollRules, owner: tuple[str, str], total: int, active: int
) -> str | None:
    """Why *owner*, holding *total* tokens of which *active* are active, may not get another."""
    who = f"{owner[0]}@{owner[1]}"
    limit = rules.max_token_per_user
    if limit is not None and total >= limit:
        return f"{MAX_TOKEN}: user {who} has {total} tokens, the policy allows {limit}"
    return active_limit_problem(rules.max_active_token_per_user, owner, active)


def active_limit_problem(limit: int | None, owner: tuple[str, str], active: int) -> str | None:
    """Why *owner*, holding *active* active tokens, may not have another active one."""
    if limit is not None and active >= limit:
        return (
            f"{MAX_ACTIVE_TOKEN}: user {owner[0]}@{owner[1]} has {active} active tokens, "
            f"the policy allows {limit}"
        )
    return None


def token_limit(rules: EnrollRules, owner: tuple[str, str]) -> LimitCheck | None:
    """The owner's token limits as a check of the tokens they hold; None when there are none."""
    if rules.max_token_per_user is None and rules.max_active_token_per_user is None:
        return None
    return functools.partial(limit_problem, rules, owner)


async def check_token_limits(
    ctx: ApiContext, rules: EnrollRules, username: str, realm: str
) -> None:
    """Forbidden when the owner has as many tokens as the policies allow.

    An early answer only: the enrollment store decides again under the write lock, in the
    transaction that stores the token, so concurrent enrollments cannot pass the limit.
    """
    owner = (username, realm)
    check = token_limit(rules, owner)
    if check is None:
        return
    async with ctx.db.read() as session:
        total, active = (await held_tokens(session, [owner]))[owner]
    problem = check(total, active)
    if problem:
        raise Forbidden(problem)


def refusal(
    policies: Sequence[PolicySpec], caller: Identity, action: Action, owner: tuple[str, str]
) -> str | None:
    """Why *caller* may not take *action* on a token of *owner* (login, realm); None if allowed.

    Admins may do everything while no active admin policy exists; then only what an admin
    policy matching their realm and the owner grants. Users may enroll and download PKCS#12
    files while no active user policy exists for their realm; revoking, deleting, disabling
    and enabling always need a user policy that grants it.
    """
    username, realm = owner
    if caller.role == "admin":
        if not any(p.active and p.scope == Scope.ADMIN for p in policies):
            return None
        subject = Subject(username, realm, caller.realm)
        if action_value(matching(policies, Scope.ADMIN, subject), action.value) is True:
            return None
        admin = f"{caller.username}@{caller.realm}" if caller.realm else caller.username
        return (
            f"{action.value}: no admin policy allows admin {admin} to {_VERBS[action]} "
            f"of user {username}@{realm}"
        )
    subject = Subject(caller.username, caller.realm)
    if action in (Action.ENROLL, Action.DOWNLOAD_PKCS12) and not any(
        applies(p, Scope.USER, subject, user=False) for p in policies
    ):
        return None
    if action_value(matching(policies, Scope.USER, subject), action.value) is True:
        return None
    return (
        f"{action.value}: no user policy allows user {caller.username}@{caller.realm} "
        f"to {_VERBS[action]}"
    )


async def require_action(
    ctx: ApiContext, caller: Identity, action: Action, username: str, realm: str
) -> None:
    """Forbidden unless *caller* may take *action* on a token of *username* in *realm*."""
    problem = refusal(await current_policies(ctx.db), caller, action, (username, realm))
    if problem:
        raise Forbidden(problem)
