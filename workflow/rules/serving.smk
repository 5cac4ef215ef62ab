# The service: model repositories per pipeline (i<N>: the whole-pipeline model with N instances,
# for the throughput sweep; stages: one model per stage, for mode=served; options: stage models,
# pipeline model and ensemble), served vs direct on the same events as part of the service-option
# study (S0 direct ... S4 ensemble and the pipeline model, one job and one server:
# taas.service.study), and the throughput sweep. Each measuring job starts tritonserver itself
# (or uses server_url) and stops it: no service() group jobs, which sum their members' resources
# and start them all at once (too much for --cores 2; docs/architecture.md, "The workflow").


rule model_repository:
    input:
        events=EVENTS,
        models=models_dir("{pipeline}"),
    output:
        directory(RESULTS / "model_repo" / EVENTS_NAME / "{pipeline}" / "{variant}"),
    log:
        RESULTS / "logs" / f"model_repo-{EVENTS_NAME}-{{pipeline}}-{{variant}}.log",
    conda:
        "../envs/taas.yaml"
    params:
        wf=WF,
        steps=steps_of,
        options=repo_options,
        configs=stage_configs_arg,
    shell:
        "{params.wf} model-repo --events {input.events} --pipeline {wildcards.pipeline}"
        " --steps {params.steps} {params.configs} {params.options}"
        " --out {output} > {log} 2>&1"


rule served_vs_direct:
    input:
        events=EVENTS,
        models=models_dir("{pipeline}"),
        repo=[] if SERVER_URL else repo_dir("{pipeline}", "options"),
    output:
        compare=RESULTS / "served_vs_direct" / EVENTS_NAME / "{pipeline}.json",
        options=RESULTS / "service_options" / EVENTS_NAME / "{pipeline}.json",
    log:
        RESULTS / "logs" / f"served_vs_direct-{EVENTS_NAME}-{{pipeline}}.log",
    conda:
        "../envs/taas.yaml"
    threads: all_cores()
    params:
        wf=WF,
        steps=steps_of,
        repeats=budget("compare_repeats"),
        n_events=lambda wildcards: (
            f"--n-events {config['emulation']['events']}"
            if emulated(wildcards.pipeline)
            else ""
        ),
        server=SERVER_ARGS,
        repo=lambda wildcards, input: f"--repo {input.repo}" if input.repo else "",
        configs=stage_configs_arg,
        # the study's throughput sweep (emulated pipelines: none, see `emulated`)
        study=lambda wildcards: (
            "--emulated"
            if emulated(wildcards.pipeline)
            else "--concurrency "
            + " ".join(str(c) for c in config["service_options"]["concurrency"])
            + f" --requests {config['service_options']['requests']}"
            + f" --seconds {config['max_seconds']}"
        ),
    shell:
        "{params.wf} compare --events {input.events} --pipeline {wildcards.pipeline}"
        " --steps {params.steps} {params.configs} {params.repo} {params.server}"
        " --repeats {params.repeats} {params.n_events} {params.study}"
        " --server-log {log}.tritonserver --out {output.compare}"
        " --options-out {output.options} > {log} 2>&1"


rule throughput:
    input:
        events=EVENTS,
        models=models_dir("{pipeline}"),
        repo=lambda wildcards: (
            [] if SERVER_URL else repo_dir(wildcards.pipeline, wildcards.instances)
        ),
    output:
        RESULTS / "throughput" / EVENTS_NAME / "{pipeline}" / "i{instances}.json",
    log:
        RESULTS / "logs" / f"throughput-{EVENTS_NAME}-{{pipeline}}-i{{instances}}.log",
    conda:
        "../envs/taas.yaml"
    threads: all_cores()
    params:
        wf=WF,
        steps=steps_of,
        concurrency=lambda wildcards: " ".join(
            str(c) for c in budget("concurrency")(wildcards)
        ),
        requests=budget("requests"),
        seconds=config["max_seconds"],
        instances=lambda wildcards: 0 if SERVER_URL else wildcards.instances,
        server=SERVER_ARGS,
        repo=lambda wildcards, input: f"--repo {input.repo}" if input.repo else "",
        configs=stage_configs_arg,
    shell:
        "{params.wf} throughput --events {input.events} --pipeline {wildcards.pipeline}"
        " --steps {params.steps} {params.configs} {params.repo} {params.server}"
        " --instances {params.instances} --concurrency {params.concurrency}"
        " --requests {params.requests} --seconds {params.seconds}"
        " --server-log {log}.tritonserver --out {output} > {log} 2>&1"
