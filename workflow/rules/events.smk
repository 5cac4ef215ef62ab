# Events: simulate with ACTS (or take events_path), then keep them as parquet.


rule simulate:
    output:
        directory(RESULTS / "events" / "{preset}-csv"),
    log:
        RESULTS / "logs" / "simulate-{preset}.log",
    conda:
        "../envs/taas.yaml"
    params:
        taas=TAAS,
        n_events=config["n_events"],
        seed=config["seed"],
    shell:
        "{params.taas} simulate --preset {wildcards.preset} --events {params.n_events}"
        " --seed {params.seed} --out {output} -q > {log} 2>&1"


rule events_to_parquet:
    input:
        (RESULTS / "events" / f"{EVENTS_NAME}-csv")
        if SIMULATE
        else config["events_path"],
    output:
        directory(EVENTS),
    log:
        RESULTS / "logs" / f"parquet-{EVENTS_NAME}.log",
    conda:
        "../envs/taas.yaml"
    params:
        taas=TAAS,
    shell:
        "{params.taas} convert {input} {output} --to parquet -q > {log} 2>&1"


rule event_info:
    input:
        EVENTS,
    output:
        RESULTS / "info" / EVENTS_NAME / "info.json",
    log:
        RESULTS / "logs" / f"info-{EVENTS_NAME}.log",
    conda:
        "../envs/taas.yaml"
    params:
        taas=TAAS,
    shell:
        "{params.taas} info {input} --out $(dirname {output}) > {log} 2>&1"
