#pragma once

// Everything a user needs: views, budgets, selection, compaction, RoPE helpers, the five policies
// and their Eigen CPU scorers.

#include "capkv/core/budget.hpp"
#include "capkv/core/compaction.hpp"
#include "capkv/core/dtype.hpp"
#include "capkv/core/error.hpp"
#include "capkv/core/eviction_policy.hpp"
#include "capkv/core/head_budgets.hpp"
#include "capkv/core/layer_budgets.hpp"
#include "capkv/core/layer_inputs.hpp"
#include "capkv/core/protection.hpp"
#include "capkv/core/rope.hpp"
#include "capkv/core/scores.hpp"
#include "capkv/core/select.hpp"
#include "capkv/core/selection.hpp"
#include "capkv/core/tensor_view.hpp"
#include "capkv/core/top_b.hpp"
#include "capkv/cpu/capkv.hpp"
#include "capkv/cpu/h2o.hpp"
#include "capkv/cpu/l2norm.hpp"
#include "capkv/cpu/random.hpp"
#include "capkv/cpu/snapkv.hpp"
#include "capkv/cpu/streaming_llm.hpp"
