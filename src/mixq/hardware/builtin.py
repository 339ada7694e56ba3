"""Built-in target descriptions, written in the same YAML format a user's file uses."""

from __future__ import annotations

GENERIC = """
name: generic
description: >
  Any weight and activation bit-width runs: candidates are used as given. The cost is BOPs
  (weight bits x activation bits per MAC), the hardware-agnostic proxy of Pandey et al.
"""

ONNXRUNTIME_CPU = """
name: onnxruntime-cpu
description: >
  ONNX Runtime's default CPU execution provider. Integer kernels exist for int8 QDQ Conv, MatMul and
  Gemm (u8 activations x s8 weights, the U8S8 QDQ format that mixq's scheme, asymmetric activations and
  symmetric per-channel weights, corresponds to; MatMul of two activations via QLinearMatMul); every other
  kernel runs in fp32. There is no int4 compute: 4-bit weights exist only as storage (int4
  DequantizeLinear since opset 21, MatMulNBits for MatMul/Gemm) and are dequantized to float before the
  multiply, so they save memory but no arithmetic, and mixq's wNaM precisions (integer weights and
  integer activations) cannot express them. 16-bit activations are likewise only Q/DQ around fp32
  kernels. Hence w8a8 or fp32 per group; ConvTranspose fp32 (we know of no int8 ConvTranspose in the
  default CPU EP; XNNPACK's EP has one). Put fp32 among the candidates so groups can fall back. BOPs
  count fp32 as 16x w8a8, which overstates its cost on a CPU: for a real cost, measure it with --cost
  latency --runtime onnxruntime (the deployed-graph model profiles the exported file in ONNX Runtime).
kernels:
  conv: [w8a8, fp32]
  depthwise_conv: [w8a8, fp32]
  linear: [w8a8, fp32]
  matmul: [w8a8, fp32]
  conv_transpose: [fp32]
"""

OPENVINO_CPU = """
name: openvino-cpu
description: >
  OpenVINO's CPU plugin reading mixq's QDQ ONNX file (--runtime openvino). Its low-precision
  transformations turn each QuantizeLinear/DequantizeLinear pair into a FakeQuantize and run Convolution,
  GroupConvolution (depthwise), MatMul and ConvolutionBackpropData (ConvTranspose) as int8 kernels when
  activations are 8-bit and weights int8 (u8/i8 x i8); a ConvTranspose therefore has an int8 kernel here,
  unlike in ONNX Runtime's CPU provider. 4-bit weights exist in OpenVINO only as weight compression of
  MatMul with float activations, and 16-bit activations as FakeQuantize around fp32 kernels, neither of
  which mixq's wNaM precisions express: w8a8 or fp32 per group. Measure latency with --cost latency
  --runtime openvino (the deployed-graph model profiles the file in OpenVINO).
kernels:
  conv: [w8a8, fp32]
  depthwise_conv: [w8a8, fp32]
  linear: [w8a8, fp32]
  matmul: [w8a8, fp32]
  conv_transpose: [w8a8, fp32]
"""

NPU_W4A8_W8A8_W8A16 = """
name: npu-w4a8-w8a8-w8a16
description: >
  An accelerator with W4A8, W8A8 and W8A16 integer kernels, the search space of Pandey et al.
  (Table 1), for every weighted op. A matmul of two activations has no 4-bit operand kernel (both
  operands are activations, so 8 or 16 bits). No float fallback; no fixed layers.
kernels:
  default: [w4a8, w8a8, w8a16]
  matmul: [w8a8, w8a16]
"""
