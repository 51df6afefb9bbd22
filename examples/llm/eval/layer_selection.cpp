#include "eval/layer_selection.hpp"

#include <stdexcept>

namespace capkv::llm::eval {

LayerSelections select_at_budgets(const AnyPolicy& policy, const capkv::LayerInputs& inputs,
                                  std::span<const capkv::Budget> budgets) {
  if (budgets.empty()) throw std::invalid_argument("select_at_budgets: no budget given");
  return std::visit(
      [&](const auto& p) {
        LayerSelections out;
        const bool rescore = scores_depend_on_budget(policy);
        for (std::size_t b = 0; b < budgets.size(); ++b) {
          if (b == 0 || rescore) {
            capkv::Selection sel = capkv::select(p, inputs, budgets[b], {.return_scores = true});
            if (b == 0) out.scores = sel.scores;
            sel.scores.resize(0, 0);
            out.by_budget.push_back(std::move(sel));
            continue;
          }
          const std::int64_t n = inputs.n_tokens();
          const std::int64_t kept = p.resolve_budget(budgets[b], inputs);
          out.by_budget.push_back(capkv::select_from_scores(out.scores, p.protection(n, kept), kept,
                                                            capkv::HeadBudgets::uniform()));
        }
        return out;
      },
      policy);
}

}  // namespace capkv::llm::eval
