"""The live comparison: the same requests to the reference privacyIDEA and to certtoken
(embedded, on a temporary data directory), and how their answers differ.

    make compare-privacyidea          # starts the reference first (pi_setup.sh all)
    .venv/bin/python -m tests.contract.compare [--url http://127.0.0.1:5151] [case-name ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.contract.record import REFERENCE_URL, reference
from tests.contract.runner import (
    DEFAULT_VALUES,
    Answer,
    add_reference_users,
    case_files,
    certtoken,
    load,
    run_case,
)
from tests.contract.shape import extra, key_paths, missing_or_mistyped, value_at
from tests.support.stack import prepare, running_stack, settings_for


def compared(case: dict[str, Any], theirs: Answer, ours: Answer) -> list[str]:
    """privacyIDEA's answer against certtoken's: status, missing, mistyped and extra key paths."""
    lines = []
    if theirs.status != ours.status:
        lines.append(f"status: privacyIDEA {theirs.status}, certtoken {ours.status}")
    for path in case.get("values", DEFAULT_VALUES):
        mine, reference_value = value_at(ours.body, path), value_at(theirs.body, path)
        if mine != reference_value or type(mine) is not type(reference_value):
            lines.append(f"value of {path}: privacyIDEA {reference_value!r}, certtoken {mine!r}")
    named, ignore = case.get("named", []), case.get("ignore", [])
    expected = key_paths(theirs.body, named, ignore)
    actual = key_paths(ours.body, named, ignore)
    return lines + missing_or_mistyped(expected, actual) + extra(expected, actual)


async def compare(url: str, names: list[str]) -> int:
    """Print each case's differences; the number of cases with a difference besides extras."""
    broken = 0
    with tempfile.TemporaryDirectory(prefix="certtoken-compare-") as tmp:
        settings = settings_for(Path(tmp) / "data")
        await prepare(settings)
        async with running_stack(settings) as stack:
            await add_reference_users(stack)
            for path in case_files():
                if names and not any(name in path.stem for name in names):
                    continue
                case = load(path)
                theirs = await run_case(reference(url), case)
                ours = await run_case(certtoken(stack), case)
                lines = compared(case, theirs, ours)
                if any(not line.startswith("extra ") for line in lines):
                    broken += 1
                print(f"== {path.stem} ({case['route']}): {len(lines) or 'no'} differences")
                for line in lines:
                    print(f"   {line}")
    return broken


def main() -> None:
    """Command line entry: exits 1 when a case differs in more than extra keys."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=REFERENCE_URL)
    parser.add_argument("names", nargs="*", help="parts of case file names (default: all)")
    args = parser.parse_args()
    broken = asyncio.run(compare(args.url, args.names))
    print(f"{broken} case(s) differ beyond certtoken's extra keys")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
