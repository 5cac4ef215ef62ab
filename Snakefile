# taas workflow: events -> model repository -> reconstruct per pipeline -> evaluate ->
# served vs direct + throughput sweep (each job starts and stops its own tritonserver) -> report.
#   snakemake --cores 2                      (defaults from workflow/config/config.yaml)
#   snakemake --cores 2 --config preset=medium n_events=2 routing=clustering:gpu
#   snakemake -n                             (the plan)
#   snakemake --report results/snakemake-report.html
import json
import os
import sys
from pathlib import Path

from taas.service.security import client_environment
from taas.workflow.config import SCHEMA_PATH, load_schema, validate_config
from taas.workflow.routing import plan_pipelines


configfile: "workflow/config/config.yaml"


config = validate_config(config, load_schema(SCHEMA_PATH))
# Resolve every stage's backend now: a pipeline this machine or build cannot run stops here.
PLAN = plan_pipelines(config)
RESULTS = Path(config["results"])
SIMULATE = config["events_path"] == ""
EVENTS_NAME = config["preset"] if SIMULATE else Path(config["events_path"]).name
EVENTS = RESULTS / "events" / EVENTS_NAME
SERVER_URL = config["server_url"]
# TLS and token of that server: every taas client in every job reads them from the environment,
# which Snakemake hands on to its jobs (taas.service.security.client_environment). Not for the
# servers the jobs start themselves: those are plain, on loopback.
if SERVER_URL:
    os.environ.update(
        client_environment(
            ca=config["server_ca"],
            client_cert=config["server_client_cert"],
            client_key=config["server_client_key"],
            token_file=config["server_token_file"],
        )
    )
# The taas of the interpreter running Snakemake, whether or not its venv is on PATH.
TAAS = f"{sys.executable} -m taas.cli"
WF = f"{sys.executable} -m taas.workflow.cli"


include: "workflow/rules/common.smk"
include: "workflow/rules/events.smk"
include: "workflow/rules/reconstruction.smk"
include: "workflow/rules/serving.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        RESULTS / "info" / EVENTS_NAME / "info.json",
        RESULTS / "summary" / f"{EVENTS_NAME}.md",
        REPORT_FILES,
