#!/usr/bin/env python3
"""Lists the longest functions (lines, signature to closing brace) of non-test Rust code.

Usage: python3 scripts/fn_lengths.py [ROOT=shared/src] [N=10]
Skips test files (`tests.rs`, `tests/`) and inline `#[cfg(test)] mod tests { … }` blocks.
The architecture rule (docs/architecture.md): no function over 80 lines outside data tables.
"""
import os
import re
import sys

FN = re.compile(r"^(\s*)(pub(\([^)]*\))? )?(const )?(async )?(unsafe )?fn (\w+)")


def functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    in_test = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#[cfg(test)]") and i + 1 < len(lines) and lines[i + 1].startswith("mod "):
            in_test = lines[i + 1].rstrip().endswith("{")
            i += 2
            continue
        if in_test:
            if line == "}":
                in_test = False
            i += 1
            continue
        m = FN.match(line)
        if m and not line.rstrip().endswith(";"):
            indent = m.group(1)
            for j in range(i, len(lines)):
                if lines[j] == indent + "}" or (j == i and line.rstrip().endswith("}")):
                    yield (j - i + 1, m.group(7), path, i + 1)
                    break
        i += 1


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "shared/src"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    found = []
    for d, _, files in os.walk(root):
        if "/tests" in d.replace(root, "", 1) or d.endswith("/tests"):
            continue
        for f in files:
            if f.endswith(".rs") and f != "tests.rs":
                found.extend(functions(os.path.join(d, f)))
    found.sort(reverse=True)
    for length, name, path, line in found[:n]:
        print(f"{length:5}  {name}  {path}:{line}")


if __name__ == "__main__":
    main()
