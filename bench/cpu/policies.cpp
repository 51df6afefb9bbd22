// The full capkv::select call (validation, scoring, GQA reduction, top-B selection) of every policy
// on a synthetic layer: fp32 [tokens, heads, dim] cache, 32 query heads over 8 KV heads (g = 4),
// m = 64 prompt queries, a quarter of the tokens kept.
//
// Flops per call, counted as the scorers execute them (Hq query heads, Hkv KV heads):
//   CapKV values/default   Hq (4 n d^2 + 2 n d): Gram + leverage per query head (see kernels.cpp),
//                          plus the relevance GEMV t = K mu.
//   CapKV kvpress          the same; the cosine's key norms (2 n d more) are left out as noise.
//   CapKV key_leverage     Hq 4 n d^2: uniform weights, but the scorer still builds one Gram per
//   query
//                          head, so g identical copies are counted (that is the work it does).
//   CapKV greedy           Hq 2 n d B': per pick and query head one GEMV U z (fp64) over all n
//                          tokens, B' = picks; the d^2 factor updates are left out.
//   SnapKV paper           Hq 2 w n d, w = 32: the window logits Q_w K^T. (The issue wrote
//   2*2*w*n*d;
//                          the scorer multiplies no P V, so counting 4 w n d would double its
//                          rate.)
//   H2O paper              Hq 2 m n d, m = 64: prefill logits of the m prompt queries (a real
//                          prefill has m = n; 64 keeps the sweep short and the cost is linear in
//                          m).
//   L2Norm                 Hkv 2 n d: one squared norm per key.
//   StreamingLLM, Random   0: they only check the keys are finite.
// Bytes: the tensors the policy reads, once: K, plus V for the value basis (queries are tiny).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "capkv/capkv.hpp"
#include "registry.hpp"
#include "synthetic.hpp"

namespace capkv::bench {
namespace {

constexpr double kKeepFraction = 0.25;

struct Work {
  double flop;
  bool reads_values;
};
using WorkFn = std::function<Work(const Shape&, std::int64_t budget)>;

template <class P>
void select_bench(benchmark::State& state, const P& policy, const Shape& shape,
                  const WorkFn& work) {
  const Layer& l = layer(shape);
  const Budget budget = Budget::keep_fraction(kKeepFraction);
  for (auto _ : state) {
    Selection sel = select(policy, l.inputs, budget);
    benchmark::DoNotOptimize(sel.indices.data());
  }
  const std::int64_t kept = policy.resolve_budget(budget, l.inputs);
  const Work w = work(shape, kept);
  state.counters["n"] = static_cast<double>(shape.n);
  state.counters["d"] = static_cast<double>(shape.d);
  state.counters["hq"] = static_cast<double>(shape.hq);
  state.counters["hkv"] = static_cast<double>(shape.hkv);
  state.counters["budget"] = static_cast<double>(kept);
  set_work(state, w.flop, w.reads_values ? l.kv_bytes() : l.key_bytes());
}

template <class P>
void add(const std::string& label, const P& policy, const WorkFn& work,
         const std::vector<std::int64_t>& ns, const std::vector<Shape>& extra = {}) {
  std::vector<Shape> shapes;
  for (const std::int64_t d : {64, 128}) {
    for (const std::int64_t n : ns) shapes.push_back(Shape{.n = n, .d = d});
  }
  shapes.insert(shapes.end(), extra.begin(), extra.end());
  for (const Shape& s : shapes) {
    const std::string name = "select/" + label + "/n:" + std::to_string(s.n) +
                             "/d:" + std::to_string(s.d) + "/hq:" + std::to_string(s.hq) +
                             "/hkv:" + std::to_string(s.hkv);
    configure(benchmark::RegisterBenchmark(name.c_str(), [policy, s, work](benchmark::State& st) {
      select_bench(st, policy, s, work);
    }));
  }
}

double nd(const Shape& s) { return static_cast<double>(s.n) * static_cast<double>(s.d); }

Work capkv_values(const Shape& s, std::int64_t) {
  return {s.hq * (4.0 * nd(s) * s.d + 2.0 * nd(s)), true};
}

}  // namespace

void register_policies() {
  const std::vector<std::int64_t> sweep{1024, 4096, 16384, 65536};
  // The per-query-head target: n = 32K, d = 128, one KV head read by 1 or 4 query heads.
  const std::vector<Shape> per_head{Shape{.n = 32768, .d = 128, .hq = 1, .hkv = 1},
                                    Shape{.n = 32768, .d = 128, .hq = 4, .hkv = 1}};
  add("CapKV-default", CapKV{}, capkv_values, sweep, per_head);
  add("CapKV-kvpress", CapKV::kvpress(), capkv_values, sweep);
  add(
      "CapKV-key_leverage", CapKV::key_leverage(),
      [](const Shape& s, std::int64_t) {
        return Work{s.hq * 4.0 * nd(s) * s.d, false};
      },
      // Its scores do not depend on the query heads, so 4 query heads should cost what 1 does.
      sweep, per_head);
  // O(B n d): only the small caches.
  add("CapKV-greedy", CapKV{}.greedy(),
      [](const Shape& s, std::int64_t budget) {
        const double picks = static_cast<double>(budget - 4);  // minus the sinks
        return Work{s.hq * 2.0 * picks * nd(s), true};
      },
      {1024, 4096});
  add(
      "SnapKV-paper", SnapKV::paper(),
      [](const Shape& s, std::int64_t) {
        return Work{s.hq * 2.0 * 32 * nd(s), false};
      },
      sweep);
  add(
      "H2O-paper-m64", H2O::paper(),
      [](const Shape& s, std::int64_t) {
        return Work{s.hq * 2.0 * s.m * nd(s), false};
      },
      sweep);
  add(
      "L2Norm", L2Norm{},
      [](const Shape& s, std::int64_t) {
        return Work{s.hkv * 2.0 * nd(s), false};
      },
      sweep);
  add(
      "StreamingLLM", StreamingLLM::paper(),
      [](const Shape&, std::int64_t) {
        return Work{0.0, false};
      },
      sweep);
  add(
      "Random", RandomPolicy{},
      [](const Shape&, std::int64_t) {
        return Work{0.0, false};
      },
      sweep);
}

}  // namespace capkv::bench
