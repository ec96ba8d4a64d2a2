"""The README's two commands are what newcomers copy; CI must run the same test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", readme.split("## Quick start", 1)[1].split("\n## ", 1)[0], re.S)


def test_readme_has_the_app_command_its_cpu_variant_and_the_test_command():
    """Two commands a newcomer copies, the app's CPU-only variant right under the app's, with what
    each install weighs and which one the Space uses."""
    found = commands()
    assert len(found) == 3, found
    app, cpu, tests = found
    assert "app.py" in app and "requirements.txt" in app and "index-url" not in app
    assert "app.py" in cpu and "--index-url https://download.pytorch.org/whl/cpu" in cpu
    assert "pytest" in tests and "requirements-dev.txt" in tests
    quick_start = (ROOT / "README.md").read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"installs \d+\.\d GB", quick_start) and "Space uses the first line" in quick_start


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands()[2].strip() in ci


def test_space_front_matter():
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("---")[1]
    for key in ("sdk: gradio", "app_file: app.py", "title:", "emoji:"):
        assert key in head


# --- The README is a front door: short, and every link in it and in docs/ leads somewhere. ---

PAGES = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def unfenced(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def prose(text):
    """The text a reader sees as prose: fenced code blocks and inline code removed."""
    return re.sub(r"`[^`\n]*`", "", unfenced(text))


def anchors(path):
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen, ids = {}, set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", unfenced(path.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        ids.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return ids


def relative_links(page):
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto:
            yield target


def test_readme_is_at_most_250_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_and_image_exists():
    broken = []
    for page in PAGES:
        for target in relative_links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_doc_is_reachable_from_the_readme():
    reached, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        for target in relative_links(page):
            file = (page.parent / target.partition("#")[0]).resolve()
            if file.suffix == ".md" and file.exists() and file not in reached:
                reached.add(file)
                todo.append(file)
    orphans = [p.name for p in (ROOT / "docs").glob("*.md") if p.resolve() not in reached]
    assert not orphans, f"docs/ pages no link leads to from README.md: {orphans}"


def test_link_check_catches_a_missing_file_and_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Round 2: what changed, and `x`\n\n## Round 2: what changed, and `x`\n"
                                   "[ok](#round-2-what-changed-and-x-1) [gone](b.md) ![img](c.png) "
                                   "`[code](d.md)` [web](https://example.org)\n", encoding="utf-8")
    assert anchors(tmp_path / "a.md") == {"round-2-what-changed-and-x", "round-2-what-changed-and-x-1"}
    assert list(relative_links(tmp_path / "a.md")) == ["#round-2-what-changed-and-x-1", "b.md", "c.png"]


# --- The README's map of the layers is true: no module imports a layer above its own. ---

LAYERS = {"evaluation": 1, "training": 2, "lab": 3}   # the foundation (kdapp/*.py) is 0


def layer(module):
    """kdapp.training.train -> 2; kdapp.models -> 0; None for tools, ui, cli (checked apart) and for a
    subpackage the map does not place yet."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    if parts[1] in ("tools", "ui", "cli", "__main__"):
        return None
    if parts[1] in LAYERS:
        return LAYERS[parts[1]]
    return None if (ROOT / "kdapp" / parts[1]).is_dir() else 0


def kdapp_imports(path):
    import ast
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("kdapp", "app"):
            yield from ([f"{node.module}.{a.name}" for a in node.names] if node.module == "kdapp" else [node.module])
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] in ("kdapp", "app"))


def test_no_module_imports_a_layer_above_its_own():
    wrong = []
    for path in sorted((ROOT / "kdapp").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for imported in kdapp_imports(path):
            builds_the_page = "import gradio" in path.read_text(encoding="utf-8")  # a tab's builder, like app.py
            if module.startswith("kdapp.ui.") and imported.startswith("kdapp.tools"):
                wrong.append(f"{module} -> {imported}")
            elif module.startswith("kdapp.ui.") and not builds_the_page and imported.startswith("kdapp") \
                    and layer(imported) != 0 and not imported.startswith("kdapp.ui"):
                # the page's pieces read names from the foundation (the loss registry's labels), no engine
                wrong.append(f"{module} -> {imported} (ui imports only the foundation)")
            elif layer(module) is not None and imported.startswith(("kdapp.tools", "kdapp.ui", "kdapp.cli", "app")):
                wrong.append(f"{module} -> {imported}")
            elif layer(module) is not None and layer(imported) is not None and layer(imported) > layer(module):
                wrong.append(f"{module} -> {imported}")
    assert not wrong, "imports that go up a layer:\n" + "\n".join(wrong)


def test_every_package_and_its_page_files_are_in_the_packaging():
    """pyproject.toml lists its packages one by one: a new subpackage left out would be missing from
    an installed copy (`python -m kdapp` imports every tool to build its parser)."""
    import tomllib
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "kdapp").rglob("__init__.py")}
    assert packages == set(setuptools["packages"])
    ui = ROOT / "kdapp" / "ui"
    served = {p for p in (ui / "static").rglob("*") if p.is_file()} | set((ui / "locales").glob("*.json"))
    listed = {p for pattern in setuptools["package-data"]["kdapp.ui"] for p in ui.glob(pattern) if p.is_file()}
    assert served == listed, sorted(str(p.relative_to(ui)) for p in served ^ listed)
