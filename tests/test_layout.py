"""The package's shape: no module imports another that imports it back (directly or through others), at
module level or inside a function; every folder of modules is a package."""

from __future__ import annotations

from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parent.parent / "streamvis"


def import_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Every direct import a -> b for which b also reaches a, with the chain that closes the loop."""
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append((module, *back))
    return cycles


def test_no_module_imports_in_a_cycle() -> None:
    assert import_cycles(grimp.build_graph("streamvis", cache_dir=None)) == []


def test_the_cycle_check_finds_a_cycle_made_in_a_function(tmp_path: Path, monkeypatch) -> None:
    """The check itself can fail: two modules that import each other, one lazily inside a function."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text("def f():\n    from cyclic import a\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ("cyclic.a", "cyclic.b", "cyclic.a") in import_cycles(grimp.build_graph("cyclic", cache_dir=None))


def test_every_folder_of_modules_is_a_package() -> None:
    folders = {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(f.relative_to(PACKAGE)) for f in folders if not (f / "__init__.py").is_file()) == []
