"""The label queue against a real Label Studio: queue → import → annotate → export, through its REST API.

Label Studio is heavy and no dependency of the project: install it in a virtual environment of its own, outside
the repository, then point this script at its ``label-studio`` command:

    python3 -m venv /work/ls-venv && /work/ls-venv/bin/pip install label-studio
    .venv/bin/python benchmarks/label_studio_roundtrip.py --label-studio /work/ls-venv/bin/label-studio \\
        --export tests/fixtures/label_studio_export.json

What it does, in a temporary folder it removes afterwards (≈ 2 min on 2 cores, most of it Label Studio's first
start):

1. an embedded store with 14 classified tweets in en, de and es (texts and probabilities written here: a retweet
   copy, one tweet already labeled), seeded through ``stancestream migrate``, ``adapters list`` (registers the
   shipped adapter as the active v1), ``sql --write`` and ``labels import``;
2. ``stancestream label-queue --lang en,de,es --n 3 --out queue.json --candidate none``;
3. Label Studio started on 127.0.0.1 (its own data folder, an API token given at start, legacy token auth);
   a project with the queue's ``queue.label_config.xml``; ``queue.json`` imported (its ``task_count`` must be
   every task);
4. the tasks annotated in queue order as ``PLAN`` says (a label, a relabel, a skip, or nothing), as an
   annotator's clicks would post them;
5. the project exported (``exportType=JSON&download_all_tasks=true``: without it the export leaves out tasks
   nobody touched) to ``--export``, and the server stopped.

``tests/fixtures/label_studio_export.json`` is one such export; the tests read it back through
``labels import``. The script prints the Label Studio version; docs/labeling.md records the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "5e1f0c0ffee5e1f0c0ffee5e1f0c0ffee5e1f0c0"  # a loopback-only throwaway instance's API token

#: (id, lang, text, p_pro, p_anti, p_neutral, p_unrelated): made-up tweets and probabilities.
TWEETS = [
    ("rt-en-1", "en", "Refugees are welcome in our city, we have room for everyone", 0.40, 0.30, 0.20, 0.10),
    ("rt-en-2", "en", "RT @citynews: Refugees are welcome in our city, we have room for everyone https://t.co/x1",
     0.40, 0.30, 0.20, 0.10),
    ("rt-en-3", "en", "The minister will talk about visa rules on Monday", 0.20, 0.15, 0.45, 0.20),
    ("rt-en-4", "en", "Deport them all and close the border now", 0.05, 0.80, 0.10, 0.05),
    ("rt-en-5", "en", "Great match tonight, what a goal", 0.02, 0.02, 0.06, 0.90),
    ("rt-en-6", "en", "Immigrants keep our hospitals running, thank them", 0.45, 0.15, 0.30, 0.10),
    ("rt-de-1", "de", "Flüchtlinge sind hier willkommen, wir helfen gern", 0.45, 0.25, 0.20, 0.10),
    ("rt-de-2", "de", "Die Grenzen müssen sofort geschlossen werden", 0.10, 0.55, 0.30, 0.05),
    ("rt-de-3", "de", "Der Bundestag berät heute über das neue Einwanderungsgesetz", 0.15, 0.15, 0.50, 0.20),
    ("rt-de-4", "de", "Was für ein schönes Wetter heute in Berlin", 0.05, 0.05, 0.10, 0.80),
    ("rt-es-1", "es", "Los inmigrantes también pagan impuestos y merecen derechos", 0.35, 0.30, 0.25, 0.10),
    ("rt-es-2", "es", "Hay que cerrar las fronteras ya", 0.10, 0.60, 0.25, 0.05),
    ("rt-es-3", "es", "El gobierno presenta hoy su plan de asilo", 0.20, 0.20, 0.40, 0.20),
    ("rt-es-4", "es", "Mañana vamos a la playa con los niños", 0.04, 0.04, 0.12, 0.80),
]
#: Already labeled before the queue is made: the queue must skip it.
LABELED = [("rt-en-6", "en", "pro-immigration", "Immigrants keep our hospitals running, thank them")]
#: What the annotator does with each task, in queue order: a label, several (each a later annotation: the last
#: one is the task's label), "skip" (cancelled), or None (left alone).
PLAN = [["anti-immigration"], ["neutral"], None, ["neutral", "pro-immigration"], ["anti-immigration"], ["skip"],
        ["pro-immigration"], ["neutral"], None]


def sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"stancestream {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def make_queue(work: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STANCESTREAM_", "KAFKA_", "CLICKHOUSE_"))}
    env |= {"STANCESTREAM_DATA_DIR": str(work / "var")}
    cli(env, "migrate")
    cli(env, "adapters", "list")  # registers the shipped adapter as the active v1
    rows = ", ".join(f"({sql_string(i)}, {sql_string(lang)}, {sql_string(text)}, {pp}, {pa}, {pn}, {pu})"
                     for i, lang, text, pp, pa, pn, pu in TWEETS)
    source = f"values('id String, lang String, text String, pp Float32, pa Float32, pn Float32, pu Float32', {rows})"
    cli(env, "sql", "--write", "INSERT INTO tweets (id, text, created_at, platform_lang, ingested_at) "
        f"SELECT id, text, now64(3) - 3600, lang, now64(3) FROM {source}")
    label = ("arrayElement(['pro-immigration', 'anti-immigration', 'neutral', 'unrelated'], "
             "indexOf([pp, pa, pn, pu], greatest(pp, pa, pn, pu)))")
    cli(env, "sql", "--write",
        "INSERT INTO classifications (tweet_id, adapter_version, model_id, lang, lang_confidence, topic, stance, "
        "label, p_pro, p_anti, p_neutral, p_unrelated, tweet_created_at, classified_at, latency_ms) "
        f"SELECT id, 'v1', 'roundtrip@0', lang, 0.99, if(l = 'unrelated', 'unrelated', 'immigration'), "
        f"if(l = 'unrelated', NULL, splitByChar('-', l)[1]), l, pp, pa, pn, pu, now64(3) - 3600, now64(3), 5 "
        f"FROM (SELECT *, {label} AS l FROM {source})")
    labeled = work / "labeled.csv"
    with open(labeled, "w", newline="") as handle:
        csv.writer(handle).writerows([("id", "lang", "label", "text"), *LABELED])
    cli(env, "labels", "import", str(labeled))
    print(cli(env, "label-queue", "--lang", "en,de,es", "--n", "3", "--out", str(work / "queue.json"),
              "--candidate", "none").strip())
    return work / "queue.json"


class LabelStudio:
    """A Label Studio server of its own on 127.0.0.1, stopped (its whole process group) on exit."""

    def __init__(self, command: str, data_dir: Path, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(data_dir.parent / "label-studio.log", "w")
        env = os.environ | {"LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true"}
        self.proc = subprocess.Popen(
            [command, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data_dir), "--username", "analyst@example.com", "--password", "roundtrip-only-1",
             "--user-token", TOKEN, "--enable-legacy-api-token"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def __enter__(self) -> "LabelStudio":
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"label-studio exited ({self.proc.returncode}): see {self.log.name}")
            try:
                urllib.request.urlopen(self.base + "/health", timeout=5).read()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(2)
        raise SystemExit("label-studio did not answer /health within 10 minutes")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()

    def call(self, method: str, path: str, body: object = None):
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Token {TOKEN}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def round_trip(ls: LabelStudio, queue: Path) -> list:
    config = queue.with_name(queue.stem + ".label_config.xml").read_text()
    tasks = json.loads(queue.read_text())
    project = ls.call("POST", "/api/projects", {"title": "stancestream label queue", "label_config": config})
    imported = ls.call("POST", f"/api/projects/{project['id']}/import", tasks)
    print(f"import: {json.dumps(imported)}")
    if imported.get("task_count") != len(tasks) or imported.get("prediction_count") != len(tasks):
        raise SystemExit(f"Label Studio took {imported.get('task_count')} of {len(tasks)} tasks")
    listed = ls.call("GET", f"/api/tasks?project={project['id']}&page_size=100")["tasks"]
    by_tweet = {t["data"]["tweet_id"]: t["id"] for t in listed}
    for task, plan in zip(tasks, PLAN):
        for step in plan or ():
            body = {"result": [], "was_cancelled": True} if step == "skip" else {"result": choice(step)}
            ls.call("POST", f"/api/tasks/{by_tweet[task['data']['tweet_id']]}/annotations", body)
            time.sleep(0.05)  # a relabel is strictly later
    return ls.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON&download_all_tasks=true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label-studio", required=True, help="the label-studio command of its own venv")
    parser.add_argument("--export", type=Path, help="where to save the export (default: only print a summary)")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ls-roundtrip-"))
    try:
        queue = make_queue(work)
        (work / "ls").mkdir()
        with LabelStudio(args.label_studio, work / "ls", args.port) as ls:
            version = ls.call("GET", "/api/version")["release"]
            exported = round_trip(ls, queue)
        annotated = sum(1 for t in exported if any(not a["was_cancelled"] for a in t["annotations"]))
        print(f"Label Studio {version}: exported {len(exported)} task(s), {annotated} annotated")
        if args.export:
            args.export.write_text(json.dumps(exported, ensure_ascii=False, indent=1) + "\n")
            print(f"saved {args.export}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
