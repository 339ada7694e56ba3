"""The deployed-graph latency model: what a runtime really runs for a plan, profiled and attributed.

``profile`` (a :class:`~mixq.backends.onnx.deployed.profile.Profiler` per runtime) turns an exported QDQ
file into the graph the runtime ran, node by node with times; attribution maps each node to a group's
kernel or to an edge between groups; probes are the plans profiled to fit
:class:`mixq.cost.deployed.DeployedLatency`.
"""
