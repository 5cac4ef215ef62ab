# Reconstruction per pipeline (direct, or through a served per-stage chain), evaluation against
# truth, and the side-by-side summary (results/summary/<events>.md).


rule models:
    output:
        directory(models_dir("{pipeline}")),
    log:
        RESULTS / "logs" / f"models-{EVENTS_NAME}-{{pipeline}}.log",
    conda:
        "../envs/taas.yaml"
    params:
        wf=WF,
        steps=steps_of,
        source=config["models"],
        preset=config["preset"],
        train_events=config["train_events"],
        # training events never share a seed with the evaluated ones
        seed=config["seed"] + 1000,
    shell:
        "{params.wf} models --pipeline {wildcards.pipeline} --steps {params.steps}"
        " --source {params.source} --train-preset {params.preset}"
        " --train-events {params.train_events} --seed {params.seed} --out {output} > {log} 2>&1"


rule reconstruct:
    input:
        events=EVENTS,
        models=models_dir("{pipeline}"),
        repo=(
            []
            if config["mode"] == "direct" or SERVER_URL
            else repo_dir("{pipeline}", "stages")
        ),
    output:
        directory(RESULTS / "reco" / EVENTS_NAME / "{pipeline}"),
    log:
        RESULTS / "logs" / f"reconstruct-{EVENTS_NAME}-{{pipeline}}.log",
    conda:
        "../envs/taas.yaml"
    threads: all_cores()  # a timing job: nothing else runs beside it
    params:
        wf=WF,
        steps=steps_of,
        mode=config["mode"],
        fallback=config["fallback"],
        server=SERVER_ARGS,
        repo=lambda wildcards, input: f"--repo {input.repo}" if input.repo else "",
        configs=stage_configs_arg,
    shell:
        "{params.wf} reconstruct --events {input.events} --pipeline {wildcards.pipeline}"
        " --steps {params.steps} {params.configs} --mode {params.mode} {params.repo}"
        " --fallback {params.fallback}"
        " {params.server}"
        " --server-log {log}.tritonserver --out {output} > {log} 2>&1"


rule evaluate:
    input:
        events=EVENTS,
        tracks=RESULTS / "reco" / EVENTS_NAME / "{pipeline}",
    output:
        RESULTS / "metrics" / EVENTS_NAME / "{pipeline}" / "metrics.json",
    log:
        RESULTS / "logs" / f"evaluate-{EVENTS_NAME}-{{pipeline}}.log",
    conda:
        "../envs/taas.yaml"
    params:
        taas=TAAS,
        matching=config["matching"],
        pt_min=config["pt_min"],
    shell:
        "{params.taas} evaluate --events {input.events} --tracks {input.tracks}"
        " --out $(dirname {output}) --matching {params.matching}"
        " --pt-min {params.pt_min} > {log} 2>&1"


rule summary:
    input:
        reco=expand(RESULTS / "reco" / EVENTS_NAME / "{pipeline}", pipeline=PLAN),
        metrics=expand(
            RESULTS / "metrics" / EVENTS_NAME / "{pipeline}" / "metrics.json",
            pipeline=PLAN,
        ),
    output:
        md=RESULTS / "summary" / f"{EVENTS_NAME}.md",
        json=RESULTS / "summary" / f"{EVENTS_NAME}.json",
    log:
        RESULTS / "logs" / f"summary-{EVENTS_NAME}.log",
    conda:
        "../envs/taas.yaml"
    params:
        taas=TAAS,
    shell:
        "{params.taas} summarize --reco {input.reco} --metrics {input.metrics}"
        " --out {output.md} > {log} 2>&1"
