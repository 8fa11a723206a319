// seqmix's exception type. Errors carry a kind (which selects the command-line exit code), a
// one-line message, and the place that raised them. Safe to include from .cu files (no fmt).
#pragma once
#include <stdexcept>
#include <string>

namespace seqmix {

enum class ErrorKind {
  Internal,     // a bug or an unexpected failure (exit code 1)
  Value,        // bad arguments to a library call: shapes, dtypes, devices (exit code 1)
  Unsupported,  // a valid request this build or kernel does not implement (exit code 1)
  Usage,        // bad command line (exit code 2)
  Config,       // bad configuration file or override (exit code 2)
  Data,         // missing, corrupt or mismatched data (exit code 3)
  Checkpoint,   // missing, corrupt or incompatible checkpoint (exit code 3)
  Cuda,         // a CUDA / cuBLAS / NCCL call failed (exit code 1)
  OutOfMemory,  // an allocation failed (exit code 1)
};

const char* error_kind_name(ErrorKind k);
int exit_code_for(ErrorKind k);

class Error : public std::runtime_error {
 public:
  // `message` is the one-line description shown first; `where` is "file:line" of the raise.
  Error(ErrorKind kind, std::string message, std::string where = {});
  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  const std::string& where() const { return where_; }

 private:
  ErrorKind kind_;
  std::string message_;
  std::string where_;
};

namespace detail {
[[noreturn]] void throw_error(ErrorKind kind, const char* file, int line, std::string message);
}  // namespace detail

}  // namespace seqmix

// Raises without formatting (usable from .cu files).
#define SEQMIX_THROW_PLAIN(kind, msg) \
  ::seqmix::detail::throw_error(::seqmix::ErrorKind::kind, __FILE__, __LINE__, (msg))
