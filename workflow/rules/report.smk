# The report: results/report/report.{html,md,json} + plots, also registered for
# `snakemake --report` (workflow/report/*.rst describe each entry).

PLOT_NAMES = [
    "stage_breakdown",
    "throughput_vs_concurrency",
    "throughput_vs_instances",
    "efficiency_vs_pt",
    "efficiency_vs_eta",
    "service_options_overhead",
    "service_options_throughput",
]
REPORT_DIR = RESULTS / "report"
REPORT_FILES = [REPORT_DIR / f"report.{ext}" for ext in ("html", "md", "json")]


rule report:
    input:
        summary=RESULTS / "summary" / f"{EVENTS_NAME}.json",
        info=RESULTS / "info" / EVENTS_NAME / "info.json",
        reco=expand(RESULTS / "reco" / EVENTS_NAME / "{pipeline}", pipeline=PLAN),
        metrics=expand(
            RESULTS / "metrics" / EVENTS_NAME / "{pipeline}" / "metrics.json",
            pipeline=PLAN,
        ),
        compare=expand(
            RESULTS / "served_vs_direct" / EVENTS_NAME / "{pipeline}.json",
            pipeline=PLAN,
        ),
        throughput=expand(
            RESULTS / "throughput" / EVENTS_NAME / "{pipeline}" / "i{instances}.json",
            pipeline=PLAN,
            instances=INSTANCES,
        ),
        service_options=expand(
            RESULTS / "service_options" / EVENTS_NAME / "{pipeline}.json",
            pipeline=PLAN,
        ),
        models=[models_dir(pipeline) for pipeline in PLAN],
        # per-stage scaling slopes for the capacity plan's extrapolation; local(): files of the
        # repository, never in a remote storage (profiles/kubernetes sets a default storage)
        scaling=[
            local(Path(workflow.basedir) / "benchmarks" / "results" / name)
            for name in ("cpu_chain_scaling.json", "gnn_scaling.json")
        ],
        # the modelled FPGA hardware figures, shown beside the emulated fpga pipeline
        fpga_model=local(
            Path(workflow.basedir)
            / "benchmarks"
            / "results"
            / "fpga_hardware_model.json"
        ),
    output:
        html=report(
            REPORT_DIR / "report.html",
            caption="../report/report.rst",
            category="Report",
        ),
        md=REPORT_DIR / "report.md",
        json=REPORT_DIR / "report.json",
        plots=[
            report(
                REPORT_DIR / "plots" / f"{name}.png",
                caption="../report/plot.rst",
                category="Plots",
            )
            for name in PLOT_NAMES
        ],
    log:
        RESULTS / "logs" / f"report-{EVENTS_NAME}.log",
    conda:
        "../envs/taas.yaml"
    params:
        wf=WF,
        config=json.dumps(config),
        plan=PLAN_JSON,
    shell:
        "{params.wf} report --config {params.config:q} --plan {params.plan:q}"
        " --summary {input.summary} --info {input.info} --reco {input.reco}"
        " --metrics {input.metrics} --compare {input.compare}"
        " --throughput {input.throughput} --models {input.models}"
        " --service-options {input.service_options}"
        " --scaling {input.scaling} --fpga-model {input.fpga_model}"
        " --out $(dirname {output.html}) > {log} 2>&1"
