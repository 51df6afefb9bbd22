#pragma once

// SmolLM2-135M-Instruct loaded once per test binary: loading dequantizes about 0.55 GB of weights
// (around a second), and every test of this folder needs the same read-only model.

#include <gtest/gtest.h>

#include <string>

#include "model/llama_model.hpp"
#include "tokenizer/tokenizer.hpp"

namespace capkv::llm::testing {

struct LoadedModel {
  LlamaModel model;
  Tokenizer tokenizer;
};

// The model at default_model_path(), loaded on first use; nullptr when the file is absent.
const LoadedModel* loaded_model();

// Why the model tests skip, naming the path and how to fetch the file.
std::string missing_model_message();

// Skips (in SetUp) when the model file is absent, so a checkout without the 98 MB download still
// passes its suite.
class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (loaded_model() == nullptr) GTEST_SKIP() << missing_model_message();
  }
  static const LlamaModel& model() { return loaded_model()->model; }
  static const Tokenizer& tokenizer() { return loaded_model()->tokenizer; }
};

}  // namespace capkv::llm::testing
