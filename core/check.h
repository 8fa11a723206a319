// Checks and raises with fmt-formatted messages. Host code only (fmt does not build under nvcc).
//
//   SEQMIX_CHECK(x.dim() == 2, "q must be [B, T, H, K], got {}", x.shape_str());
//   SEQMIX_THROW(Data, "dataset {} not found", path);
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

#define SEQMIX_THROW(kind, ...)                                                \
  ::seqmix::detail::throw_error(::seqmix::ErrorKind::kind, __FILE__, __LINE__, \
                                ::fmt::format(__VA_ARGS__))

#define SEQMIX_CHECK_KIND(kind, cond, ...) \
  do {                                     \
    if (!(cond)) [[unlikely]] {            \
      SEQMIX_THROW(kind, __VA_ARGS__);     \
    }                                      \
  } while (0)

#define SEQMIX_CHECK(cond, ...) SEQMIX_CHECK_KIND(Value, cond, __VA_ARGS__)

// Internal invariants: a failure here is a seqmix bug.
#define SEQMIX_ASSERT(cond) \
  SEQMIX_CHECK_KIND(Internal, cond, "internal error: assertion `{}` failed", #cond)
