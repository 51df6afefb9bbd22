#pragma once

// Umbrella header of the CUDA backend: include it from a .cu file (nvcc) and link capkv::cuda.
// Every launcher follows Arguments -> can_implement -> workspace_size -> run(arguments, workspace,
// bytes, stream), returns a capkv::cuda::Status, allocates nothing and throws nothing; bad input
// found on the device is read afterwards with read_status(workspace, stream).

#include "capkv/cuda/capkv.cuh"
#include "capkv/cuda/cholesky.cuh"
#include "capkv/cuda/compaction.cuh"
#include "capkv/cuda/compaction_in_place.cuh"
#include "capkv/cuda/composed_capkv.cuh"
#include "capkv/cuda/h2o.cuh"
#include "capkv/cuda/h2o_step.cuh"
#include "capkv/cuda/key_scores.cuh"
#include "capkv/cuda/leverage.cuh"
#include "capkv/cuda/math_path.cuh"
#include "capkv/cuda/relevance.cuh"
#include "capkv/cuda/snapkv.cuh"
#include "capkv/cuda/status.cuh"
#include "capkv/cuda/top_b.cuh"
#include "capkv/cuda/weighted_gram.cuh"
