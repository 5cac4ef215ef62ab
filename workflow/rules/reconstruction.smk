# Reconstruction per pipeline, evaluation against truth, and a side-by-side summary.


rule reconstruct:
    input:
        EVENTS,
    output:
        directory(RESULTS / "reco" / EVENTS_NAME / "{pipeline}"),
    log:
        RESULTS / "logs" / f"reconstruct-{EVENTS_NAME}-{{pipeline}}.log",
    shell:
        "{TAAS} reconstruct --events {input} --pipeline {wildcards.pipeline}"
        " --out {output} --warmup -q > {log} 2>&1"


rule evaluate:
    input:
        events=EVENTS,
        tracks=RESULTS / "reco" / EVENTS_NAME / "{pipeline}",
    output:
        RESULTS / "metrics" / EVENTS_NAME / "{pipeline}" / "metrics.json",
    params:
        matching=config["matching"],
        pt_min=config["pt_min"],
    log:
        RESULTS / "logs" / f"evaluate-{EVENTS_NAME}-{{pipeline}}.log",
    shell:
        "{TAAS} evaluate --events {input.events} --tracks {input.tracks}"
        " --out $(dirname {output}) --matching {params.matching}"
        " --pt-min {params.pt_min} > {log} 2>&1"


rule summary:
    input:
        reco=expand(
            RESULTS / "reco" / EVENTS_NAME / "{pipeline}", pipeline=config["pipelines"]
        ),
        metrics=expand(
            RESULTS / "metrics" / EVENTS_NAME / "{pipeline}" / "metrics.json",
            pipeline=config["pipelines"],
        ),
    output:
        RESULTS / "summary" / f"{EVENTS_NAME}.md",
    log:
        RESULTS / "logs" / f"summary-{EVENTS_NAME}.log",
    shell:
        "{TAAS} summarize --reco {input.reco} --metrics {input.metrics}"
        " --out {output} > {log} 2>&1"
