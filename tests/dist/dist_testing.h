// Small helpers the dist/ tests share (header-only: the dist tests link no test library).
#pragma once

#include <functional>
#include <string>

#include <ATen/ATen.h>

#include "engine/common/error.h"

namespace tlm::test {

// The message of the tlm::Error `fn` throws; "" when it throws nothing.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

inline double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace tlm::test
