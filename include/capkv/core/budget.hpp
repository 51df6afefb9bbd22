#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "capkv/core/error.hpp"

namespace capkv {

// How many tokens per KV head survive. Three spellings exist in the wild and they are easy to
// confuse, so each has its own named constructor: an absolute count, the fraction *kept*, and
// kvpress's compression_ratio, the fraction *removed*.
class Budget {
 public:
  enum class Kind { kTokens, kKeepFraction };

  static Budget tokens(std::int64_t count) {
    require(count >= 0, "budget", "a token budget cannot be negative");
    return Budget(Kind::kTokens, static_cast<double>(count));
  }
  static Budget keep_fraction(double fraction) {
    require(fraction >= 0.0 && fraction <= 1.0, "budget", "keep_fraction must lie in [0, 1]");
    return Budget(Kind::kKeepFraction, fraction);
  }
  static Budget compression_ratio(double removed) {
    require(removed >= 0.0 && removed <= 1.0, "budget", "compression_ratio must lie in [0, 1]");
    return Budget(Kind::kKeepFraction, 1.0 - removed);
  }

  // Fractions round down by default (kvpress keeps floor(n * (1 - r))); the Knorm paper rounds up.
  Budget rounded_up() const {
    Budget b = *this;
    b.round_up_ = true;
    return b;
  }

  Kind kind() const { return kind_; }
  double value() const { return value_; }
  bool is_zero() const { return value_ == 0.0; }

  // Tokens kept out of n, never more than n.
  std::int64_t resolve(std::int64_t n) const {
    if (kind_ == Kind::kTokens) return std::min<std::int64_t>(static_cast<std::int64_t>(value_), n);
    const double exact = value_ * static_cast<double>(n);
    // A tiny tolerance so 0.25 * 1024 does not become 255 through representation error.
    const double kept = round_up_ ? std::ceil(exact - 1e-9) : std::floor(exact + 1e-9);
    return std::clamp<std::int64_t>(static_cast<std::int64_t>(kept), 0, n);
  }

 private:
  Budget(Kind kind, double value) : kind_(kind), value_(value) {}
  Kind kind_;
  double value_;
  bool round_up_ = false;
};

}  // namespace capkv
