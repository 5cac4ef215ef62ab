# Paths and parameters shared by the rules; all logic lives in taas.workflow.


def steps_of(wildcards):
    """The resolved stage/backend list of a pipeline (a param: changing it reruns its jobs)."""
    return PLAN[wildcards.pipeline].steps_arg


def repo_dir(pipeline, instances):
    """The whole-pipeline model with ``instances`` instances (or ``"stages"``: per-stage models;
    ``"options"``: stage models, pipeline model and ensemble, for the service-option study).
    """
    variant = instances if instances in ("stages", "options") else f"i{instances}"
    return RESULTS / "model_repo" / EVENTS_NAME / pipeline / variant


def models_dir(pipeline):
    """The models step's output of a pipeline: stage_configs.json (+ checkpoints)."""
    return RESULTS / "models" / EVENTS_NAME / pipeline


def stage_configs_arg(wildcards, input):
    """``--stage-configs FILE`` from a rule's ``models`` input."""
    return f"--stage-configs {input.models}/stage_configs.json"


def repo_options(wildcards):
    """``taas.workflow.cli model-repo`` options of a repository variant (i<N> or stages)."""
    if wildcards.variant == "stages":
        return "--stage-models --instances 1"
    if wildcards.variant == "options":
        return "--service-options --instances 1"
    return f"--instances {wildcards.variant[1:]}"


def emulated(pipeline):
    """Whether a pipeline runs stages in FPGA C simulation (about 100 s per small event): its
    served-vs-direct and throughput measurements take the ``emulation`` budget."""
    return any(backend == "fpga" for _, backend in PLAN[pipeline].spec.steps)


def budget(key):
    """A measurement setting per pipeline: ``emulation``'s for emulated pipelines."""

    def value(wildcards):
        source = config["emulation"] if emulated(wildcards.pipeline) else config
        return source[key]

    return value


def all_cores():
    """Every core: timing jobs take them all so nothing runs beside a measurement. --dag and
    --rulegraph run without --cores, where asking Snakemake raises; 1 is right there."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


# With server_url the jobs use that server and need no repository of their own.
INSTANCES = ["server"] if SERVER_URL else config["instances"]
# How a job reaches Triton: server_url, or `replicas` servers of its own (nginx in front if > 1).
SERVER_ARGS = (
    f"--server-url {SERVER_URL}" if SERVER_URL else f"--replicas {config['replicas']}"
)
PLAN_JSON = json.dumps({name: plan.as_dict() for name, plan in PLAN.items()})


wildcard_constraints:
    pipeline="|".join(PLAN),
    instances=r"\d+|server",
    variant=r"i\d+|stages|options",
