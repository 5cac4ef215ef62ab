"""Tracking as a service: every stage and pipeline behind one Triton (KServe v2) interface.

- ``model_repo.build_model_repository``: a relocatable model repository generated from the
  stage registry (one model per stage, per pipeline, and an ensemble per pipeline);
- ``server.TritonServer``: the real ``tritonserver`` on that repository, as a context manager;
- ``cluster.TritonCluster``: N such servers behind an nginx gRPC load balancer, one address;
- ``client.RemoteStage`` / ``RemotePipeline`` / ``make_stage`` / ``make_pipeline``: the stage
  contract served, so a pipeline runs direct or served by one switch;
- ``loadgen.run_load`` / ``sweep``: throughput and latency under concurrent load.

Nothing here is imported by ``import taas``; tritonclient is imported only when used.
"""
