"""The recipes of docs/customizing.md, each followed in a bake of its own exactly as written.

Every test edits the baked service the way its recipe shows, then runs what proves the change
works: the baked tests the recipe names, or a short script in the bake.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import TEMPLATE_DIR, Bake
from tests.test_schema_change import RETRY_OF, TENANT, run

PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
DEFAULTS_TEST = [*PYTEST, "tests/taskflow/test_task_defaults.py"]

GUIDE = TEMPLATE_DIR / "docs/customizing.md"


def recipe_file(first_line: str) -> str:
    """The code block of docs/customizing.md that starts with `first_line`: the test runs the guide's own text."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    [block] = [block for block in blocks if block.startswith(first_line)]
    return block


def replace_once(path: Path, old: str, new: str) -> None:
    """Edit a baked file as the recipe shows; the text the recipe replaces must be there once."""
    source = path.read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{path.name} no longer has {old!r} once: update docs/customizing.md"
    path.write_text(source.replace(old, new), encoding="utf-8")


def test_changing_a_task_option_default_is_one_line_and_its_docs_row(bake_into: Bake, tmp_path: Path) -> None:
    project = bake_into(tmp_path / "bake")
    default = recipe_file("# app/taskflow/options.py, in TaskOptions").split("\n", 1)[1]
    replace_once(project / "app/taskflow/options.py", default.replace("= 2", "= 0"), default)

    # The options table is pinned to TaskOptions: the default alone is refused until the docs say so.
    refused = run(project, *DEFAULTS_TEST)
    assert refused.returncode == 1, refused.stdout[-3000:]
    assert "test_the_docs_list_every_option_with_the_default_it_has" in refused.stdout

    row = recipe_file("| `retries` | `2` |")
    replace_once(project / "app/taskflow/README.md", row.replace("`2`", "`0`"), row)
    accepted = run(project, *DEFAULTS_TEST)
    assert accepted.returncode == 0, accepted.stdout[-3000:]

    (project / "check_defaults.py").write_text(recipe_file("# check_defaults.py"), encoding="utf-8")
    checked = run(project, "check_defaults.py", str(tmp_path / "tasks.db"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "3"


def test_a_new_task_column_is_migrated_and_shown_on_the_task_page(bake_into: Bake, tmp_path: Path) -> None:
    # The model and migration steps are the ones tests/test_schema_change.py follows in depth.
    project = bake_into(tmp_path / "bake")
    model = recipe_file("    # The task this one retries")
    assert model.endswith(RETRY_OF + TENANT), "the guide's model change differs from tests/test_schema_change.py"
    replace_once(project / "app/taskflow/models.py", model.replace(TENANT, ""), model)
    written = run(project, "-m", "app.taskflow.migrations", "revision", "-m", "add tenant to tasks")
    assert written.returncode == 0, written.stderr
    assert len(list((project / "app/taskflow/migrations/versions").glob("*_add_tenant_to_tasks.py"))) == 1

    template = project / "app/taskflow/admin/templates/task.html"
    retry_of_row = next(line for line in template.read_text("utf-8").splitlines() if "<th>Retry of</th>" in line)
    tenant_row = recipe_file("    {% if task.tenant %}")
    replace_once(template, retry_of_row + "\n", retry_of_row + "\n" + tenant_row)
    (project / "tests/test_tenant_column.py").write_text(recipe_file("# tests/test_tenant_column.py"), "utf-8")

    result = run(
        project, *PYTEST, "tests/test_tenant_column.py", "tests/taskflow/test_migrations.py", "-k", "tenant or sqlite"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "passed" in result.stdout and "failed" not in result.stdout


def insert_after_first_line(path: Path, block: str) -> None:
    """A guide block whose first line is already in the file: the rest goes after that line."""
    first_line = block.split("\n", 1)[0] + "\n"
    replace_once(path, first_line, block)


def test_a_new_task_option_reaches_the_decorator_the_docs_and_the_registry(bake_into: Bake, tmp_path: Path) -> None:
    project = bake_into(tmp_path / "bake")
    taskflow = project / "app/taskflow"
    insert_after_first_line(taskflow / "options.py", recipe_file("    on_failure: Callable[..., Any] | None = None"))
    insert_after_first_line(taskflow / "manager.py", recipe_file("        on_failure: Hook | None = ...,"))
    insert_after_first_line(taskflow / "README.md", recipe_file("| `on_failure` | `None` |"))
    insert_after_first_line(taskflow / "admin/schemas.py", recipe_file("    on_failure: str | None = None"))
    registry = taskflow / "admin/templates/registry.html"
    replace_once(registry, "<th>On failure</th>", "<th>On failure</th><th>Tags</th>")
    replace_once(registry, 'colspan="15"', 'colspan="16"')
    insert_after_first_line(registry, recipe_file("      <td>{% if spec.on_failure %}"))
    send_email = recipe_file("@task_manager.task(retries=3").strip()
    replace_once(project / "app/tasks.py", send_email.replace(', tags=("email",)', ""), send_email)
    (project / "tests/test_task_tags.py").write_text(recipe_file("# tests/test_task_tags.py"), "utf-8")

    result = run(project, *PYTEST, "tests/test_task_tags.py", "tests/taskflow/test_task_defaults.py")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "failed" not in result.stdout
    changed = ["app/tasks.py", "app/taskflow/options.py", "app/taskflow/manager.py", "tests/test_task_tags.py"]
    for ruff in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        linted = run(project, "-m", "ruff", *ruff, *changed)
        assert linted.returncode == 0, linted.stdout


def test_a_new_admin_page_lists_what_its_filter_selects(bake_into: Bake, tmp_path: Path) -> None:
    project = bake_into(tmp_path / "bake")
    (project / "app/api/failed_calls.py").write_text(recipe_file("# app/api/failed_calls.py"), "utf-8")
    template = recipe_file("{# app/templates/failed_calls.html #}")
    (project / "app/templates/failed_calls.html").write_text(template, "utf-8")
    main = project / "app/main.py"
    replace_once(
        main, "from app.api import health, pages, tasks\n", "from app.api import failed_calls, health, pages, tasks\n"
    )
    replace_once(main, "        pages=[pages.page],\n", recipe_file("        pages=[pages.page, failed_calls.page],"))
    (project / "tests/test_failed_calls_page.py").write_text(recipe_file("# tests/test_failed_calls_page.py"), "utf-8")

    result = run(project, *PYTEST, "tests/test_failed_calls_page.py")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
    changed = ["app/main.py", "app/api/failed_calls.py", "tests/test_failed_calls_page.py"]
    for ruff in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        linted = run(project, "-m", "ruff", *ruff, *changed)
        assert linted.returncode == 0, linted.stdout


def test_the_admin_behind_the_services_own_login(bake_into: Bake, tmp_path: Path) -> None:
    project = bake_into(tmp_path / "bake")
    (project / "app/admin_auth.py").write_text(recipe_file("# app/admin_auth.py"), "utf-8")
    main = project / "app/main.py"
    replace_once(main, "from app.api import", "from app.admin_auth import current_admin_user\nfrom app.api import")
    replace_once(
        main, "        pages=[pages.page],\n", "        pages=[pages.page],\n" + recipe_file("        authenticate=")
    )
    (project / "tests/test_admin_auth.py").write_text(recipe_file("# tests/test_admin_auth.py"), "utf-8")

    # The service's existing tests log in with the admin's own credentials: the fallback keeps them working.
    result = run(project, *PYTEST, "tests/test_admin_auth.py", "tests/test_examples.py")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "failed" not in result.stdout
    changed = ["app/main.py", "app/admin_auth.py", "tests/test_admin_auth.py"]
    for ruff in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        linted = run(project, "-m", "ruff", *ruff, *changed)
        assert linted.returncode == 0, linted.stdout
