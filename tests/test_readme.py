"""The README's two commands are what newcomers copy; CI must run the same test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", readme.split("## Quick start", 1)[1].split("\n## ", 1)[0], re.S)


def test_readme_has_exactly_two_quick_start_commands():
    found = commands()
    assert len(found) == 2, found
    assert "app.py" in found[0] and "requirements.txt" in found[0]
    assert "pytest" in found[1] and "requirements-dev.txt" in found[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands()[1].strip() in ci


def test_space_front_matter():
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("---")[1]
    for key in ("sdk: gradio", "app_file: app.py", "title:", "emoji:"):
        assert key in head
