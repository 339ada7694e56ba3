"""The deployed-graph latency model: what a runtime really runs for a plan, profiled and attributed.

``profile`` (a :class:`~mixq.backends.onnx.deployed.profile.Profiler` per runtime; ``ort_profile`` for ONNX
Runtime) turns an exported QDQ file into the graph the runtime ran, node by node with times; ``edges`` finds
the group edges of the traced model; ``attribute`` maps each node to a group's kernel or to an edge between
groups; ``probes`` chooses the plans profiled; ``model`` fits :class:`mixq.cost.deployed.DeployedLatency`
from them (cached), predicts kernels and measures the model's accuracy on other plans.
"""
