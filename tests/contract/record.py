"""Record what privacyIDEA answers to each contract case: status, a few values, the key paths
with their JSON types (never any of its text), written into the case file as ``expect``.

    .venv/bin/python -m tests.contract.record [--url http://127.0.0.1:5151] [case-name ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from tests.contract.runner import Target, case_files, expectation, load, run_case

REFERENCE_URL = "http://127.0.0.1:5151"
# The reference's administrator (../shared/tools/privacyidea/pi_setup.sh).
REFERENCE_ADMIN = ("admin", "test")


def reference(url: str = REFERENCE_URL) -> Target:
    """The reference privacyIDEA."""
    return Target(url, *REFERENCE_ADMIN, system="privacyidea")


async def record(url: str, names: list[str]) -> None:
    """Run the named cases (all when none) against *url* and store what it answered."""
    target = reference(url)
    for path in case_files():
        if names and not any(name in path.stem for name in names):
            continue
        case = load(path)
        answer = await run_case(target, case)
        case["expect"] = expectation(case, answer)
        path.write_text(json.dumps(case, indent=2) + "\n")
        print(f"{path.stem}: {answer.status}, {len(case['expect']['keys'])} key paths")


def main() -> None:
    """Command line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=REFERENCE_URL)
    parser.add_argument("names", nargs="*", help="parts of case file names (default: all)")
    args = parser.parse_args()
    asyncio.run(record(args.url, args.names))


if __name__ == "__main__":
    main()
