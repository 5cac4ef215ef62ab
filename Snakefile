# taas workflow: events -> reconstruction per pipeline -> evaluation -> summary.
#   snakemake --cores 2                      (defaults from workflow/config/config.yaml)
#   snakemake --cores 2 --config preset=medium n_events=5
import sys
from pathlib import Path

from taas.workflow.config import SCHEMA_PATH, load_schema, validate_config


configfile: "workflow/config/config.yaml"


config = validate_config(config, load_schema(SCHEMA_PATH))
RESULTS = Path(config["results"])
SIMULATE = config["events_path"] == ""
EVENTS_NAME = config["preset"] if SIMULATE else Path(config["events_path"]).name
EVENTS = RESULTS / "events" / EVENTS_NAME
# The taas of the interpreter running Snakemake, whether or not its venv is on PATH.
TAAS = f"{sys.executable} -m taas.cli"


include: "workflow/rules/events.smk"
include: "workflow/rules/reconstruction.smk"


rule all:
    input:
        RESULTS / "info" / EVENTS_NAME / "info.json",
        expand(
            RESULTS / "metrics" / EVENTS_NAME / "{pipeline}" / "metrics.json",
            pipeline=config["pipelines"],
        ),
        RESULTS / "summary" / f"{EVENTS_NAME}.md",
