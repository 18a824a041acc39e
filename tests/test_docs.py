"""The documents cite tests by name (docs/RELIABILITY.md's rows, docs/TESTING.md's table, README,
bench/README.md): every test they cite must still exist, so a test merged, moved or renamed cannot
leave a row that points at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"\b(test_\w+\.py)(?:::(\w+))?")
DOCUMENTS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TESTING = ROOT / "docs" / "TESTING.md"


def _citing_text(document: Path) -> str:
    """The text whose citations must exist. In TESTING.md's tables the first column names the tests
    as they were before they were merged or moved (gone by design); the other columns, where their
    checks live now, count."""
    text = document.read_text(encoding="utf-8")
    if document != TESTING:
        return text
    lines = []
    for line in text.splitlines():
        cells = line.split("|")
        lines.append("|".join(cells[2:]) if line.startswith("|") and len(cells) > 3 else line)
    return "\n".join(lines)


def _defined(path: Path, name: str) -> bool:
    return re.search(rf"^\s*def {re.escape(name)}\(", path.read_text(encoding="utf-8"), re.M) is not None


def test_every_test_the_documents_cite_exists():
    missing = []
    for document in DOCUMENTS:
        for file, name in set(CITED.findall(_citing_text(document))):
            found = [p for p in (ROOT / "tests" / file, ROOT / "bench" / file) if p.is_file()]
            if not found or (name and not any(_defined(p, name) for p in found)):
                missing.append(f"{document.relative_to(ROOT)}: {file}{'::' + name if name else ''}")
    assert not missing, missing


def test_testing_md_names_both_tiers_and_every_test_file():
    """TESTING.md's map of the suite lists every test file, so a new file gets its tier written down."""
    text = TESTING.read_text(encoding="utf-8")
    assert "make test-all" in text and "make test" in text
    unlisted = [p.name for p in sorted((ROOT / "tests").glob("test_*.py")) if p.name not in text]
    assert not unlisted, f"docs/TESTING.md does not list {unlisted}"
