"""Fails if the modules of a Rust crate import each other in a cycle.

Usage: check_module_cycles.py SRC_DIR [LAYER_ONLY...]

Every file under SRC_DIR is one module (`rpc/engine.rs` is `rpc::engine`, `rpc/mod.rs` is
`rpc`). An edge goes from a module to each module its code names through `crate::`,
`super::`, `self::` or a child's name in a `use` (unit tests, `#[cfg(test)] mod tests` at
the end of a file, are left out: they may reach anywhere). A group of modules that reach
each other is a cycle, reported with its members. Each LAYER_ONLY names a top-level
module (e.g. `python`) that only its own submodules and the crate root may import.
"""

import re
import sys
from pathlib import Path

USE = re.compile(r"\buse\s+([^;]+);")
PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")


def module_of(src: Path, f: Path) -> tuple[str, ...]:
    parts = f.relative_to(src).with_suffix("").parts
    return parts[:-1] if parts[-1] in ("mod", "lib") else parts


def expand(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree]
    head, body = tree.split("{", 1)
    items, depth, cur = [], 0, ""
    for ch in body[:-1]:
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for item in [*items, cur] if item for p in expand(head + item)]


def edges(src: Path, mods: set[tuple[str, ...]], me: tuple[str, ...], text: str) -> set:
    text = re.sub(r"//[^\n]*", "", text.split("#[cfg(test)]\nmod tests", 1)[0])
    paths = [p for u in USE.findall(text) for p in expand(u)] + PATH.findall(text)
    out = set()
    for p in paths:
        parts, base = p.split("::"), me
        if parts[0] == "crate":
            base, parts = (), parts[1:]
        while parts and parts[0] in ("super", "self"):
            base = base[:-1] if parts.pop(0) == "super" else base
        if parts == p.split("::") and (*me, parts[0]) not in mods:
            continue  # an external crate or std
        target = (*base, *parts)
        while target not in mods:
            target = target[:-1]
        if target != me:
            out.add(target)
    return out


def main() -> int:
    src, layer_only = Path(sys.argv[1]), sys.argv[2:]
    files = {module_of(src, f): f for f in sorted(src.rglob("*.rs"))}
    graph = {m: edges(src, set(files), m, f.read_text()) for m, f in files.items()}
    name = lambda m: "::".join(m) or "crate"  # noqa: E731
    bad = [
        f"{name(m)} imports {name(t)}, which only {t[0]}:: may import"
        for m, ts in graph.items()
        for t in ts
        if t[:1] and t[0] in layer_only and m[:1] != t[:1] and m != ()
    ]
    # Files, then top-level modules (`rpc::engine` counts as `rpc`): neither may cycle.
    top: dict = {}
    for m, ts in graph.items():
        top.setdefault(m[:1], set()).update(t[:1] for t in ts if t[:1] != m[:1])
    for g in (graph, top):
        bad.extend(cycles(g, name))
    for b in bad:
        print(f"{src}: {b}", file=sys.stderr)
    return 1 if bad else 0


def cycles(graph: dict, name) -> list[str]:
    """Tarjan's strongly connected components: each with two or more modules is a cycle."""
    found = []
    index: dict = {}
    low: dict = {}
    stack: list = []
    sys.setrecursionlimit(10000)

    def visit(v: tuple[str, ...]) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                found.append("cycle: " + " <-> ".join(sorted(name(m) for m in [v, *comp])))

    for v in graph:
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    sys.exit(main())
