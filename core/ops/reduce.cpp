// Reductions: layout to [outer, R, inner], validation, device dispatch.
#include "core/ops/reduce.h"

#include <algorithm>

#include "core/ops/common.h"
#include "core/ops/reduce_impl.h"

namespace seqmix::ops {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Mean:
      return "mean";
    case ReduceOp::Max:
      return "max";
    case ReduceOp::Min:
      return "min";
    case ReduceOp::LogSumExp:
      return "logsumexp";
  }
  return "?";
}

namespace {

// Reduces dim d of contiguous-able x; returns (values, indices or undefined).
std::pair<Tensor, Tensor> reduce_dim(ReduceOp op, const Tensor& x_in, int64_t dim, bool keepdim,
                                     bool want_index) {
  const char* name = reduce_op_name(op);
  SEQMIX_CHECK(x_in.defined(), "{}: undefined input", name);
  check_floating(name, "x", x_in);
  const Tensor x = x_in.contiguous();
  const int nd = std::max(x.dim(), 1);
  const int d = wrap_dim(dim, nd);
  int64_t outer = 1, r = x.dim() == 0 ? 1 : x.shape()[d], inner = 1;
  for (int i = 0; i < d; ++i) outer *= x.shape()[i];
  for (int i = d + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  if (op == ReduceOp::Max || op == ReduceOp::Min)
    SEQMIX_CHECK(r > 0 || outer * inner == 0, "{}: cannot reduce an empty dimension", name);
  Shape out_shape = x.shape();
  if (x.dim() > 0) {
    if (keepdim)
      out_shape[d] = 1;
    else
      out_shape.erase(d);
  }
  const Device dev = x.device();
  Tensor out = Tensor::empty(out_shape, x.dtype(), dev);
  Tensor idx;
  if (want_index) idx = Tensor::empty(out_shape, DType::I64, dev);
  int64_t* idx_ptr = want_index ? idx.data<int64_t>() : nullptr;
  if (dev.is_cpu()) {
    impl::reduce_cpu(op, x.dtype(), x.data_ptr(), out.data_ptr(), idx_ptr, outer, r, inner);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::reduce_cuda(op, x.dtype(), x.data_ptr(), out.data_ptr(), idx_ptr, outer, r, inner,
                      stream_of(dev));
#endif
  }
  return {out, idx};
}

}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  return reduce_dim(op, x, dim, keepdim, false).first;
}

Tensor reduce(ReduceOp op, const Tensor& x, const DimVec& dims_in, bool keepdim) {
  SEQMIX_CHECK(x.defined(), "{}: undefined input", reduce_op_name(op));
  if (dims_in.size() == 1) return reduce(op, x, dims_in[0], keepdim);
  const int nd = x.dim();
  bool red[kMaxDims] = {};
  for (int64_t d : dims_in) {
    const int w = wrap_dim(d, nd);
    SEQMIX_CHECK(!red[w], "{}: dimension {} listed twice", reduce_op_name(op), w);
    red[w] = true;
  }
  if (dims_in.empty()) return x.contiguous();
  // Move reduced dims last, flatten them into one, reduce it.
  DimVec perm;
  Shape kept, kept_keepdim;
  int64_t rn = 1;
  for (int i = 0; i < nd; ++i)
    if (!red[i]) {
      perm.push_back(i);
      kept.push_back(x.shape()[i]);
    }
  for (int i = 0; i < nd; ++i)
    if (red[i]) {
      perm.push_back(i);
      rn *= x.shape()[i];
    }
  for (int i = 0; i < nd; ++i) kept_keepdim.push_back(red[i] ? 1 : x.shape()[i]);
  Shape flat = kept;
  flat.push_back(rn);
  const Tensor y = reduce(op, x.permute(perm).contiguous().view(flat), -1, false);
  return keepdim ? y.view(kept_keepdim) : y;
}

Tensor reduce_all(ReduceOp op, const Tensor& x) {
  SEQMIX_CHECK(x.defined(), "{}: undefined input", reduce_op_name(op));
  return reduce(op, x.contiguous().view({x.numel()}), 0, false);
}

std::pair<Tensor, Tensor> max_with_index(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce_dim(ReduceOp::Max, x, dim, keepdim, true);
}

std::pair<Tensor, Tensor> min_with_index(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce_dim(ReduceOp::Min, x, dim, keepdim, true);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  SEQMIX_CHECK(broadcast_shapes(shape, x.shape()) == x.shape(),
               "sum_to: {} is not broadcastable to {}", shape.str(), x.shape_str());
  const int lead = x.dim() - shape.size();
  DimVec dims;
  for (int i = 0; i < x.dim(); ++i) {
    if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1)) dims.push_back(i);
  }
  if (dims.empty()) return x.reshape(shape);
  return reduce(ReduceOp::Sum, x, dims, true).reshape(shape);
}

}  // namespace seqmix::ops
