"""Build sgcd-bench's FIXTURE task in AppWorld's data format (a stand-in, not an AppWorld task).

Runs INSIDE the AppWorld venv, by file path (it imports only the stdlib and ``appworld``)::

    APPWORLD_ROOT=/tmp/x .venv-appworld/bin/python sgcd_envs/appworld/fixture.py /tmp/x

It writes ``<root>/data`` with one task, ``sgcdfixture_1`` (scenario ``sgcdfixture``), listed in
``data/datasets/fixture.txt``. The task, its ground truth and its evaluation are ours; the
real AppWorld engine runs and scores it. Numbers from it are fixture numbers, never AppWorld
numbers.

Licence: the API docs and the database schemas written here are *derived from the decrypted
AppWorld app code* (``appworld install``). They are generated at test time into a temporary
folder and must never be committed or shipped. Layout and required fields: see
``/work/shared/research/appworld_fixture.md`` §3 (our own notes on AppWorld 0.1.3.post1).
"""

from __future__ import annotations

import json
import os
import sys

FIXTURE_SCENARIO = "sgcdfixture"
FIXTURE_TASK_ID = f"{FIXTURE_SCENARIO}_1"
FIXTURE_SPLIT = "fixture"
FIXTURE_DATETIME = "2023-05-18T12:00:00"
FIXTURE_NOTE_TITLES = ("groceries", "ideas")  # the two notes the supervisor starts with
FIXTURE_NEW_TITLE = "hello"
FIXTURE_PASSWORD = "fixture-pass-1"

SUPERVISOR = {
    "first_name": "Fixa",
    "last_name": "Turner",
    "email": "fixa.turner@fixture.example",
    "phone_number": "5550100001",
}

INSTRUCTION = (
    "[sgcd-bench FIXTURE task, not an AppWorld task] Count the notes I have in Simple Note, "
    f"then create a new note titled '{FIXTURE_NEW_TITLE}' (any content), and complete the task "
    "with the number of notes I had before creating it as the answer."
)

# The task's checks, in AppWorld's evaluation.py shape (our own code).
EVALUATION_PY = '''\
import json


def evaluate(test, public_data, private_data, main_user, models, ground_truth_answer):
    """sgcd-bench FIXTURE evaluation (not AppWorld's)."""
    with test("answer is the number of notes the supervisor had at the start"):
        task = models.end.supervisor.Task.first()
        answer = json.loads(task.answer) if task.answer else None
        test.answer(answer, ground_truth_answer)
    with test("exactly one new note was created"):
        start_ids = {note.id for note in models.start.simple_note.Note.all()}
        new_notes = [n for n in models.end.simple_note.Note.all() if n.id not in start_ids]
        test.case(len(new_notes), "==", 1)
    with test("the new note has the requested title"):
        start_ids = {note.id for note in models.start.simple_note.Note.all()}
        titles = [n.title for n in models.end.simple_note.Note.all() if n.id not in start_ids]
        test.case(titles, "==", [private_data.new_title])
'''

TEST_DATA = [
    {"requirement": "answer is the number of notes the supervisor had at the start",
     "label": "no_op_fail"},
    {"requirement": "exactly one new note was created", "label": "no_op_fail"},
    {"requirement": "the new note has the requested title", "label": "no_op_fail"},
]

# A correct solution, used by the tests (ours).
SOLUTION_CODE = f'''\
token = apis.simple_note.login(username="{SUPERVISOR["email"]}", password="{FIXTURE_PASSWORD}")["access_token"]
notes = apis.simple_note.search_notes(access_token=token, page_limit=20)
count = len(notes)
apis.simple_note.create_note(access_token=token, title="{FIXTURE_NEW_TITLE}", content="fixture")
apis.supervisor.complete_task(answer=count)
print(count)
'''


def _write_json(value: object, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1)


def write_api_docs(data_dir: str, app_names: list[str]) -> dict[str, list[dict]]:
    """Write ``api_docs/standard/<app>.json``; each doc carries the ``canary_string`` key the
    loader pops (empty: these docs are ours to build, not AppWorld's released files)."""
    from appworld.api_docs import prepare_api_docs

    docs: dict[str, list[dict]] = {}
    for app in app_names:
        docs[app] = prepare_api_docs(app)
        by_name = {doc["api_name"]: {**doc, "canary_string": ""} for doc in docs[app]}
        _write_json(by_name, os.path.join(data_dir, "api_docs", "standard", f"{app}.json"))
    return docs


def write_task_dbs(task_dir: str, docs: dict[str, list[dict]]) -> None:
    """Build the 12 app databases in memory, add the fixture rows, save them as SQLite files."""
    from appworld.apps import get_all_apps
    from appworld.collections.models import ModelCollection
    from appworld.common.datetime import DateTime

    now = DateTime.fromisoformat(FIXTURE_DATETIME)
    models = ModelCollection.load(
        to_db_home_path=":memory:sgcd_fixture_build",
        from_db_home_path=":memory:sgcd_fixture_build",
        load_apps=get_all_apps(),
        create_db=True,
    )
    person = dict(SUPERVISOR, birthday="1990-01-01", sex="female")
    models.admin.MainUser.create(**person).save()
    supervisor = models.supervisor.Supervisor.create(**person)
    supervisor.save()
    models.supervisor.Task.create(
        supervisor_id=supervisor.id, instruction=INSTRUCTION, status=None, answer=json.dumps(None)
    ).save()
    models.supervisor.AccountPassword.create(
        supervisor_id=supervisor.id, account_name="simple_note", password=FIXTURE_PASSWORD
    ).save()
    user = models.simple_note.User.create(
        first_name=SUPERVISOR["first_name"], last_name=SUPERVISOR["last_name"],
        email=SUPERVISOR["email"], password=FIXTURE_PASSWORD,
        created_at=now, last_logged_in=now, verified=True,
    )
    user.save()
    for title in FIXTURE_NOTE_TITLES:
        models.simple_note.Note.create(
            user_id=user.id, title=title, content=f"fixture note: {title}", tags=[],
            created_at=now, updated_at=now, pinned=False,
        ).save()
    for app, app_docs in docs.items():
        for doc in app_docs:
            models.api_docs.ApiDoc.create(
                app_name_=app, api_name=doc["api_name"], path=doc["path"], method=doc["method"],
                description=doc["description"], parameters=doc["parameters"],
                response_schemas=doc["response_schemas"],
            ).save()
    models.save(
        db_home_path=os.path.join(task_dir, "dbs"), format="full", app_names=get_all_apps(),
        delete_if_exists=True, save_model_hashes=True,
    )
    models.close()


def write_task_files(data_dir: str) -> str:
    """Write specs.json, ground_truth/* and datasets/fixture.txt; return the task folder."""
    from appworld.common.constants import DB_VERSION

    task_dir = os.path.join(data_dir, "tasks", FIXTURE_TASK_ID)
    _write_json(
        {"instruction": INSTRUCTION, "supervisor": SUPERVISOR, "datetime": FIXTURE_DATETIME,
         "db_version": DB_VERSION},
        os.path.join(task_dir, "specs.json"),
    )
    truth = os.path.join(task_dir, "ground_truth")
    _write_json({"difficulty": 1, "num_apps": 2, "num_apis": 4, "num_solution_code_lines": 6,
                 "mode": "minimal", "sgcd_fixture": True}, os.path.join(truth, "metadata.json"))
    _write_json({}, os.path.join(truth, "public_data.json"))
    _write_json({"new_title": FIXTURE_NEW_TITLE}, os.path.join(truth, "private_data.json"))
    _write_json(len(FIXTURE_NOTE_TITLES), os.path.join(truth, "answer.json"))
    _write_json(TEST_DATA, os.path.join(truth, "test_data.json"))
    with open(os.path.join(truth, "evaluation.py"), "w", encoding="utf-8") as handle:
        handle.write(EVALUATION_PY)
    os.makedirs(os.path.join(data_dir, "datasets"), exist_ok=True)
    with open(os.path.join(data_dir, "datasets", f"{FIXTURE_SPLIT}.txt"), "w") as handle:
        handle.write(FIXTURE_TASK_ID + "\n")
    return task_dir


def build(root: str) -> str:
    """Build the fixture under ``root/data`` (APPWORLD_ROOT must equal ``root``); return the task id."""
    from appworld.apps import get_all_apps

    data_dir = os.path.join(root, "data")
    task_dir = write_task_files(data_dir)
    docs = write_api_docs(data_dir, get_all_apps(skip_admin=True))
    write_task_dbs(task_dir, docs)
    return FIXTURE_TASK_ID


if __name__ == "__main__":
    # Run by path: drop our own folder from sys.path so sibling modules never shadow a package.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    if len(sys.argv) != 2:
        sys.exit("usage: fixture.py APPWORLD_ROOT  (builds the sgcd-bench fixture task there)")
    target = os.path.abspath(sys.argv[1])
    if os.path.abspath(os.environ.get("APPWORLD_ROOT", "")) != target:
        sys.exit(f"set APPWORLD_ROOT={target} for the build (AppWorld caches its paths)")
    print(json.dumps({"task_id": build(target), "split": FIXTURE_SPLIT, "fixture": True}))
