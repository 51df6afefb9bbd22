#pragma once

// What a CUDA launcher answers instead of throwing: CUTLASS's can_implement / workspace_size / run
// shape, with the argument named as the CPU path's capkv::Error names it. A Status owns its text
// in a fixed buffer, so reporting an error allocates nothing.

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "capkv/core/error.hpp"
#include "kernels/error_flags.cuh"

namespace capkv::cuda {

enum class StatusCode {
  kSuccess,
  kInvalidArgument,  // shape, stride, budget or config the call cannot take (before any work)
  kNotSupported,     // valid for the CPU path, not implemented on the GPU (e.g. greedy CapKV)
  kWorkspaceTooSmall,
  kBadInput,   // found on the device: NaN/Inf, a matrix not positive definite
  kCudaError,  // a launch or runtime call failed
};

class Status {
 public:
  Status() = default;

  static Status success() { return {}; }
  static Status error(StatusCode code, const char* argument, const char* message) {
    Status s;
    s.code_ = code;
    s.set(argument, message);
    return s;
  }
  static Status invalid(const char* argument, const char* message) {
    return error(StatusCode::kInvalidArgument, argument, message);
  }
  static Status cuda(cudaError_t e, const char* what) {
    Status s = error(StatusCode::kCudaError, what, cudaGetErrorString(e));
    s.cuda_ = e;
    return s;
  }
  // The capkv::Error the CPU-side checks (TensorView::validate, capkv::validate) throw.
  static Status from(const capkv::Error& e) {
    Status s;
    s.code_ = StatusCode::kInvalidArgument;
    const char* what = e.what();
    const std::size_t skip = e.argument().size() + 2;  // "argument: message"
    s.set(e.argument().c_str(), std::strlen(what) >= skip ? what + skip : what);
    return s;
  }

  bool ok() const { return code_ == StatusCode::kSuccess; }
  explicit operator bool() const { return ok(); }
  StatusCode code() const { return code_; }
  const char* argument() const { return argument_; }
  const char* message() const { return message_; }
  cudaError_t cuda_error() const { return cuda_; }
  std::string to_string() const {
    return ok() ? std::string("success") : std::string(argument_) + ": " + message_;
  }

 private:
  void set(const char* argument, const char* message) {
    std::snprintf(argument_, sizeof argument_, "%s", argument ? argument : "");
    std::snprintf(message_, sizeof message_, "%s", message ? message : "");
  }

  StatusCode code_ = StatusCode::kSuccess;
  cudaError_t cuda_ = cudaSuccess;
  char argument_[40] = "";
  char message_[200] = "";
};

// Runs a CPU-side check that throws capkv::Error and turns the exception into a Status, so no
// exception leaves a launcher.
template <class Check>
Status checked(Check&& check) {
  try {
    check();
  } catch (const capkv::Error& e) {
    return Status::from(e);
  } catch (const std::exception& e) {
    return Status::error(StatusCode::kInvalidArgument, "arguments", e.what());
  }
  return Status::success();
}

// The first launch error of the kernels just enqueued (asynchronous faults surface later, at the
// next synchronising call, as with any CUDA library).
inline Status launch_status(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? Status::success() : Status::cuda(e, kernel);
}

// The device-side error word (kernels/error_flags.cuh) as a Status, most specific bit first.
inline Status status_from_flags(std::uint32_t flags) {
  struct Entry {
    std::uint32_t bit;
    const char* argument;
    const char* message;
  };
  static constexpr Entry entries[] = {
      {kKeysNotFinite, "keys", "contain NaN or Inf"},
      {kValuesNotFinite, "values", "contain NaN or Inf"},
      {kQueriesNotFinite, "queries", "contain NaN or Inf"},
      {kScoresNotFinite, "scores", "contain NaN or Inf"},
      {kNotPositiveDefinite, "ridge",
       "the capacity matrix is not positive definite; use a positive ridge"},
      // Bad offsets first: they misassign indices to heads, which then look unordered too.
      {kOffsetsInvalid, "offsets", "do not ascend from 0 to the total"},
      {kSelectionOutOfRange, "selection", "holds a token index outside the cache"},
      {kSelectionNotAscending, "selection",
       "indices are not strictly ascending within a head (in-place compaction relies on it)"},
      {kStateInvalid, "sizes",
       "a head's size is negative or leaves no slot for the new token in the cache"},
      {kAccumulatorsNotFinite, "accumulators", "contain NaN or Inf"},
      {kNoTokenToEvict, "budget", "the recent window leaves no token to evict"},
      {kInternalError, "internal", "a kernel invariant failed (a bug in capkv)"},
  };
  for (const Entry& e : entries) {
    if (flags & e.bit) return Status::error(StatusCode::kBadInput, e.argument, e.message);
  }
  return Status::success();
}

// Waits for `stream` and reads the error word at `flags` (device memory). Call it after a run()
// when the caller wants to know whether the device found bad input; the outputs were left
// untouched in that case.
inline Status read_status(const std::uint32_t* flags, cudaStream_t stream) {
  std::uint32_t host = 0;
  cudaError_t e = cudaMemcpyAsync(&host, flags, sizeof host, cudaMemcpyDeviceToHost, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) return Status::cuda(e, "read_status");
  return status_from_flags(host);
}

}  // namespace capkv::cuda
