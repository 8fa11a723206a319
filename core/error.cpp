// Error kinds, exit codes and the raise helper.
#include "core/error.h"

#include <cstring>

#include "core/check.h"
#include "core/device.h"
#include "core/dispatch.h"

namespace seqmix {

const char* error_kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::Internal:
      return "internal error";
    case ErrorKind::Value:
      return "invalid argument";
    case ErrorKind::Unsupported:
      return "unsupported";
    case ErrorKind::Usage:
      return "usage error";
    case ErrorKind::Config:
      return "config error";
    case ErrorKind::Data:
      return "data error";
    case ErrorKind::Checkpoint:
      return "checkpoint error";
    case ErrorKind::Cuda:
      return "CUDA error";
    case ErrorKind::OutOfMemory:
      return "out of memory";
  }
  return "error";
}

int exit_code_for(ErrorKind k) {
  switch (k) {
    case ErrorKind::Usage:
    case ErrorKind::Config:
      return 2;
    case ErrorKind::Data:
    case ErrorKind::Checkpoint:
      return 3;
    default:
      return 1;
  }
}

Error::Error(ErrorKind kind, std::string message, std::string where)
    : std::runtime_error(message),
      kind_(kind),
      message_(std::move(message)),
      where_(std::move(where)) {}

namespace detail {

[[noreturn]] void throw_error(ErrorKind kind, const char* file, int line, std::string message) {
  // Keep the path short: from the project folder on.
  const char* f = file;
  for (const char* key : {"/core/", "/autograd/", "/kernels/", "/layers/", "/data/", "/configs/",
                          "/train/", "/tests/"}) {
    if (const char* p = std::strstr(file, key)) {
      f = p + 1;
      break;
    }
  }
  throw Error(kind, std::move(message), fmt::format("{}:{}", f, line));
}

[[noreturn]] void throw_bad_dtype(const char* op, DType t, const char* allowed) {
  throw_error(
      ErrorKind::Unsupported, __FILE__, __LINE__,
      fmt::format("{}: dtype {} is not supported (expected {})", op, dtype_name(t), allowed));
}

}  // namespace detail

DType parse_dtype(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "fp32" || name == "float") return DType::F32;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "float16" || name == "fp16" || name == "half") return DType::F16;
  if (name == "f64" || name == "float64" || name == "fp64" || name == "double") return DType::F64;
  if (name == "i32" || name == "int32") return DType::I32;
  if (name == "i64" || name == "int64") return DType::I64;
  if (name == "u8" || name == "uint8") return DType::U8;
  SEQMIX_THROW(Value, "unknown dtype '{}' (expected f32, bf16, f16, f64, i32, i64 or u8)", name);
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string idx = s.substr(5);
    if (!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos)
      return Device::cuda(std::stoi(idx));
  }
  SEQMIX_THROW(Value, "unknown device '{}' (expected cpu, cuda or cuda:N)", s);
}

}  // namespace seqmix
